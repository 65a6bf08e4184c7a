"""SecureStoreSaver against LangGraph's own conformance suite (langgraph-checkpoint-conformance):
every base capability and the three extended ones (prune, copy_thread, delete_for_runs), on a
directory store and on a PostgreSQL store."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.initializer import RegisteredCheckpointer
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from securestore import aio
from securestore.integrations.langgraph import SecureStoreSaver
from tests.support.keys import KEYS, MASTER_KEY

pytestmark = pytest.mark.both_backends  # the suite runs on a directory store and on PostgreSQL

EXTENDED = {"prune", "copy_thread", "delete_for_runs"}
BASE = {"put", "put_writes", "get_tuple", "list", "delete_thread"}


def saver_factory(make_root: Callable[..., Path | str]) -> RegisteredCheckpointer:
    """The suite's factory: a fresh store for each capability suite, on the test's backend (a
    directory, or a new PostgreSQL database), verified after the suite used it."""
    made = itertools.count()

    @checkpointer_test(name="SecureStoreSaver")
    async def securestore_saver() -> AsyncIterator[SecureStoreSaver]:
        root = make_root(f"conformance-{next(made)}")
        async with await aio.open_store(root, master_key=MASTER_KEY, environ=KEYS) as store:
            yield SecureStoreSaver(store)
            report = await store.verify()  # everything the suite did is in the audit trail
            assert report.ok, report.failures

    return securestore_saver


@pytest.mark.asyncio
async def test_the_saver_passes_the_whole_conformance_suite(backend: str,
                                                            make_root: Callable[..., Path | str]) -> None:
    report = await validate(saver_factory(make_root), progress=ProgressCallbacks.default())
    report.print_report()
    assert report.passed_all_base()
    assert report.passed_all()
    results = report.to_dict()
    assert results["conformance_level"] == "FULL"
    assert set(results["results"]) == BASE | EXTENDED
    for name in BASE | EXTENDED:
        outcome = results["results"][name]
        assert outcome["detected"] and outcome["passed"], (name, outcome)
        assert outcome["tests_failed"] == 0 and outcome["tests_skipped"] == 0 and outcome["tests_passed"] > 0
