"""The fs fence against a hostile filesystem: symlinks, hard links, FIFOs, foreign modes."""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import stat
from pathlib import Path

import pytest

from tests.support.keys import KEYS, MASTER_KEY
from tests.support.stores import make_store, session_dir, tree_snapshot
from securestore import (
    DurabilityError,
    NotFoundError,
    SecureStore,
    UnsafeFileError,
    verify_store,
)
from securestore.fs import FsContext, check_name, instrumented, open_root
from securestore.fs.osapi import REAL_OS
from securestore.backends.local.layout import slot_file
from securestore.core.policy import encode_name


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside"
    target.mkdir()
    (target / "victim.json").write_bytes(b'{"ok": "original"}')
    # Same owner and mode as a real slot file: only O_NOFOLLOW can refuse a link to it.
    (target / "victim.json").chmod(0o600)
    return target


def open_store(root: Path) -> SecureStore:
    return SecureStore(root, master_key=MASTER_KEY, environ=KEYS)


def test_symlinked_root_is_refused(tmp_path: Path, outside: Path) -> None:
    make_store(outside / "real")
    link = tmp_path / "link"
    link.symlink_to(outside / "real")
    with pytest.raises(UnsafeFileError, match="symbolic link|not a directory"):
        SecureStore(link)


def test_root_group_writable_or_foreign_owner_is_refused(root: Path) -> None:
    root.chmod(0o770)
    with pytest.raises(UnsafeFileError, match="group/world-writable"):
        open_store(root)
    root.chmod(0o755)
    with pytest.raises(UnsafeFileError, match="expected 0700"):
        open_store(root)
    root.chmod(0o700)
    os.chown(root, 12345, -1)  # tests run as root in CI; another uid is available
    with pytest.raises(UnsafeFileError, match="owned by uid 12345"):
        open_store(root)


def test_symlinked_session_dir_is_refused(root: Path, outside: Path) -> None:
    with open_store(root) as store:
        store.put("victim", "s", {"a": 1})
        store.put("other", "s", {"a": 2})
    real = session_dir(root, "victim")
    real.rename(outside / "moved")
    real.symlink_to(outside / "moved")
    before = tree_snapshot(outside)
    with open_store(root) as store:
        with pytest.raises(UnsafeFileError):
            store.put("victim", "s", {"a": 3})
        with pytest.raises(UnsafeFileError):
            store.get("victim", "s")
    assert tree_snapshot(outside) == before


def test_symlinked_slot_file_is_never_read_or_written_through(root: Path, outside: Path) -> None:
    with open_store(root) as store:
        store.put("sess", "slot", {"a": 1})
    slot = session_dir(root, "sess") / "state" / slot_file(encode_name("slot"))
    slot.unlink()
    slot.symlink_to(outside / "victim.json")
    with open_store(root) as store:
        with pytest.raises(UnsafeFileError, match="symbolic link"):
            store.get("sess", "slot")
        assert not verify_store(store).ok
    assert (outside / "victim.json").read_bytes() == b'{"ok": "original"}'


def test_symlinked_intermediate_state_dir_is_refused(root: Path, outside: Path) -> None:
    with open_store(root) as store:
        store.put("sess", "slot", {"a": 1})
    state = session_dir(root, "sess") / "state"
    for child in state.iterdir():
        child.unlink()
    state.rmdir()
    state.symlink_to(outside)
    with open_store(root) as store, pytest.raises(UnsafeFileError):
        store.put("sess", "slot", {"a": 2})
    assert sorted(p.name for p in outside.iterdir()) == ["victim.json"]


def test_planted_symlink_at_temp_name_is_not_followed(tmp_path: Path, outside: Path) -> None:
    """The temp name is random, so plant links under every name the test RNG will produce."""
    root = tmp_path / "d"
    root.mkdir(mode=0o700)
    planted = "0" * 24
    (root / f".tmp-{planted}").symlink_to(outside / "victim.json")
    calls = iter([bytes(12), bytes.fromhex("11" * 12)])
    fixed = dataclasses.replace(REAL_OS, urandom=lambda n: next(calls))
    with open_root(str(root), FsContext(fixed), create=False) as handle:
        handle.write_atomic("file.json", b"new")
    assert (outside / "victim.json").read_bytes() == b'{"ok": "original"}'
    assert (root / "file.json").read_bytes() == b"new"
    assert (root / f".tmp-{planted}").is_symlink()  # a planted name is skipped, not reused


