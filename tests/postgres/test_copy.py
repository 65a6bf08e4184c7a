"""`copy_store` / `securestore migrate copy`: a whole store, audit trail included, moved between
a directory and PostgreSQL (both ways, and within each), verified before and after with the
ORIGINAL seed and anchor; refused, with nothing written to the destination, when the source
does not verify; the destination must be empty; an interrupted or tampered copy is never a store."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from securestore import (
    AuditPolicy,
    IntegrityError,
    LockHeldError,
    NotFoundError,
    SecureStore,
    Secret,
    StoreConfig,
    UsageError,
    copy_store,
    verify_store,
)
from securestore.api import export_anchor, verify_options
from securestore.api.copying import COPY_MARKER
from securestore.config import MaintenancePolicy
from securestore.core.policy import encode_name
from securestore.core.retention import DAY_MS
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.legacy import legacy_map, write
from tests.support.pg_stores import fresh_database, set_up_database
from tests.support.postgres import PostgresServer
from tests.support.stores import HISTORY_NOW, make_pg_store, make_store, run_cli_here, seed_path, tree_snapshot

CONFIG = StoreConfig(snapshot_every_records=2, audit=AuditPolicy(epoch_records=3, epoch_seconds=86_400),
                     lock_timeout_seconds=0.3)
SECRET_TEXT = "s3cr3t-token-value-for-the-copy"
TABLES = ("nodes", "chunks", "audit_records")


def _open(root: Path | str, clock: int = HISTORY_NOW) -> SecureStore:
    return SecureStore(root, CONFIG, master_key=MASTER_KEY, environ=KEYS, clock=lambda: clock)


def _new_store(kind: str, server: PostgresServer, tmp_path: Path, name: str) -> Path | str:
    if kind == "postgres":
        (tmp_path / name).mkdir()
        return make_pg_store(set_up_database(server), tmp_path / name, CONFIG)
    return make_store(tmp_path / name, CONFIG)


def _empty_destination(kind: str, server: PostgresServer, tmp_path: Path, name: str) -> Path | str:
    return set_up_database(server) if kind == "postgres" else tmp_path / name


def _copy(src: Path | str, dst: Path | str, **kwargs: object) -> object:
    return copy_store(src, dst, seed_file=str(seed_path(src)), config=CONFIG, environ=KEYS, **kwargs)  # type: ignore[arg-type]


def _rows(url: str) -> dict[str, int]:
    with psycopg.connect(url) as connection:
        return {table: connection.execute(f"SELECT count(*) FROM securestore.{table}").fetchone()[0]  # type: ignore[index]
                for table in TABLES}


def _untouched(dst: Path | str) -> None:
    """Nothing was written: no directory made, no row inserted."""
    if isinstance(dst, str):
        assert _rows(dst) == dict.fromkeys(TABLES, 0)
    else:
        assert not dst.exists()


def _without_locks(tree: dict[str, tuple[int, bytes | None]]) -> dict[str, tuple[int, bytes | None]]:
    return {path: entry for path, entry in tree.items() if Path(path).name != "lock"}


def _rich_store(root: Path | str, tmp_path: Path) -> Path:
    """Sessions, a transcript in several segments, slots, vaulted secrets, a deleted session, an
    evicted one (maintenance), an import rolled back (sessions moved aside, an import record),
    then sealed; returns an anchor exported from it (kept outside the store)."""
    with _open(root, HISTORY_NOW - 40 * DAY_MS) as store:
        with store.create_session("old-chat") as session:
            session.append_items([{"role": "user", "content": "long ago"}])
    legacy = write(tmp_path / "sessions.json", legacy_map())
    with _open(root) as store:
        with store.create_session("chat", metadata={"title": "copy me", "workspace": "w"}) as session:
            for turn in range(5):
                session.append_items([{"role": "user", "content": f"turn {turn}"}])
            session.append_items([{"role": "assistant", "content": "password=hunter2hunter2"}])
        store.put("chat", "ext.state", {"n": 1})
        store.put("chat", "creds", {"token": Secret(SECRET_TEXT)})
        store.put("gone", "x", 1)
        store.delete_session("gone")
        store.migrate(str(legacy))
        store.rollback_migration(str(legacy))
        evicted = store.maintain(enforce=True, now_ms=HISTORY_NOW, policy=MaintenancePolicy(prune_after_days=30))
        assert [e.key for e in evicted.evictions] == ["old-chat"]
        store.seal()
        anchor = tmp_path / "anchor.json"
        anchor.write_bytes(export_anchor(store))
    return anchor


def _cli_verify(root: Path | str, seed: Path, anchor: Path) -> None:
    verified = run_cli_here("audit", "verify", "--root", str(root), "--seed", str(seed), "--anchor", str(anchor))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "result: OK, the trail is intact and the data matches it" in verified.stdout


def test_disk_to_postgres_and_back_keeps_every_byte_and_verifies_with_the_original_seed(
        pg_server: PostgresServer, tmp_path: Path) -> None:
    src = make_store(tmp_path / "src", CONFIG)
    seed = seed_path(src)
    anchor = _rich_store(src, tmp_path)
    url = set_up_database(pg_server)
    to_pg = copy_store(src, url, seed_file=str(seed), anchor_file=str(anchor), config=CONFIG, environ=KEYS)
    assert to_pg.copy_verify.ok and to_pg.copy_verify.seed and to_pg.sessions == 1
    back = tmp_path / "back"
    # The CLI, the other way: one line, exit 0.
    moved = run_cli_here("migrate", "copy", "--from", url, "--to", str(back), "--seed", str(seed), "--anchor", str(anchor))
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.count("\n") == 1 and moved.stdout.startswith(f"copied store {to_pg.store_id} from {url} ")
    # Byte for byte (modes too) the store that left, every audit log, checkpoint and key file included.
    before, after = _without_locks(tree_snapshot(src)), _without_locks(tree_snapshot(back))
    assert after == before
    assert any(path.startswith("migrated-aside/") and path.endswith("audit/log.jsonl") for path in after)
    assert any(Path(path).name.startswith("journal-") for path in after)  # sealed transcript segments
    assert not (back / COPY_MARKER).exists() and (back / "store.json").exists()
    # The original seed and anchor verify both copies, through the command an auditor runs.
    _cli_verify(url, seed, anchor)
    _cli_verify(back, seed, anchor)
    with psycopg.connect(url) as connection:  # the trail in PostgreSQL: one append-only row per record
        records = [bytes(row[0]) for row in connection.execute("SELECT data FROM securestore.audit_records")]
    assert len(records) > 50 and all(record.count(b"\n") == 1 and record.endswith(b"\n") for record in records)
    with _open(url) as copy:
        assert copy.identity.backend == "fs"  # where it was made; the bytes the trail committed
        assert copy.get("chat", "creds", resolve=True) == {"token": SECRET_TEXT}  # the vault, same master key
        assert copy.read_items("chat", resolve=True)[-1] == {"role": "assistant", "content": "password=hunter2hunter2"}
        assert [s.key for s in copy.list_sessions().sessions] == ["chat"]
        report = verify_store(copy, None, verify_options(copy, seed_file=str(seed)))
        # Every deletion the source's trail records ("gone", the evicted "old-chat", the import rolled back).
        assert report.ok and report.deletions == to_pg.source_verify.deletions and len(report.deletions) == 5
        copy.put("chat", "after-the-move", 2)  # a live store: its epoch key and chain carried on
    with _open(url) as copy:
        assert verify_store(copy, None, verify_options(copy, seed_file=str(seed), anchor_file=str(anchor))).ok


def test_postgres_to_postgres_and_disk_to_disk(pg_server: PostgresServer, tmp_path: Path) -> None:
    src = _new_store("postgres", pg_server, tmp_path, "made-in-pg")
    anchor = _rich_store(src, tmp_path)
    second = set_up_database(pg_server)
    report = copy_store(src, second, seed_file=str(seed_path(src)), anchor_file=str(anchor), config=CONFIG,
                        environ=KEYS)
    assert report.to_json()["copy_verify"] == {"ok": True, "exit_code": 0, "trust_root": "anchor", "seed": True,
                                               "files_checked": report.source_verify.files_checked}
    on_disk, again = tmp_path / "disk", tmp_path / "disk-again"
    _copy(src, on_disk)
    copy_store(on_disk, again, seed_file=str(seed_path(src)), config=CONFIG, environ=KEYS)
    assert _without_locks(tree_snapshot(again)) == _without_locks(tree_snapshot(on_disk))
    for root in (second, again):
        _cli_verify(root, seed_path(src), anchor)
        with _open(root) as copy:
            assert copy.identity.backend == "postgres"


def _slot_file(session: str, slot: str) -> str:
    return f"sessions/{encode_name(session)}/state/{encode_name(slot)}.json"


def _tamper_fs(root: Path, what: str) -> None:
    if what == "data":
        path = root / _slot_file("chat", "ext.state")
        path.write_bytes(path.read_bytes().replace(b'"n":1', b'"n":7'))
    elif what == "audit":  # one record's timestamp in the store log, the line otherwise intact
        path = root / "audit" / "log.jsonl"
        lines = path.read_bytes().splitlines(keepends=True)
        lines[2] = lines[2].replace(b'"ts":1', b'"ts":2', 1)
        path.write_bytes(b"".join(lines))
    else:
        (root / _slot_file("chat", "ext.state")).unlink()


def _node(connection: psycopg.Connection[tuple[object, ...]], path: str) -> int:
    parent = 0
    for name in path.split("/"):
        row = connection.execute("SELECT id FROM securestore.nodes WHERE parent = %s AND name = %s",
                                 (parent, name)).fetchone()
        assert row is not None, path
        parent = int(row[0])  # type: ignore[call-overload]
    return parent


def _tamper_pg(url: str, what: str) -> None:
    """As the database's superuser: a data row edited, an audit row rewritten (the append-only
    trigger switched off first, as its owner could), a file's rows deleted."""
    with psycopg.connect(url, autocommit=True) as connection:
        if what == "data":
            node = _node(connection, _slot_file("chat", "ext.state"))
            data = bytes(connection.execute("SELECT data FROM securestore.chunks WHERE node = %s",
                                            (node,)).fetchone()[0])  # type: ignore[index]
            connection.execute("UPDATE securestore.chunks SET data = %s WHERE node = %s",
                               (data.replace(b'"n":1', b'"n":7'), node))
        elif what == "audit":
            node = _node(connection, "audit/log.jsonl")
            data = bytes(connection.execute("SELECT data FROM securestore.audit_records WHERE node = %s AND seq = 3",
                                            (node,)).fetchone()[0])  # type: ignore[index]
            connection.execute("ALTER TABLE securestore.audit_records DISABLE TRIGGER audit_records_append_only")
            connection.execute("UPDATE securestore.audit_records SET data = %s WHERE node = %s AND seq = 3",
                               (data.replace(b'"ts":1', b'"ts":2', 1), node))
            connection.execute("ALTER TABLE securestore.audit_records ENABLE TRIGGER audit_records_append_only")
        else:
            node = _node(connection, _slot_file("chat", "ext.state"))
            connection.execute("DELETE FROM securestore.chunks WHERE node = %s", (node,))
            connection.execute("DELETE FROM securestore.nodes WHERE id = %s", (node,))


