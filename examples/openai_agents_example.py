"""An OpenAI Agents SDK agent whose session lives in securestore.

    python examples/openai_agents_example.py [STORE_DIR]

Without STORE_DIR the store is made in a temporary directory and removed at the end. With
STORE_DIR it is made there on the first run (its keys go to STORE_DIR.keys/, outside the root)
and reused on later runs, so the conversation continues across runs. The model is a scripted
fake unless OPENAI_API_KEY is set, then a real OpenAI model. The tool's output holds a (made-up)
database password: the store keeps a reference instead, and the model sees that reference on
the next turn. The example ends with `securestore audit verify` and exits non-zero if it fails.
Needs `pip install 'securestore[openai-agents]'`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.models.interface import Model
from agents.testing import ScriptedModel, assistant_message, function_call

from securestore import SecureStore, generate_master_key, init_store
from securestore.api import new_signing_key_file
from securestore.integrations.openai_agents import SecureStoreSession

SESSION_ID = "support-bot/ticket-4711"
DB_PASSWORD = "Tr0ub4dor-" + secrets.token_hex(4)  # made up on every run


@function_tool
def lookup_ticket(ticket: str) -> str:
    """Look up a support ticket by number."""
    return f"ticket {ticket}: staging cannot reach the database; config has db_password={DB_PASSWORD}"


def model() -> str | Model:
    if os.environ.get("OPENAI_API_KEY"):
        return "gpt-4.1-mini"
    return ScriptedModel([
        [function_call("lookup_ticket", {"ticket": "4711"}, call_id="call_lookup_4711")],
        [assistant_message("Staging cannot reach its database; I found its password in the config.")],
        [assistant_message("You asked about ticket 4711: the staging database is unreachable.")],
    ])


def key_files(workdir: Path) -> dict[str, Path]:
    return {"master": workdir / "master.key", "signing": workdir / "audit-signing.key", "seed": workdir / "audit.seed"}


def ensure_store(root: Path, keys: dict[str, Path]) -> None:
    """A new store with its own keys, unless one was made here by an earlier run."""
    if keys["master"].exists():
        return
    keys["master"].parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    new_signing_key_file(str(keys["signing"]), root_path=str(root))
    init_store(root, seed_out=str(keys["seed"]), signing_key_file=str(keys["signing"]))
    generate_master_key(str(keys["master"]), root_path=str(root))


def show(items: list[Any]) -> None:
    for item in items:
        kind = item.get("type") or item.get("role")
        if kind == "function_call":
            print(f"  [tool call]   {item['name']}({item['arguments']})")
        elif kind == "function_call_output":
            print(f"  [tool output] {item['output']}")
        else:
            content = item.get("content")
            text = content if isinstance(content, str) else " ".join(part.get("text", "") for part in content or [])
            print(f"  [{item.get('role', kind)}] {text}")


async def converse(store: SecureStore) -> bool:
    agent = Agent(name="support", instructions="Help with support tickets. Be brief.", model=model(),
                  tools=[lookup_ticket])
    async with SecureStoreSession(SESSION_ID, store) as session:  # holds the session's writer lock
        for question in ("What's wrong with ticket 4711?", "Which ticket did I ask about?"):
            result = await Runner.run(agent, question, session=session)
            print(f"> {question}\n{result.final_output}\n")
        history = await session.get_items()
    print(f"== the stored conversation ({len(history)} items; what the model is given next turn) ==")
    show(history)
    leaked = any(DB_PASSWORD in str(item) for item in history)
    print(f"\nthe password reaches the model on later turns: {leaked} (it sees a [secret:vault:...] reference)")
    return not leaked


def audit_verify(root: Path, keys: dict[str, Path]) -> int:
    """What an auditor runs: `securestore audit verify` with the seed they were given."""
    command = [sys.executable, "-m", "securestore", "--root", str(root), "--master-key-file", str(keys["master"]),
               "--signing-key-file", str(keys["signing"]), "audit", "verify", "--seed", str(keys["seed"])]
    print("\n== securestore audit verify ==")
    return subprocess.run(command, check=False).returncode  # noqa: S603 - our own interpreter and CLI


def main() -> int:
    set_tracing_disabled(True)  # traces would carry the conversation to OpenAI's trace exporter
    temporary = tempfile.mkdtemp(prefix="securestore-agents-") if len(sys.argv) < 2 else None
    root = Path(temporary, "store") if temporary else Path(sys.argv[1]).resolve()
    keys = key_files(Path(temporary) if temporary else root.with_name(root.name + ".keys"))
    try:
        ensure_store(root, keys)
        print(f"store: {root}\nkeys:  {keys['master'].parent}\n")
        with SecureStore(root, master_key_file=str(keys["master"]), signing_key_file=str(keys["signing"])) as store:
            clean = asyncio.run(converse(store))
        status = audit_verify(root, keys)
        return 0 if status == 0 and clean else 1
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
