"""`securestore doctor`: exit 0 healthy, 4 when something needs attention, 1 on damage; it
changes nothing."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from securestore import SecureStore
from securestore.api import diagnose
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.stores import run_cli_here, session_dir, spawn_writer, tree_snapshot


def _doctor(root: Path, *extra: str) -> tuple[int, dict[str, dict[str, str]]]:
    result = run_cli_here("--root", str(root), "doctor", "--json", *extra, env={"SECURESTORE_MASTER_KEY": MASTER_KEY})
    report = json.loads(result.stdout)
    assert report["exit_code"] == result.returncode
    return result.returncode, {f["check"]: f for f in report["findings"]}


def _fill(root: Path) -> None:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        store.put("s", "slot", {"n": 1})
        with store.open_session("chat", create=True) as session:
            session.append_items([{"role": "user", "content": "hi"}])


def test_a_healthy_store_exits_0_and_doctor_writes_nothing(root: Path) -> None:
    _fill(root)
    before = tree_snapshot(root)
    code, found = _doctor(root)
    assert code == 0
    assert {f["status"] for f in found.values()} == {"ok"}
    assert set(found) >= {"root", "modes", "disk", "fsync", "keys", "locks", "audit", "intents", "seals", "index",
                          "last-seal"}
    assert tree_snapshot(root) == before
    text = run_cli_here("--root", str(root), "doctor", env={"SECURESTORE_MASTER_KEY": MASTER_KEY})
    assert text.returncode == 0 and text.stdout.strip().endswith("result: healthy")


def test_a_live_writer_is_fine_and_a_dead_ones_lock_record_needs_attention(root: Path) -> None:
    holder = spawn_writer(root, "hold")
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith("ready")
        code, found = _doctor(root)
        assert code == 0 and found["locks"]["detail"].startswith("1 live writer")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    code, found = _doctor(root)
    assert code == 4
    assert found["locks"]["status"] == "attention" and "stale lock record" in found["locks"]["detail"]


def test_a_missing_master_key_needs_attention(root: Path) -> None:
    _fill(root)
    result = run_cli_here("--root", str(root), "doctor", "--json", env={})
    assert result.returncode == 4
    found = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert found["keys"]["status"] == "attention" and "no master key" in found["keys"]["detail"]


def test_a_file_others_can_read_is_named_and_verify_refuses_it(root: Path) -> None:
    _fill(root)
    (session_dir(root, "chat") / "journal.log").chmod(0o644)
    code, found = _doctor(root)
    assert found["modes"]["status"] == "attention" and "journal.log has mode 0644" in found["modes"]["detail"]
    assert code == 1 and found["audit"]["status"] == "damage"  # verify refuses to read such a file


def test_a_tampered_journal_is_damage(root: Path) -> None:
    _fill(root)
    journal = session_dir(root, "chat") / "journal.log"
    data = bytearray(journal.read_bytes())
    data[data.index(b"hi")] = ord("H")
    journal.write_bytes(bytes(data))
    code, found = _doctor(root)
    assert code == 1 and found["audit"]["status"] == "damage"


def test_no_store_needs_attention_and_says_so(tmp_path: Path) -> None:
    report = diagnose(str(tmp_path / "absent"), {})
    assert report.exit_code == 4 and "no store at" in report.findings[0].detail
