"""SecureStoreSession against the SDK's SQLiteSession on a file, side by side in one run.

    python3 tools/bench_adapter_openai_agents.py [--turns 200] [--dir PATH]

For each backend, medians over --turns samples:
1. one `add_items` of one message (the runner's per-step write; securestore: one durable,
   audited journal record; SQLiteSession: one transaction, WAL, synchronous=FULL);
2. one `get_items(limit=50)` on a session of --turns items;
3. one whole `Runner.run` turn with a scripted model and one tool call (one read, three writes),
   history bounded by `SessionSettings(limit=50)` (the SDK's own per-turn cost grows with the
   history it is given: it deep-copies it, and so does the scripted model).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agents import Agent, Runner, SQLiteSession, function_tool, set_tracing_disabled  # noqa: E402
from agents.memory import Session, SessionSettings  # noqa: E402
from agents.testing import ScriptedModel, assistant_message, function_call  # noqa: E402

from _store import new_store  # noqa: E402
from securestore.integrations.openai_agents import SecureStoreSession  # noqa: E402


@function_tool
def lookup(ticket: str) -> str:
    """Look up a ticket."""
    return f"ticket {ticket}: the staging database is unreachable"


def message(i: int) -> Any:
    return {"role": "user", "content": f"message {i}: " + "lorem ipsum dolor sit amet " * 8}


async def median_ms(n: int, step: Callable[[int], Awaitable[object]]) -> float:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await step(i)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def measure(make: Callable[[str, SessionSettings | None], Session], n_turns: int) -> dict[str, float]:
    writes = make("writes", None)
    add = await median_ms(n_turns, lambda i: writes.add_items([message(i)]))
    read = await median_ms(n_turns, lambda i: writes.get_items(limit=50))

    async def turn(i: int) -> None:
        model = ScriptedModel([[function_call("lookup", {"ticket": str(i)}, call_id=f"call_{i}")],
                               [assistant_message(f"answer {i}")]])
        agent = Agent(name="support", instructions="help", model=model, tools=[lookup])
        await Runner.run(agent, f"question {i}", session=runs)

    runs = make("runs", SessionSettings(limit=50))
    whole = await median_ms(n_turns, turn)
    return {"add_items_ms": add, "get_items_50_ms": read, "runner_turn_ms": whole}


def run(n_turns: int, workdir: str) -> dict[str, float]:
    """Medians in ms, keys `<backend>.<measure>` for backend `securestore` and `sqlite`."""
    set_tracing_disabled(True)
    base = Path(workdir)
    bench = new_store(str(base / "securestore"))
    results: dict[str, float] = {}
    with bench.open() as store:
        opened: list[SecureStoreSession] = []

        def ours(session_id: str, settings: SessionSettings | None) -> Session:
            opened.append(SecureStoreSession(session_id, store, session_settings=settings))
            return opened[-1]

        async def ours_main() -> dict[str, float]:
            try:
                return await measure(ours, n_turns)
            finally:
                for session in opened:
                    await session.close()

        for name, value in asyncio.run(ours_main()).items():
            results[f"securestore.{name}"] = value
    (base / "sqlite").mkdir(parents=True, exist_ok=True)
    sqlite: list[SQLiteSession] = []

    def theirs(session_id: str, settings: SessionSettings | None) -> Session:
        sqlite.append(SQLiteSession(session_id, str(base / "sqlite" / "sessions.db"), session_settings=settings))
        return sqlite[-1]

    for name, value in asyncio.run(measure(theirs, n_turns)).items():
        results[f"sqlite.{name}"] = value
    for session in sqlite:
        session.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    workdir = args.dir or tempfile.mkdtemp(prefix="ss-bench-agents-")
    results = run(args.turns, workdir)
    print(f"median ms over {args.turns} samples each (workdir {workdir})")
    print(f"{'':28} {'securestore':>12} {'SQLiteSession':>14} {'ratio':>7}")
    for label, key in (("add_items (1 message)", "add_items_ms"), ("get_items(limit=50)", "get_items_50_ms"),
                       ("Runner.run turn (1 tool)", "runner_turn_ms")):
        ours, theirs = results[f"securestore.{key}"], results[f"sqlite.{key}"]
        print(f"{label:28} {ours:12.2f} {theirs:14.2f} {ours / theirs:6.1f}x")
    if args.dir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
