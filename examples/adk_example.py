"""Google ADK on securestore: a Runner with a tool that writes app:, user:, session and temp:
state, two turns, the stored events and merged state, then the audit verification.

    python examples/adk_example.py [STORE_DIR]

Without STORE_DIR it uses a new store in a temporary directory (removed at the end). With one, a
new store is made there if the directory is absent or empty, its keys in STORE_DIR-keys/ (outside
the root), and reused on the next run. The model is a scripted fake (no network) unless
GOOGLE_API_KEY is set, then Gemini. Exits 1 when the verification fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.tools.tool_context import ToolContext
from google.genai import types

import securestore
from securestore.api import VerifyOptions, new_signing_key_file, read_seed
from securestore.integrations.adk import SecureStoreSessionService

APP, USER, SESSION = "support-desk", "alice", "ticket-4711"


class ScriptedLlm(BaseLlm):
    """Calls `remember` with the user's words, then says it is done."""

    model: str = "scripted"

    async def generate_content_async(self, llm_request: LlmRequest,
                                     stream: bool = False) -> AsyncGenerator[LlmResponse, None]:
        last = llm_request.contents[-1]
        if last.parts and last.parts[0].function_response is None:
            call = types.FunctionCall(name="remember", args={"fact": last.parts[0].text or ""})
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(function_call=call)]))
        else:
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text="Noted.")]))


def remember(fact: str, tool_context: ToolContext) -> dict[str, Any]:
    """Remember a fact about the user's problem."""
    state = tool_context.state
    state["last_fact"] = fact  # this session only
    state["user:facts_seen"] = int(state.get("user:facts_seen", 0)) + 1  # every session of this user
    state["app:tool_version"] = "1.0"  # every session of the app
    state["temp:scratch"] = "never stored"  # this invocation only
    return {"ok": True}


def make_store(root: Path, keys: Path) -> None:
    keys.mkdir(mode=0o700, exist_ok=True)
    new_signing_key_file(str(keys / "signing.key"), root_path=str(root))
    securestore.init_store(str(root), seed_out=str(keys / "audit.seed"), signing_key_file=str(keys / "signing.key"))
    securestore.generate_master_key(str(keys / "master.key"), root_path=str(root))


def show(event: Any) -> str:
    parts = []
    for part in (event.content.parts if event.content else None) or []:
        if part.text:
            parts.append(repr(part.text))
        elif part.function_call:
            parts.append(f"call {part.function_call.name}({part.function_call.args})")
        elif part.function_response:
            parts.append(f"result of {part.function_response.name}: {part.function_response.response}")
    return f"  {event.author:>6}: {' '.join(parts)}"


async def converse(store: securestore.SecureStore) -> None:
    service = SecureStoreSessionService(store)
    model: BaseLlm | str = "gemini-2.0-flash" if os.environ.get("GOOGLE_API_KEY") else ScriptedLlm()
    agent = LlmAgent(name="desk", model=model, instruction="Help; call remember for every fact.", tools=[remember])
    runner = Runner(app_name=APP, agent=agent, session_service=service)
    if await service.get_session(app_name=APP, user_id=USER, session_id=SESSION) is None:
        await service.create_session(app_name=APP, user_id=USER, session_id=SESSION, state={"user:tier": "gold"})
    for text in ("The deploy fails since 9:00.", "My token is ghp_" + "R2d2" * 9 + ", use it."):
        message = types.Content(role="user", parts=[types.Part(text=text)])
        async for _ in runner.run_async(user_id=USER, session_id=SESSION, new_message=message):
            pass
    session = await service.get_session(app_name=APP, user_id=USER, session_id=SESSION)
    assert session is not None
    print(f"== stored events of {SESSION} (secrets as references) ==")
    for event in session.events:
        print(show(event))
    print("== merged state (app:, user:, session; temp: never stored) ==")
    for key, value in sorted(session.state.items()):
        print(f"  {key} = {value!r}")
    listed = await service.list_sessions(app_name=APP, user_id=USER)
    print(f"== list_sessions: {[s.id for s in listed.sessions]}")


def main(argv: list[str]) -> int:
    scratch = None if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="adk-example-"))
    root = scratch / "store" if scratch else Path(argv[1]).resolve()
    keys = scratch / "keys" if scratch else root.with_name(root.name + "-keys")
    try:
        if not root.exists() or not any(root.iterdir()):
            make_store(root, keys)
        print(f"store: {root}\nkeys: {keys}")
        with securestore.open_store(str(root), master_key_file=str(keys / "master.key"),
                                    signing_key_file=str(keys / "signing.key")) as store:
            asyncio.run(converse(store))
            seed = read_seed(str(keys / "audit.seed"), root_path=str(root))[1]
            report = securestore.verify_store(store, options=VerifyOptions(seed=seed))
        print("verify: ok" if report.ok else f"verify: FAILED {report.failures}")
        return 0 if report.ok else 1
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
