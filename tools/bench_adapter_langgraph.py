"""LangGraph checkpointers side by side: securestore's SecureStoreSaver vs LangGraph's SqliteSaver
(a file, the framework's SQLite default), in one run, on the same disk, with the same fake model.

    python tools/bench_adapter_langgraph.py [-n N]

For each saver, on one thread:
- invoke: median ms of a graph turn (START -> bot (fake model) -> tool -> END: 4 checkpoints and 3
  write batches), N turns;
- put: median ms of N single `put` calls of a checkpoint holding 20 chat messages;
- get_tuple: median ms of N reads of the latest checkpoint of the thread those puts built;
- list10: median ms of N `list(config, limit=10)` calls on that thread.
securestore runs twice: the default saver (each write opens the thread's session, so takes its
lock, and closes it) and `hold_sessions=True` (the session stays open between writes).
Figures are printed (with the securestore/sqlite ratio), never asserted. `run(n, workdir)` returns
them as `{"<saver>.<measure>_ms": value}`.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import securestore  # noqa: E402
from securestore.api import new_signing_key_file  # noqa: E402
from securestore.integrations.langgraph import SecureStoreSaver  # noqa: E402

MEASURES = ("invoke", "put", "get_tuple", "list10")


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def build(saver: BaseCheckpointSaver[Any]) -> Any:
    model = GenericFakeChatModel(messages=itertools.cycle([AIMessage(content="let me look at that " * 5)]))

    def bot(state: State) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def tool(state: State) -> dict[str, Any]:
        return {"messages": [ToolMessage(content="ok " * 20, tool_call_id="t")]}

    builder = StateGraph(State)
    builder.add_node("bot", bot)
    builder.add_node("tool", tool)
    builder.add_edge(START, "bot")
    builder.add_edge("bot", "tool")
    builder.add_edge("tool", END)
    return builder.compile(checkpointer=saver)


def median_ms(runs: int, call: Callable[[int], object]) -> float:
    times = []
    for index in range(runs):
        start = time.perf_counter()
        call(index)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(saver: BaseCheckpointSaver[Any], n: int) -> dict[str, float]:
    graph = build(saver)
    turn = {"configurable": {"thread_id": "graph"}}
    out = {"invoke": median_ms(n, lambda i: graph.invoke({"messages": [HumanMessage(content=f"question {i} " * 10)]},
                                                         turn))}
    messages = [HumanMessage(content=f"message {i} " * 20, id=str(i)) for i in range(20)]
    parent: dict[str, Any] = {"configurable": {"thread_id": "puts", "checkpoint_ns": ""}}

    def put(index: int) -> None:
        nonlocal parent
        checkpoint = empty_checkpoint()
        checkpoint["id"] = str(uuid6(clock_seq=index))
        checkpoint["channel_values"] = {"messages": messages}
        checkpoint["channel_versions"] = {"messages": index + 1}
        parent = saver.put(parent, checkpoint, {"source": "loop", "step": index, "parents": {}},
                           {"messages": index + 1})

    out["put"] = median_ms(n, put)
    latest = {"configurable": {"thread_id": "puts", "checkpoint_ns": ""}}
    out["get_tuple"] = median_ms(n, lambda i: saver.get_tuple(latest))
    out["list10"] = median_ms(n, lambda i: list(saver.list(latest, limit=10)))
    return out


def run(n: int, workdir: str) -> dict[str, float]:
    base = Path(workdir)
    root, keys = base / "store", base / "keys"
    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    new_signing_key_file(str(keys / "signing.key"), root_path=str(root))
    securestore.init_store(str(root), seed_out=str(keys / "audit.seed"), signing_key_file=str(keys / "signing.key"))
    securestore.generate_master_key(str(keys / "master.key"), root_path=str(root))
    results: dict[str, float] = {}
    with securestore.open_store(str(root), master_key_file=str(keys / "master.key"),
                                signing_key_file=str(keys / "signing.key")) as store:
        results.update({f"securestore.{k}_ms": v for k, v in measure(SecureStoreSaver(store), n).items()})
        with SecureStoreSaver(store, hold_sessions=True, key_prefix="held:", workspace="held") as held:
            results.update({f"securestore-held.{k}_ms": v for k, v in measure(held, n).items()})
    connection = sqlite3.connect(str(base / "checkpoints.db"), check_same_thread=False)
    try:
        results.update({f"sqlite.{k}_ms": v for k, v in measure(SqliteSaver(connection), n).items()})
    finally:
        connection.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=50, help="runs per measure (default 50)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-langgraph-")
    try:
        results = run(args.n, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"median ms over {args.n} runs, one thread per measure")
    print(f"{'measure':<12}{'securestore':>13}{'ratio':>8}{'held':>10}{'ratio':>8}{'sqlite':>10}")
    for name in MEASURES:
        ours, held, theirs = (results[f"{saver}.{name}_ms"] for saver in ("securestore", "securestore-held", "sqlite"))
        print(f"{name:<12}{ours:>13.2f}{ours / theirs:>7.1f}x{held:>10.2f}{held / theirs:>7.1f}x{theirs:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
