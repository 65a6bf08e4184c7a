"""Deleting a session: audited before acting, a symlink-safe fd walk, and crypto-shredding."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import orjson
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.support.keys import KEYS, MASTER_KEY
from tests.support.raw_tree import raw_tree, session_path
from tests.support.stores import all_bytes, session_dir
from securestore import KeyMaterialError, NotFoundError, Secret, SecureStore, verify_store
from securestore.audit.chain import parse_record
from securestore.core.canonical import canonical_bytes
from securestore.core.policy import encode_name
from securestore.core.secrets.vault import _kek, load_vault, parse_master_key, unseal, unwrap_data_key

pytestmark = pytest.mark.both_backends

SECRET = "shred-me-" + "7" * 24


def test_deleted_session_vault_cannot_be_decrypted_even_with_the_master_key(store: SecureStore,
                                                                           root: Path | str) -> None:
    store.put("s", "creds", {"token": Secret(SECRET)})
    ref = store.get("s", "creds")["token"].removeprefix("[secret:vault:").removesuffix("]")
    raw, name = raw_tree(root), encode_name("s")
    copied_vault = raw.read(f"{session_path('s')}/vault.json")  # e.g. a leftover backup
    key_file = raw.read(f"{session_path('s')}/vault.key")
    master = parse_master_key(MASTER_KEY)

    # Control: while vault.key exists, the copy decrypts, so the test below can fail.
    data_key = unwrap_data_key(key_file, master, store.store_id, name)
    assert unseal(load_vault(copied_vault, data_key, store.store_id, name), data_key, ref) == SECRET

    store.delete_session("s")
    assert not raw.exists(session_path("s"))
    assert key_file not in all_bytes(root)
    assert not [p for p in raw.snapshot() if p.endswith("vault.key")]
    # With only the master key, no key it yields opens the copied ciphertext.
    entry = orjson.loads(copied_vault)["entries"][ref]
    nonce, ciphertext = base64.b64decode(entry["nonce"]), base64.b64decode(entry["ct"])
    aad = canonical_bytes({"kind": entry["kind"], "ref": ref, "session": name, "store": store.store_id})
    for candidate in (master, _kek(master), hashlib.sha256(master).digest()):  # what the master key yields
        with pytest.raises(InvalidTag):
            AESGCM(candidate).decrypt(nonce, ciphertext, None)
        with pytest.raises(InvalidTag):
            AESGCM(candidate).decrypt(nonce, ciphertext, aad)


def test_deletion_is_audited_before_acting_and_verify_still_passes(store: SecureStore, root: Path | str) -> None:
    store.put("a", "x", 1)
    store.put("b", "x", 2)
    store.delete_session("a")
    records = [parse_record(line) for line in raw_tree(root).read("audit/log.jsonl").splitlines()]
    ops = [(r.kind, getattr(r, "op", None), getattr(r, "result", None)) for r in records]
    delete = ops.index(("intent", "session.delete", None))
    assert ops[delete + 1] == ("outcome", None, "committed")
    assert ("intent", "session.create", None) in ops[:delete]  # the trail keeps that it existed
    report = verify_store(store)
    assert report.ok and [i.key for i in store.scan_sessions()[0]] == ["b"]
    with pytest.raises(NotFoundError):
        store.get("a", "x")


@pytest.mark.fs_only  # symlinks exist only on disk
def test_deletion_never_follows_a_symlink_planted_inside(store: SecureStore, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    store.put("s", "x", 1)
    os.symlink(outside, session_dir(root, "s") / "state" / "link")
    store.delete_session("s")
    assert (outside / "keep.txt").read_text() == "keep"
    assert not session_dir(root, "s").exists()


def test_wrong_master_key_cannot_open_the_vault_key(store: SecureStore, root: Path) -> None:
    store.put("s", "x", Secret(SECRET))
    with SecureStore(root, master_key="B" * 43 + "=", environ=KEYS) as other, pytest.raises(KeyMaterialError):
        other.get("s", "x", resolve=True)
