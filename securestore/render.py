"""Formatting of results for people and for JSON consumers (no I/O)."""

from __future__ import annotations

import base64
from datetime import datetime, UTC
from typing import Any

import orjson

from .verification import VerifyReport


def json_default(obj: Any) -> Any:
    """Resolved SecretBytes values are bytes: shown as base64."""
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    raise TypeError


def dump_json(value: Any, *, indent: bool = True) -> str:
    option = orjson.OPT_SORT_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(value, default=json_default, option=option).decode()


def iso_time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_verify(report: VerifyReport) -> str:
    lines = []
    for log in report.logs:
        span = f"seq 0..{log.last_seq}" if log.records else "no records"
        state = "ok" if log.ok else "FAILED"
        lines.append(f"{log.label}: {log.records} records, {span}, {iso_time(log.first_ts)} .. {iso_time(log.last_ts)}: {state}")
    lines.append(f"data: {report.files_checked} files checked against the trail")
    lines.extend(f"warning: {w}" for w in report.warnings)
    if report.ok:
        lines.append("result: OK, the trail is intact and the data matches it")
    else:
        lines.append(f"result: FAILED ({len(report.failures)} finding(s)); first: {report.failures[0].describe()}")
    return "\n".join(lines)