def test_hard_link_is_refused(root: Path, outside: Path) -> None:
    with open_store(root) as store:
        store.put("sess", "slot", {"a": 1})
    slot = session_dir(root, "sess") / "state" / slot_file(encode_name("slot"))
    os.link(slot, outside / "alias")
    with open_store(root) as store, pytest.raises(UnsafeFileError, match="hard links"):
        store.get("sess", "slot")


def test_file_owned_by_another_uid_is_refused(root: Path) -> None:
    with open_store(root) as store:
        store.put("sess", "slot", {"a": 1})
    slot = session_dir(root, "sess") / "state" / slot_file(encode_name("slot"))
    os.chown(slot, 12345, -1)
    with open_store(root) as store, pytest.raises(UnsafeFileError, match="owned by uid 12345"):
        store.get("sess", "slot")


def _hang_is_failure(signum: int, frame: object) -> None:
    raise AssertionError("the read blocked on a FIFO")


def test_fifo_does_not_hang_a_read(root: Path) -> None:
    with open_store(root) as store:
        store.put("sess", "slot", {"a": 1})
    slot = session_dir(root, "sess") / "state" / slot_file(encode_name("slot"))
    slot.unlink()
    os.mkfifo(slot, 0o600)
    # A watchdog, not a timing assertion: without O_NONBLOCK open() would block forever.
    previous = signal.signal(signal.SIGALRM, _hang_is_failure)
    signal.alarm(20)
    try:
        with open_store(root) as store, pytest.raises(UnsafeFileError, match="expected a file"):
            store.get("sess", "slot")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_wrong_mode_is_refused_not_repaired(root: Path) -> None:
    with open_store(root) as store:
        store.put("sess", "slot", {"a": 1})
    slot = session_dir(root, "sess") / "state" / slot_file(encode_name("slot"))
    slot.chmod(0o644)
    with open_store(root) as store, pytest.raises(UnsafeFileError, match="mode 0644, expected 0600"):
        store.get("sess", "slot")
    assert stat.S_IMODE(slot.stat().st_mode) == 0o644


@pytest.mark.parametrize("mask", [0o000, 0o077, 0o277])
def test_every_file_0600_and_dir_0700_under_any_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        root = tmp_path / "store"
        make_store(root)
        with open_store(root) as store:
            store.put("sess", "slot", {"password": "Hunter2!x"})
            store.put("sess", "other", [1, 2, 3])
            store.delete_slot("sess", "other")
    finally:
        os.umask(old)
    snapshot = tree_snapshot(root)
    assert snapshot, "store is empty"
    for rel, (mode, data) in snapshot.items():
        expected = 0o600 if data is not None else 0o700
        assert mode == expected, f"{rel} has mode {mode:04o}"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\x00b", "x" * 256])
def test_invalid_component_names_rejected(name: str) -> None:
    with pytest.raises(Exception, match="invalid file name"):
        check_name(name)


def test_read_cap_checked_before_reading(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir(mode=0o700)
    (root / "big").write_bytes(b"x" * 5000)
    os.chmod(root / "big", 0o600)
    reads: list[int] = []
    api = instrumented(REAL_OS, lambda name, args: reads.append(1) if name == "read" else None)
    with open_root(str(root), FsContext(api), create=False) as handle:
        with pytest.raises(Exception, match="exceeds the 100-byte cap"):
            handle.read("big", 100)
    assert reads == []


def test_fsync_failure_is_fatal_for_the_handle(root: Path) -> None:
    failing = {"on": False}

    def hook(name: str, args: tuple[object, ...]) -> None:
        if name == "fsync" and failing["on"]:
            raise OSError(errno.EIO, "injected")

    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, os_api=instrumented(REAL_OS, hook)) as store:
        store.put("sess", "slot", {"v": 1})
        failing["on"] = True
        with pytest.raises(DurabilityError):
            store.put("sess", "slot", {"v": 2})
        failing["on"] = False  # even once fsync "works" again, the handle stays dead: no retry
        with pytest.raises(DurabilityError, match="unusable"):
            store.put("sess", "slot", {"v": 3})
    with open_store(root) as store:
        store.put("sess", "probe", 0)  # reopening reconciles the dangling intent
        assert store.get("sess", "slot") in ({"v": 1}, {"v": 2})
        assert verify_store(store).ok