def _small_store(root: Path | str) -> None:
    with _open(root) as store:
        with store.create_session("chat") as session:
            session.append_items([{"role": "user", "content": "hello"}])
        store.put("chat", "ext.state", {"n": 1})


@pytest.mark.parametrize("what", ["data", "audit", "missing"])
@pytest.mark.parametrize("src_kind,dst_kind", [("fs", "postgres"), ("postgres", "fs")])
def test_a_source_that_does_not_verify_is_refused_and_nothing_is_written(
        pg_server: PostgresServer, tmp_path: Path, what: str, src_kind: str, dst_kind: str) -> None:
    src = _new_store(src_kind, pg_server, tmp_path, "src")
    _small_store(src)
    if isinstance(src, str):
        _tamper_pg(src, what)
    else:
        _tamper_fs(src, what)
    dst = _empty_destination(dst_kind, pg_server, tmp_path, "dst")
    with pytest.raises(IntegrityError, match=r"^refused: the source .* does not verify \((tampered|incomplete): "
                                             r".*\); nothing was written to "):
        _copy(src, dst)
    _untouched(dst)
    refused = run_cli_here("migrate", "copy", "--from", str(src), "--to", str(dst), "--seed", str(seed_path(src)))
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "does not verify" in refused.stderr
    _untouched(dst)


