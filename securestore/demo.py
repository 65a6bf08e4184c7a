"""`securestore demo`: a scripted agent session against a fresh store, shown end to end."""

from __future__ import annotations

import os
import secrets as random_source
import string
from dataclasses import replace
from typing import Any

import orjson

from .audit.checkpoint import CHECKPOINTS_FILE, peek_note
from .backends.local.auditlog import LOG_FILE
from .fs import Dir, FsContext, make_temp_dir, open_root, remove_dir, walk
from .backends.local.layout import AUDIT_DIR, SESSIONS_DIR
from .core.policy import encode_name
from .backends.local.proofs import make_anchor
from .render import dump_json, format_verify, safe_lines
from .core.secrets import Secret
from .api.keys import generate_signing_key, load_seed
from .api.store import SecureStore, generate_master_key, init_store
from .backends.local.verify import VerifyOptions, verify_store

SESSION = "support-bot/acme/ticket-4711"


def _say(*lines: str) -> None:
    """Each line escaped whole (paths come from --root and $TMPDIR, reports from the store)."""
    print(safe_lines(lines))


def _token(alphabet: str, length: int) -> str:
    return "".join(random_source.choice(alphabet) for _ in range(length))


def _fake_secrets() -> dict[str, str]:
    """Realistic-format credentials, made up fresh on every run (none is real)."""
    alnum = string.ascii_letters + string.digits
    return {
        "openai": "sk-proj-" + _token(alnum, 48),
        "aws_id": "AKIA" + _token(string.ascii_uppercase + string.digits, 16),
        "db_password": "Tr0ub4dor&" + _token(string.digits, 4),
        "github": "ghp_" + _token(alnum, 36),
        "deploy": _token(alnum, 32),
    }


def _script(fake: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Our staging deploy is failing. Can you check the app config?"},
        {"role": "assistant", "tool_call": {"name": "shell", "arguments": {"cmd": "cat deploy/.env"}}},
        {"role": "tool", "name": "shell", "content": (
            "APP_ENV=staging\n"
            f"OPENAI_API_KEY={fake['openai']}\n"
            f"AWS_ACCESS_KEY_ID={fake['aws_id']}\n"
            "LOG_LEVEL=debug\n"
        )},
        {"role": "assistant", "content": "The config loads. Which database credentials does staging use?"},
        {"role": "user", "content": f"It uses the app user; the db password is {fake['db_password']} if you need it."},
        {"role": "assistant", "tool_call": {"name": "shell", "arguments": {"cmd": "git remote -v"}}},
        {"role": "tool", "name": "shell", "content": (
            f"origin\thttps://x-access-token:{fake['github']}@github.com/acme/app.git (fetch)"
        )},
        {"role": "assistant", "content": "Found it: the remote embeds an expired token. Rotate it and redeploy."},
    ]


def _raw_files(directory: Dir, prefix: str = "") -> list[tuple[str, int, bytes | None]]:
    out = []
    for rel, info in walk(directory):
        data = None
        if info.kind == "file":
            parts = rel.split("/")
            holder = directory
            opened = []
            for part in parts[:-1]:
                holder = holder.open_dir(part)
                opened.append(holder)
            data = holder.read(parts[-1], 64 * 1024 * 1024)
            for handle in opened:
                handle.close()
        out.append((prefix + rel + ("/" if info.kind == "dir" else ""), info.mode, data))
    return out


def _attacks(store: SecureStore, ctx: FsContext, options: VerifyOptions) -> bool:
    """Two attacks by someone with write access, on this throwaway store, each undone after
    verify has seen it: an edited record, and a cut tail (against an anchor kept elsewhere)."""
    anchor = make_anchor(store)
    with open_root(store.root_path, ctx, create=False) as root_dir, root_dir.open_dir(SESSIONS_DIR) as sessions, \
            sessions.open_dir(encode_name(SESSION)) as session_dir, session_dir.open_dir(AUDIT_DIR) as audit:
        log = audit.read(LOG_FILE, 1 << 24)
        checkpoints = audit.read(CHECKPOINTS_FILE, 1 << 24)
        lines = log.splitlines(keepends=True)
        _say("", "== an attacker with write access edits record 3 (one digit of the writer's pid) ==")
        edited = bytearray(lines[3])
        at = edited.index(b'"pid":') + 6  # still valid JSON: at this record only the MAC can tell
        edited[at] = ord("1") if edited[at] != ord("1") else ord("2")
        audit.write_atomic(LOG_FILE, b"".join(lines[:3]) + bytes(edited) + b"".join(lines[4:]))
        first = verify_store(store, options=options)
        _say(first.failures[0].describe() if first.failures else "NOT DETECTED",
             "", "== ...or cuts the last 4 records and the checkpoints that covered them ==")
        kept = [line for line in checkpoints.splitlines(keepends=True)
                if peek_note(orjson.loads(line)["note"]).size <= len(lines) - 4]
        audit.write_atomic(LOG_FILE, b"".join(lines[:-4]))
        audit.write_atomic(CHECKPOINTS_FILE, b"".join(kept))
        second = verify_store(store, options=replace(options, anchor=anchor))
        _say(f"exit {second.exit_code}: " + (second.failures[0].describe() if second.failures else "NOT DETECTED"))
        audit.write_atomic(LOG_FILE, log)  # put everything back
        audit.write_atomic(CHECKPOINTS_FILE, checkpoints)
    return first.exit_code == 1 and second.exit_code == 5