def test_remove_tree_never_follows_symlinks(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "d"
    root.mkdir(mode=0o700)
    (root / "victim").mkdir(mode=0o700)
    (root / "victim" / "link").symlink_to(outside)
    with open_root(str(root), FsContext(), create=False) as handle:
        handle.remove_tree("victim")
    assert (outside / "victim.json").exists()
    assert not (root / "victim").exists()


def test_missing_store_is_a_clear_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="securestore init"):
        SecureStore(tmp_path / "nothing")


def test_dir_handles_are_anchored(tmp_path: Path, outside: Path) -> None:
    """A directory renamed away and replaced by a symlink after it was opened: the handle still
    points at the original inode, so writes cannot be redirected by a later swap."""
    root = tmp_path / "d"
    root.mkdir(mode=0o700)
    (root / "sub").mkdir(mode=0o700)
    with open_root(str(root), FsContext(), create=False) as handle, handle.open_dir("sub") as sub:
        (root / "sub").rename(root / "moved")
        (root / "sub").symlink_to(outside)
        sub.write_atomic("f.json", b"1")
    assert (root / "moved" / "f.json").read_bytes() == b"1"
    assert not (outside / "f.json").exists()


def test_put_is_durable_in_the_right_order(root: Path) -> None:
    """intent fsynced before the act; temp file fsynced before the rename; directory fsynced
    after it. Without the directory fsync a rename can vanish in a power cut."""
    calls: list[tuple[str, tuple[object, ...]]] = []
    api = instrumented(REAL_OS, lambda name, args: calls.append((name, args)))
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, os_api=api) as store:
        store.put("sess", "slot", {"v": 1})
        calls.clear()
        store.put("sess", "slot", {"v": 2})
    names = [name for name, _ in calls]
    slot = slot_file(encode_name("slot"))
    renames = [i for i, (name, args) in enumerate(calls) if name == "replace" and args[1] == slot]
    assert len(renames) == 1
    rename = renames[0]
    # The listing index (derived, not fsynced) is written only after the outcome is appended.
    index_writes = [i for i, (name, args) in enumerate(calls) if name == "replace" and args[1] != slot]
    outcome = max(i for i, name in enumerate(names[:min(index_writes or [len(names)])]) if name == "write")
    assert all(i > outcome > rename for i in index_writes)
    temp_create = next(i for i, (name, args) in enumerate(calls)
                       if name == "open" and str(args[0]).startswith(".tmp-"))
    intent_write = max(i for i in range(temp_create) if names[i] == "write")
    assert "fsync" in names[intent_write:temp_create], "intent not made durable before acting"
    assert "fsync" in names[temp_create:rename], "temp file not fsynced before the rename"
    after = names[rename + 1 :]
    assert "fsync" in after and after.index("fsync") < after.index("write"), (
        "directory not fsynced after the rename, before the outcome is written"
    )


def test_a_kept_append_descriptor_follows_the_file_it_names(tmp_path: Path) -> None:
    """A handle keeps the files it appends to open; replacing, removing or renaming one through
    the handle lets go of it first, so no append lands in a file the name no longer reaches."""
    root = tmp_path / "d"
    root.mkdir(mode=0o700)
    with open_root(str(root), FsContext(), create=False) as handle:
        handle.ensure_file("log")
        handle.append("log", b"one\n", durable=False)
        handle.write_atomic("log", b"new\n")
        handle.append("log", b"two\n", durable=False)
        assert (root / "log").read_bytes() == b"new\ntwo\n"
        handle.rename("log", "old")
        handle.ensure_file("log")
        handle.append("log", b"three\n", durable=False)
        handle.unlink("old")
        assert (root / "log").read_bytes() == b"three\n"


def test_a_closed_store_leaves_no_descriptor_open(root: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    with open_store(root) as store:
        with store.create_session("s") as session:
            for n in range(5):
                session.append_items([{"n": n}])
            with session.turn():
                session.append_items([{"n": "turn"}])
            session.commit_turn()  # a seal: the segment appended to changes
            session.append_items([{"n": "after"}])
        store.put("s", "slot", {"v": 1})
    assert set(os.listdir("/proc/self/fd")) == before
