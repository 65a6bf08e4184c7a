"""LangGraph on securestore: a two-node chat graph (model, then a tool) checkpointed by
SecureStoreSaver, two turns on one thread (the second carries a token, which is stored as a
reference), the state history, a retention pass, then the audit verification.

    python examples/langgraph_example.py [STORE_DIR]

Without STORE_DIR it uses a new store in a temporary directory (removed at the end). With one, a
new store is made there if the directory is absent or empty, its keys in STORE_DIR-keys/ (outside
the root), and reused on the next run. The model is a scripted fake (no network) unless
OPENAI_API_KEY is set and langchain-openai is installed. Exits 1 when the verification fails.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

import securestore
from securestore.api import VerifyOptions, new_signing_key_file, read_seed
from securestore.integrations.langgraph import Retention, SecureStoreSaver

THREAD = "ticket-4711"


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def chat_model() -> BaseChatModel:
    if os.environ.get("OPENAI_API_KEY") and importlib.util.find_spec("langchain_openai"):
        from langchain_openai import ChatOpenAI
        model: BaseChatModel = ChatOpenAI(model="gpt-4o-mini")
        return model
    return GenericFakeChatModel(messages=itertools.cycle([AIMessage(content="Checking the deploy log."),
                                                          AIMessage(content="Found it: the token expired.")]))


def build(saver: SecureStoreSaver) -> Any:
    model = chat_model()

    def bot(state: State) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def tool(state: State) -> dict[str, Any]:
        return {"messages": [ToolMessage(content=f"log has {len(state['messages'])} lines", tool_call_id="log")]}

    builder = StateGraph(State)
    builder.add_node("bot", bot)
    builder.add_node("tool", tool)
    builder.add_edge(START, "bot")
    builder.add_edge("bot", "tool")
    builder.add_edge("tool", END)
    return builder.compile(checkpointer=saver)


def make_store(root: Path, keys: Path) -> None:
    keys.mkdir(mode=0o700, exist_ok=True)
    new_signing_key_file(str(keys / "signing.key"), root_path=str(root))
    securestore.init_store(str(root), seed_out=str(keys / "audit.seed"), signing_key_file=str(keys / "signing.key"))
    securestore.generate_master_key(str(keys / "master.key"), root_path=str(root))


def converse(store: securestore.SecureStore) -> None:
    saver = SecureStoreSaver(store, retention=Retention(keep_last=6))
    graph = build(saver)
    config = {"configurable": {"thread_id": THREAD}}
    for text in ("The deploy fails since 9:00.", "My token is ghp_" + "R2d2" * 9 + ", use it."):
        graph.invoke({"messages": [HumanMessage(content=text)]}, config)
    print(f"== state history of {THREAD}, newest first (secrets as references) ==")
    for snapshot in graph.get_state_history(config):
        last = snapshot.values["messages"][-1] if snapshot.values.get("messages") else None
        shown = f"{type(last).__name__}: {last.content!r}" if last else "-"
        print(f"  step {snapshot.metadata['step']:>2} {snapshot.metadata['source']:<6} "
              f"{len(snapshot.values.get('messages', []))} messages, last {shown}")
    removed = saver.apply_retention(THREAD)
    print(f"== retention (keep_last=6): {removed} older checkpoints removed, "
          f"{len(list(saver.list(config)))} kept ==")
    print(f"== threads: {saver.thread_ids()}")


def main(argv: list[str]) -> int:
    scratch = None if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="langgraph-example-"))
    root = scratch / "store" if scratch else Path(argv[1]).resolve()
    keys = scratch / "keys" if scratch else root.with_name(root.name + "-keys")
    try:
        if not root.exists() or not any(root.iterdir()):
            make_store(root, keys)
        print(f"store: {root}\nkeys: {keys}")
        with securestore.open_store(str(root), master_key_file=str(keys / "master.key"),
                                    signing_key_file=str(keys / "signing.key")) as store:
            converse(store)
            seed = read_seed(str(keys / "audit.seed"), root_path=str(root))[1]
            report = securestore.verify_store(store, options=VerifyOptions(seed=seed))
        print("audit verify: ok" if report.ok else f"audit verify: FAILED {report.failures}")
        return 0 if report.ok else 1
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
