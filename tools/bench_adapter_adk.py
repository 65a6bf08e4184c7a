"""Google ADK session services side by side: securestore's adapter vs ADK's SqliteSessionService.

    python tools/bench_adapter_adk.py [--sessions N] [--events E] [--appends A] [--turns T] [--repeat R]

One run, same disk, same fake model, for each service:
- append_event: median ms of A single appends (each durable) to one session;
- get_session(num_recent_events=20) on a session holding E events (median of R reads);
- a Runner turn with a fake model and one tool call (4 events; median of T turns);
- list_sessions over N sessions of one user (and of the whole app): the first call (cold:
  securestore's cache of checked index lines emptied first, as in a fresh process; the OS page
  cache stays warm), then the median of 5 repeated calls (warm); and securestore's
  list_sessions_page first page (50), median of R calls. The N sessions are built once per
  service (this takes a while for securestore: one audited create per session).
Figures are printed, never asserted. The store's Limits.max_sessions is raised to fit N plus the
app/user state sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.events.event import Event
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.adk.sessions.sqlite_session_service import SqliteSessionService
from google.adk.tools.tool_context import ToolContext
from google.genai import types

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import securestore  # noqa: E402
from securestore import Limits, StoreConfig  # noqa: E402
from securestore.api import new_signing_key_file  # noqa: E402
from securestore.core.listing import read_index_line  # noqa: E402
from securestore.integrations.adk import SecureStoreSessionService  # noqa: E402

APP = "bench"


class FakeLlm(BaseLlm):
    model: str = "fake"

    async def generate_content_async(self, llm_request: LlmRequest,
                                     stream: bool = False) -> AsyncGenerator[LlmResponse, None]:
        last = llm_request.contents[-1]
        if last.parts and last.parts[0].function_response is None:
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(
                function_call=types.FunctionCall(name="remember", args={"fact": last.parts[0].text or ""}))]))
        else:
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text="done")]))


def remember(fact: str, tool_context: ToolContext) -> dict[str, Any]:
    """Remember a fact."""
    tool_context.state["last_fact"] = fact
    tool_context.state["user:facts_seen"] = int(tool_context.state.get("user:facts_seen", 0)) + 1
    tool_context.state["app:version"] = "v1"
    tool_context.state["temp:scratch"] = "x"
    return {"ok": True}


def event(i: int) -> Event:
    return Event(author="user", invocation_id=f"inv-{i}", content=types.Content(
        role="user", parts=[types.Part(text=f"message {i}: the build is failing on step {i % 7}")]))


async def median_ms(run: Callable[[], Awaitable[Any]], times: int) -> float:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def measure(service: BaseSessionService, args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, float]:
    out: dict[str, float] = {}
    session = await service.create_session(app_name=APP, user_id="u0", session_id="appends")
    counter = iter(range(10**9))
    out["append_event (ms)"] = await median_ms(lambda: service.append_event(session, event(next(counter))),
                                               args.appends)
    long = await service.create_session(app_name=APP, user_id="u0", session_id="long")
    for i in range(args.events):
        await service.append_event(long, event(i))
    config = GetSessionConfig(num_recent_events=20)
    out[f"get_session(recent=20) of {args.events} events (ms)"] = await median_ms(
        lambda: service.get_session(app_name=APP, user_id="u0", session_id="long", config=config), args.repeat)
    out[f"get_session(all) of {args.events} events (ms)"] = await median_ms(
        lambda: service.get_session(app_name=APP, user_id="u0", session_id="long"), max(3, args.repeat // 4))
    runner = Runner(app_name=APP, agent=LlmAgent(name="helper", model=FakeLlm(), instruction="help",
                                                 tools=[remember]), session_service=service)
    await service.create_session(app_name=APP, user_id="u0", session_id="turns")

    async def turn() -> None:
        message = types.Content(role="user", parts=[types.Part(text="db down")])
        async for _ in runner.run_async(user_id="u0", session_id="turns", new_message=message):
            pass
    out["Runner turn, 1 tool call (ms)"] = await median_ms(turn, args.turns)
    start = time.perf_counter()
    for i in range(args.sessions):
        await service.create_session(app_name=APP, user_id="many", session_id=f"s{i:06d}")
        if (i + 1) % 1000 == 0:
            say(f"  {i + 1} sessions ({time.perf_counter() - start:.0f} s)")
    out[f"create_session, build of {args.sessions} (ms each)"] = (time.perf_counter() - start) * 1000 / args.sessions
    for scope, user, count in (("one user", "many", args.sessions), ("whole app", None, args.sessions + 3)):
        cold_cache()
        start = time.perf_counter()
        listed = await service.list_sessions(app_name=APP, user_id=user)
        out[f"list_sessions, {scope}, {count} sessions, first call (ms)"] = (time.perf_counter() - start) * 1000
        assert len(listed.sessions) == count, len(listed.sessions)
        out[f"list_sessions, {scope}, {count} sessions, repeated, median of 5 (ms)"] = await median_ms(
            lambda: service.list_sessions(app_name=APP, user_id=user), 5)
    if isinstance(service, SecureStoreSessionService):
        out["list_sessions_page(50), first page (ms)"] = await median_ms(
            lambda: service.list_sessions_page(app_name=APP, user_id="many", page_size=50), args.repeat)
    return out


def cold_cache() -> None:
    """Forget the index lines securestore has already checked (a process-wide cache), so the
    first listing costs what it does in a fresh process (the OS page cache stays warm)."""
    read_index_line.cache_clear()


def new_store(root: Path, keys: Path, sessions: int) -> securestore.SecureStore:
    keys.mkdir(mode=0o700)
    new_signing_key_file(str(keys / "signing.key"), root_path=str(root))
    securestore.init_store(str(root), seed_out=str(keys / "audit.seed"), signing_key_file=str(keys / "signing.key"))
    securestore.generate_master_key(str(keys / "master.key"), root_path=str(root))
    # N listed sessions + the 3 others measured + the app and user state sessions.
    config = StoreConfig(limits=Limits(max_sessions=sessions + 100))
    return securestore.open_store(str(root), config, master_key_file=str(keys / "master.key"),
                                  signing_key_file=str(keys / "signing.key"))


async def main(args: argparse.Namespace) -> int:
    # The fake model reports no token usage: ADK warns once per response, thousands of lines.
    logging.getLogger("google_adk").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench-adk-", dir=args.dir))

    def say(line: str) -> None:
        print(line, flush=True)
    try:
        say(f"work dir: {work}")
        say("securestore (SecureStoreSessionService) ...")
        with new_store(work / "store", work / "keys", args.sessions) as store:
            ours = await measure(SecureStoreSessionService(store), args, say)
        say("ADK SqliteSessionService ...")
        sqlite = SqliteSessionService(str(work / "adk.db"))
        theirs = await measure(sqlite, args, say)
        await sqlite.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(name) for name in ours)
    say("")
    say(f"{'workload':<{width}}  {'securestore':>12}  {'adk sqlite':>12}  {'ratio ss/sqlite':>15}")
    for name, value in ours.items():
        other = theirs.get(name)
        ratio = f"{value / other:.2f}" if other else "-"
        say(f"{name:<{width}}  {value:>12.2f}  {other if other is not None else float('nan'):>12.2f}  {ratio:>15}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--appends", type=int, default=200)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--dir", default=None, help="where to make the temporary work dir (default: $TMPDIR)")
    sys.exit(asyncio.run(main(parser.parse_args())))
