"""A child process for crash and lock tests (run as a script, not collected by pytest).

    writer_child.py ROOT MASTER_KEY MODE

MODE "hold": open session "s", print "ready <key>", then wait on stdin (holds the lock).
MODE "try": like "hold", but without waiting for the lock: if it is held, print "held <error>".
MODE "fork-release": like "hold", but first fork a child that releases the inherited lock
handle and exits (cleanup code running in a forked child), then print "ready <key>".
MODE "write": open session "w" (created if needed) and keep appending items numbered from the
current count, printing each number only after the call that made it durable returned. Every
fifth step is a turn of three items plus a slot update; every 25th a turn commit (snapshot).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repository root, for `tests`

from securestore import LockHeldError, SecureStore, StoreConfig  # noqa: E402
from tests.support.keys import KEYS  # noqa: E402


def main() -> None:
    root, key, mode = sys.argv[1:4]
    config = StoreConfig(lock_timeout_seconds=0) if mode == "try" else StoreConfig()
    store = SecureStore(root, config, master_key=key, environ=KEYS)
    if mode in ("hold", "try", "fork-release"):
        try:
            session = store.open_session("s", create=True)
        except LockHeldError as error:
            print(f"held {error}", flush=True)
            return
        if mode == "fork-release":
            child = os.fork()
            if child == 0:
                session._open.lock.release()  # what an inherited context manager would do on exit
                os._exit(0)
            os.waitpid(child, 0)
        print(f"ready {session.key}", flush=True)
        sys.stdin.read()
        session.close()
        return
    with store.open_session("w", create=True) as session:
        print("open", flush=True)
        step = 0
        while step < 100_000:
            base = len(session)
            if step % 5 == 4:
                with session.turn():
                    session.append_items([{"i": base}, {"i": base + 1}, {"i": base + 2}])
                    session.slot("progress").put({"last": base + 2})
                print(base + 2, flush=True)
            else:
                session.append_items([{"i": base}])
                print(base, flush=True)
            if step % 25 == 24:
                session.commit_turn()
            step += 1


if __name__ == "__main__":
    main()