def test_the_destination_must_be_empty(pg_server: PostgresServer, tmp_path: Path) -> None:
    src = make_store(tmp_path / "src", CONFIG)
    _small_store(src)
    holding = tmp_path / "holding"
    holding.mkdir(mode=0o700)
    (holding / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"holding is not empty \(1 entries, e.g. 'notes.txt'\)"):
        _copy(src, holding)
    assert [p.name for p in holding.iterdir()] == ["notes.txt"]
    url = make_pg_store(set_up_database(pg_server), tmp_path, CONFIG)
    rows = _rows(url)
    with pytest.raises(UsageError, match="already holds a store"):
        _copy(src, url)
    assert _rows(url) == rows
    with pytest.raises(UsageError, match="overlap"):
        _copy(src, src / "inside")
    with pytest.raises(UsageError, match="overlap"):
        _copy(src, src)
    assert not (src / "inside").exists()
    with pytest.raises(NotFoundError, match="no securestore schema"):  # a database pg-setup never set up
        _copy(src, fresh_database(pg_server))


@pytest.mark.parametrize("dst_kind", ["fs", "postgres"])
def test_an_interrupted_copy_is_never_a_store_and_is_refused_as_a_destination(
        pg_server: PostgresServer, tmp_path: Path, dst_kind: str) -> None:
    src = make_store(tmp_path / "src", CONFIG)
    _small_store(src)
    dst = _empty_destination(dst_kind, pg_server, tmp_path, "dst")
    seen: list[str] = []

    def crash_at_the_fifth_file(path: str, done: int) -> None:
        seen.append(path)
        with pytest.raises((NotFoundError, IntegrityError), match="store.json is missing|no store"):
            _open(dst).close()  # at every step so far, the destination is no store
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _copy(src, dst, progress=crash_at_the_fifth_file)
    assert len(seen) == 5 and "store.json" not in seen
    with pytest.raises((NotFoundError, IntegrityError)):
        _open(dst).close()
    with pytest.raises(UsageError, match=rf"holds an unfinished copy \({COPY_MARKER}\): remove the directory, or "
                                         r"have the database's owner drop the schema and run `securestore pg-setup`"):
        _copy(src, dst)
    # The identity goes last, after every other file: a full copy ends with it.
    finished = _empty_destination(dst_kind, pg_server, tmp_path, "finished")
    order: list[str] = []
    _copy(src, finished, progress=lambda path, done: order.append(path))
    assert order[-1] == "store.json" and order.count("store.json") == 1 and "lock" not in order


