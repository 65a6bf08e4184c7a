"""Cancelling an async write while it sits inside its fsync, for the tests of what a cancelled
caller is told (securestore.aio and the adapters built on it)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable
from typing import Any

import pytest

from securestore.aio import AsyncSecureStore, InterruptedWrite
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS


async def cancel_inside_fsync(store: AsyncSecureStore, write: Awaitable[Any], *, fails: bool = False,
                              suffix: str = ".log") -> tuple[InterruptedWrite, str]:
    """Start `write`, hold its first fsync of a `*suffix` file, cancel the caller there, let
    the write go on, and return what the store recorded and the CancelledError's notes. With
    `fails`, the write fails on its own (nothing to hold): the caller is cancelled meanwhile."""
    entered, release = threading.Event(), threading.Event()

    def hold(name: str, args: tuple[Any, ...]) -> None:
        if name == "fsync" and not entered.is_set() and os.readlink(f"/proc/self/fd/{args[0]}").endswith(suffix):
            entered.set()
            release.wait(30)

    store.sync.ctx.os = instrumented(REAL_OS, hold)
    try:
        task = asyncio.ensure_future(write)
        if fails:
            await asyncio.sleep(0)  # the task starts the write, which fails on its own
        else:
            await asyncio.to_thread(entered.wait, 30)  # the write is inside its fsync
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError) as raised:
            await task
    finally:
        release.set()
        store.sync.ctx.os = REAL_OS
    return store.interrupted[-1], " ".join(getattr(raised.value, "__notes__", []))
