"""What the machine and each system really do: CPU count, Python, the filesystem of the bench
directory, the measured fsync latency, and fsyncs per operation counted by strace.

fsyncs are counted on a small child run of each system (`strace -f -e trace=fsync,fdatasync`, so
threads such as the SDK's `asyncio.to_thread` workers count too). The child builds the system,
then brackets each write workload between two marker calls, fsync() on a descriptor that cannot
exist (it fails with EBADF and writes nothing), so setup and teardown fsyncs are not counted."""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess  # nosec B404 - runs strace on our own child, fixed argv, no shell
import sys
import tempfile
import time
from pathlib import Path

from .systems import WRITE_WORKLOADS, System

MARKER_BASE = 900_000  # descriptor numbers no process here ever has open
STRACE_OPS = 10
STRACE_SESSIONS = 20
_CALL = re.compile(r"\b(fsync|fdatasync)\((\d+)")


def filesystem_type(path: Path) -> str:
    target = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) >= 3 and (target == parts[1] or target.startswith(parts[1].rstrip("/") + "/")) \
                        and len(parts[1]) >= len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return f"{kind} (mounted at {best or '?'})"


def fsync_latency_us(directory: Path, count: int = 200) -> list[float]:
    """Microseconds for each of `count` write(500 bytes) + fsync on one file."""
    path = directory / "fsync-probe.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    samples = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            os.write(fd, b"x" * 500)
            os.fsync(fd)
            samples.append((time.perf_counter() - t0) * 1e6)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return samples


def machine_header(directory: Path) -> dict[str, object]:
    fsync = fsync_latency_us(directory)
    return {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "bench_dir": str(directory), "filesystem": filesystem_type(directory),
        "fsync_median_us": statistics.median(fsync), "fsync_p90_us": sorted(fsync)[int(0.9 * len(fsync))],
        "fsync_samples": len(fsync), "load_average_1m_at_start": os.getloadavg()[0],
    }


def _marker(n: int) -> None:
    try:
        os.fsync(MARKER_BASE + n)
    except OSError:
        pass


def strace_child(system: System, directory: Path) -> None:
    """The child side: build small, then each write workload between its two markers."""
    system.build(directory, STRACE_SESSIONS)
    try:
        for n, workload in enumerate(WRITE_WORKLOADS):
            prepared = system.prepare(workload, 1)
            if prepared is None:
                continue
            _marker(2 * n)
            prepared.timed(STRACE_OPS)
            _marker(2 * n + 1)
            prepared.cleanup()
    finally:
        system.close()


def parse_strace(text: str) -> dict[str, float]:
    """fsync+fdatasync calls between each workload's markers, per operation."""
    counts: dict[str, float] = {}
    current: str | None = None
    seen = 0
    for line in text.splitlines():
        if "resumed>" in line:
            continue
        match = _CALL.search(line)
        if match is None:
            continue
        fd = int(match.group(2))
        if fd >= MARKER_BASE:
            index, end = divmod(fd - MARKER_BASE, 2)
            if end:
                if current is not None:
                    counts[current] = seen / STRACE_OPS
                current = None
            else:
                current, seen = WRITE_WORKLOADS[index], 0
        elif current is not None:
            seen += 1
    return counts


def count_fsyncs(system_name: str, script: Path, scratch: Path) -> dict[str, float] | str:
    """Run the child under strace; per-workload fsyncs per op, or why they were not measured."""
    strace = shutil.which("strace")
    if strace is None:
        return "not measured (strace missing: apt-get install strace)"
    with tempfile.TemporaryDirectory(prefix="strace-", dir=scratch) as tmp:
        out = Path(tmp) / "trace.txt"
        work = Path(tmp) / "work"
        work.mkdir()
        argv = [strace, "-f", "-qq", "-o", str(out), "-e", "trace=fsync,fdatasync",
                sys.executable, str(script), "--strace-child", system_name, "--dir", str(work)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)  # nosec B603
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            return f"not measured (child failed: {tail[:120]})"
        return parse_strace(out.read_text(encoding="utf-8", errors="replace"))