def _edit_log_line(root: Path) -> None:
    path = root / "audit" / "log.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"ts":1', b'"ts":2', 1)
    path.write_bytes(b"".join(lines))


def _edit_epoch_key(root: Path) -> None:  # a file the trail does not cover: the writer's current key
    path = root / "audit" / "epoch.key"
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("edit,finding,code", [
    (_edit_log_line, r"does not verify \(tampered: audit/log.jsonl", 1),
    (_edit_epoch_key, r"differs from the source: audit/epoch.key holds other bytes", 1),
])
def test_a_copy_changed_while_it_is_made_is_caught_and_unpublished(
        pg_server: PostgresServer, tmp_path: Path, edit: Callable[[Path], None], finding: str, code: int) -> None:
    src = _new_store("postgres", pg_server, tmp_path, "src")
    _small_store(src)
    dst = tmp_path / "dst"

    def meddle(path: str, done: int) -> None:
        if path == "store.json":  # everything is written: change the copy before it is checked
            edit(dst)

    with pytest.raises(IntegrityError, match=rf"^the copy at {dst} {finding}.*; it is not a store \(store.json "
                                             rf"removed, {COPY_MARKER} kept\)") as refused:
        _copy(src, dst, progress=meddle)
    assert refused.value.exit_code == code
    assert not (dst / "store.json").exists() and (dst / COPY_MARKER).exists()
    with pytest.raises(IntegrityError, match="store.json is missing"):
        _open(dst).close()
    with _open(src) as store:
        assert verify_store(store, None, verify_options(store, seed_file=str(seed_path(src)))).ok


@pytest.mark.parametrize("src_kind", ["fs", "postgres"])
def test_a_session_held_by_a_live_writer_holds_the_copy_back(pg_server: PostgresServer, tmp_path: Path,
                                                             src_kind: str) -> None:
    src = _new_store(src_kind, pg_server, tmp_path, "src")
    _small_store(src)
    dst = tmp_path / "dst"
    with _open(src) as writer, writer.open_session("chat") as session:
        with pytest.raises(LockHeldError, match=r"^refused: the source is in use \(.*held by .*\); the copy holds "
                                                r"every lock"):
            _copy(src, dst)
        session.append_items([{"role": "user", "content": "still writing"}])
    assert not dst.exists()
    _copy(src, dst)  # once the writer has closed
    with _open(dst) as copy:
        assert copy.read_items("chat")[-1] == {"role": "user", "content": "still writing"}


def test_json_output_and_the_key_directory_serves_the_copy(tmp_path: Path) -> None:
    """A store whose keys `init` kept in the key directory: the copy keeps the store id, so the
    same key directory serves it (a plain verify trusts the public key kept there)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    env = {"SECURESTORE_KEY_DIR": str(tmp_path / "keys"), "SECURESTORE_AUDIT_SIGNING_KEY": ""}
    made = run_cli_here("init", "--root", str(src), env=env)
    assert made.returncode == 0, made.stderr
    put = run_cli_here("put", "s", "ext.state", "1", "--root", str(src), env=env)
    assert put.returncode == 0, put.stderr
    moved = run_cli_here("migrate", "copy", "--from", str(src), "--to", str(dst), "--json", env=env)
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert report["ok"] and report["copy_verify"]["trust_root"] == "keyring" and report["sessions"] == 1
    assert stat.S_IMODE(dst.stat().st_mode) == 0o700
    verified = run_cli_here("audit", "verify", "--root", str(dst), env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    got = run_cli_here("get", "s", "ext.state", "--root", str(dst), env=env)
    assert got.returncode == 0 and got.stdout.strip() == "1"
    unnamed = run_cli_here("migrate", "copy", "--from", str(src), env=env)
    assert unnamed.returncode == 2 and "--to" in unnamed.stderr
