"""`securestore demo`: a scripted agent session against a fresh store, shown end to end."""

from __future__ import annotations

import secrets as random_source
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..api import (
    AuditTrailDrill,
    Secret,
    SecureStore,
    VerifierKey,
    VerifyOptions,
    export_anchor,
    generate_master_key,
    init_store,
    make_scratch_dir,
    new_signing_key_file,
    raw_store_files,
    read_anchor,
    read_seed,
    verify_store,
    write_new_file,
)
from .render import dump_json, format_verify, safe_lines

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


def _attacks(store: SecureStore, anchor_file: str, options: VerifyOptions) -> bool:
    """Two attacks by someone with write access, on this throwaway store, each undone after
    verify has seen it: an edited record, and a cut tail (against an anchor kept elsewhere)."""
    write_new_file(anchor_file, export_anchor(store))
    with AuditTrailDrill(store, SESSION) as drill:
        _say("", "== an attacker with write access edits record 3 (one digit of the writer's pid) ==")
        drill.edit_record(3)
        first = verify_store(store, options=options)
        _say(first.failures[0].describe() if first.failures else "NOT DETECTED",
             "", "== ...or cuts the last 4 records and the checkpoints that covered them ==")
        drill.cut_tail(4)
        second = verify_store(store, options=replace(options, anchor=read_anchor(anchor_file)))
        _say(f"exit {second.exit_code}: " + (second.failures[0].describe() if second.failures else "NOT DETECTED"))
    return first.exit_code == 1 and second.exit_code == 5


@dataclass(frozen=True)
class _KeyFiles:
    """Where the demo keeps its keys and seed: in its temporary directory, outside the store root."""

    master: str
    signing: str
    seed: str


def run_demo(root: str | None, *, keep: bool = False, environ: Mapping[str, str]) -> int:
    """The demo against a new store at `root` (default: one in a temporary directory); 0 when
    every check holds. `environ` is where the store resolves `env:` references, so the demo's
    deploy token never enters the calling process's environment."""
    workdir = make_scratch_dir("securestore-demo-")
    own_root = workdir.file("store")
    root = root or own_root
    fake = _fake_secrets()
    demo_environ = {"DEMO_DEPLOY_TOKEN": fake["deploy"], **environ}  # a token already set wins
    try:
        keys = _KeyFiles(workdir.file("master.key"), workdir.file("audit-signing.key"), workdir.file("audit.seed"))
        signer = _new_store(root, keys, demo_environ)
        with SecureStore(root, master_key_file=keys.master, signing_key_file=keys.signing,
                         environ=demo_environ) as store:
            _converse(store, fake)
            leaked = _show_disk(root, fake)
            _say("", "== audit verify, with the seed and the signer's public key ==")
            options = VerifyOptions(seed=read_seed(keys.seed, root_path=root)[1], public_key=signer)
            report = verify_store(store, options=options)
            _say(*format_verify(report).split("\n"))
            caught = True
            if root == own_root:  # never attack a store the user named
                caught = _attacks(store, workdir.file("anchor.json"), options)
            return 0 if report.ok and leaked == 0 and caught else 1
    finally:
        if keep or root != own_root:
            # With --root the store outlives the demo, so its master key must too.
            _say("", f"kept: {workdir.path}")
        else:
            workdir.remove()


def _new_store(root: str, keys: _KeyFiles, environ: Mapping[str, str]) -> VerifierKey:
    """The store, its signing key and master key; returns the signer's public key."""
    signer = new_signing_key_file(keys.signing, root_path=root)
    init_store(root, seed_out=keys.seed, signing_key_file=keys.signing, environ=environ)
    generate_master_key(keys.master, root_path=root)
    _say(f"store: {root}", f"master key: {keys.master}", f"audit signing key: {keys.signing}",
         f"audit verification seed (the auditor's): {keys.seed}", "(all outside the store root)", "")
    return signer.verifier


def _converse(store: SecureStore, fake: dict[str, str]) -> None:
    """The scripted session, three audited turns, then what is stored and what resolves."""
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


def _show_disk(root: str, fake: dict[str, str]) -> int:
    """Every file and directory of the store with its mode; returns how many planted secrets
    appear in clear in any stored byte."""
    _say("", "== on disk ==")
    leaked = 0
    for entry in raw_store_files(root):
        _say(f"  {entry.mode:04o}  {entry.path}")
        if entry.data is not None:
            leaked += sum(value.encode() in entry.data for value in fake.values())
    _say("", f"secret values found in clear in any stored byte: {leaked} (of {len(fake)} planted)")
    return leaked