def run_demo(root: str | None, *, keep: bool = False) -> int:
    ctx = FsContext()
    workdir = make_temp_dir(ctx, "securestore-demo-")
    root = root or os.path.join(workdir, "store")
    key_file = os.path.join(workdir, "master.key")
    fake = _fake_secrets()
    os.environ.setdefault("DEMO_DEPLOY_TOKEN", fake["deploy"])
    try:
        signing_file, seed_file = os.path.join(workdir, "audit-signing.key"), os.path.join(workdir, "audit.seed")
        signer = generate_signing_key(ctx, signing_file, root_path=root)
        init_store(root, seed_out=seed_file, signing_key_file=signing_file)
        generate_master_key(key_file, root_path=root)
        _say(f"store: {root}", f"master key: {key_file}", f"audit signing key: {signing_file}",
             f"audit verification seed (the auditor's): {seed_file}", "(all outside the store root)", "")
        with SecureStore(root, master_key_file=key_file, signing_key_file=signing_file) as store:
            script = _script(fake)
            metadata = {"title": "Staging deploy failing", "workspace": "acme/app", "agent": "support-bot",
                        "model": "gpt-4o"}
            with store.create_session(SESSION, metadata=metadata) as session:
                for turn, (start, end) in enumerate(((0, 3), (3, 5), (5, 8)), start=1):
                    with session.turn():  # one atomic, audited batch per turn
                        session.append_items(script[start:end])
                        session.slot("ext.shell").put({"cwd": "/srv/app", "commands_run": turn})
                    _say(f"turn {turn}: {end - start} messages committed as one batch")
                session.slot("ext.deploy").put({"token": Secret.from_env("DEMO_DEPLOY_TOKEN"), "target": "staging"})
                session.update_metadata(labels={"ticket": "4711", "env": "staging"})

                _say("", "== what is stored (secrets appear only as references) ==",
                     f"-- transcript ({len(session)} items)",
                     *("  " + dump_json(item, indent=False) for item in session.items()),
                     *(f"-- slot {slot}: {dump_json(session.slot(slot).get(), indent=False)}"
                       for slot in session.slots()),
                     f"-- metadata, revision {session.revision}: {dump_json(session.metadata, indent=False)}")

                resolved = session.items(resolve=True)
                deploy = session.slot("ext.deploy").get(resolve=True)
                _say("", "resolved with the master key, the transcript equals the original: "
                     f"{resolved == script and deploy['token'] == fake['deploy']}")

            _say("", "== on disk ==")
            with open_root(root, ctx, create=False) as root_dir:
                files = _raw_files(root_dir)
            leaked = 0
            for rel, mode, data in files:
                _say(f"  {mode:04o}  {rel}")
                if data is not None:
                    leaked += sum(value.encode() in data for value in fake.values())
            _say("", f"secret values found in clear in any stored byte: {leaked} (of {len(fake)} planted)")

            _say("", "== audit verify, with the seed and the signer's public key ==")
            options = VerifyOptions(seed=load_seed(ctx, seed_file, root_path=root)[1], public_key=signer.verifier)
            report = verify_store(store, options=options)
            _say(*format_verify(report).split("\n"))
            caught = True
            if root == os.path.join(workdir, "store"):  # never attack a store the user named
                caught = _attacks(store, ctx, options)
            return 0 if report.ok and leaked == 0 and caught else 1
    finally:
        if keep or root != os.path.join(workdir, "store"):
            # With --root the store outlives the demo, so its master key must too.
            _say("", f"kept: {workdir}")
        else:
            remove_dir(workdir, ctx)
