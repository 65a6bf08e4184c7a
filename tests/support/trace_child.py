"""The child process the syscall-level crash checker traces (run as a script, not collected by pytest).

    trace_child.py ROOT OPERATION

Opens the store at ROOT as a writer would and performs one operation of
syscall_trace.OPERATIONS, then closes the store. Exit status 0 once everything returned.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repository root, for `tests`

from securestore import SecureStore  # noqa: E402
from tests.support.keys import KEYS, MASTER_KEY  # noqa: E402
from tests.support.syscall_trace import OPERATIONS  # noqa: E402


def main() -> None:
    root, op_name = sys.argv[1:3]
    operation, _ = OPERATIONS[op_name]
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        operation(store)


if __name__ == "__main__":
    main()
