"""Key files get the checks store files get: one name (st_nlink == 1) and our ownership.

A second name of a secret key file, inside the store root (where the realpath check cannot see
it) or anywhere else, is refused: the key would travel with whatever holds that name.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.support.keys import KEYS, MASTER_KEY, SIGNING
from tests.support.stores import make_store, run_cli, seed_path

from securestore import KeyMaterialError, SecureStore, generate_master_key
from securestore.api.keys import generate_signing_key, load_public_key, load_seed
from securestore.fs import FsContext, read_key_file

RULE = "a secret key file must have exactly one name (st_nlink == 1)"


def _key_dir(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    return keys


@pytest.mark.parametrize("where", ["inside the store root", "outside the store root"])
def test_a_hard_linked_master_key_file_is_refused(tmp_path: Path, where: str) -> None:
    root = make_store(tmp_path / "store")
    key_file = _key_dir(tmp_path) / "master.key"
    generate_master_key(str(key_file), root_path=str(root))
    with SecureStore(root, master_key_file=str(key_file), environ=KEYS) as store:
        store.put("s", "slot", "v")  # one name: accepted
    link = root / "master.key" if where == "inside the store root" else tmp_path / "master.key.copy"
    os.link(key_file, link)
    with pytest.raises(KeyMaterialError) as refused:
        SecureStore(root, master_key_file=str(key_file), environ=KEYS)
    message = str(refused.value)
    assert f"refused key file {key_file}: it has 2 hard links; {RULE}" in message and "\n" not in message
    link.unlink()
    with SecureStore(root, master_key_file=str(key_file), environ=KEYS) as store:
        assert store.get("s", "slot") == "v"


def test_the_cli_refuses_a_hard_linked_master_key_file(tmp_path: Path) -> None:
    root = make_store(tmp_path / "store")
    key_file = _key_dir(tmp_path) / "master.key"
    generate_master_key(str(key_file), root_path=str(root))
    os.link(key_file, root / "planted")
    result = run_cli("--root", str(root), "--master-key-file", str(key_file), "put", "s", "x", '"v"')
    assert result.returncode == 4 and "st_nlink == 1" in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("kind", ["signing key", "seed"])
def test_other_secret_key_files_with_a_second_name_are_refused(tmp_path: Path, kind: str) -> None:
    root = make_store(tmp_path / "store")
    ctx = FsContext()
    if kind == "signing key":
        key_file = _key_dir(tmp_path) / "signing.key"
        generate_signing_key(ctx, str(key_file), root_path=str(root))
        load = lambda: SecureStore(root, master_key=MASTER_KEY, signing_key_file=str(key_file), environ={})  # noqa: E731
    else:
        key_file = seed_path(root)
        load = lambda: load_seed(ctx, str(key_file), root_path=str(root))  # noqa: E731
    load()  # one name: accepted
    os.link(key_file, root / "planted")
    with pytest.raises(KeyMaterialError, match=r"it has 2 hard links; a secret key file must have exactly one name"):
        load()


def test_public_key_files_may_have_more_than_one_name(tmp_path: Path) -> None:
    """A public value loses nothing through a second name, and a second name of a file we own
    gives nobody else a way to change it: backups that hard-link files (rsnapshot, cp -l) work."""
    public = tmp_path / "audit.pub"
    public.write_text(SIGNING.verifier.text() + "\n")
    os.link(public, tmp_path / "audit.pub.snapshot")
    assert load_public_key(FsContext(), str(public)) == SIGNING.verifier
    assert read_key_file(str(public), FsContext(), root_path=None, secret=False).startswith(SIGNING.verifier.text().encode())
    with pytest.raises(KeyMaterialError, match="st_nlink == 1"):
        read_key_file(str(public), FsContext(), root_path=None)  # read as a secret: refused
