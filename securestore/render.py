"""Formatting of results for people and for JSON consumers (no I/O)."""

from __future__ import annotations

import base64
from datetime import datetime, UTC
from typing import Any

import orjson

from .audit.verify import LogReport
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


def _seal_line(log: LogReport) -> str:
    if not log.checkpoints:
        return "no signed checkpoint matched"
    return (f"sealed to checkpoint {log.checkpoints} (seq {log.sealed_size - 1}); final {log.unsealed} records "
            "not sealed")


def format_verify(report: VerifyReport) -> str:
    lines = []
    trust = {"seed": "signer authenticated by the seed", "public-key": "signer given by --public-key",
             "unverified": "signer NOT independently verified (pass --seed or --public-key)", "none": "no signer"}
    for log in report.logs:
        span = f"seq 0..{log.last_seq}" if log.records else "no records"
        state = "ok" if log.ok else "FAILED"
        lines.append(f"{log.label}: {log.records} records, {span}, {iso_time(log.first_ts)} .. "
                     f"{iso_time(log.last_ts)}: {state}")
        macs = "MACs checked with the seed" if log.mac_checked else "MACs NOT checked (pass --seed)"
        lines.append(f"  {log.epochs} epochs; {macs}; {trust[log.signer_trust]}; {_seal_line(log)}"
                     + (f"; anchor: {log.anchor}" if log.anchor else ""))
    lines.append(f"data: {report.files_checked} files checked against the trail")
    if report.anchors:
        lines.append("anchors consulted: " + "; ".join(report.anchors))
    lines.extend(f"warning: {w}" for w in report.warnings)
    lines.extend(f"incomplete: {f.describe()}" for f in report.incomplete)
    code = report.exit_code
    if code == 0:
        lines.append("result: OK, the trail is intact and the data matches it")
    elif code == 6:
        lines.append(f"result: INCOMPLETE ({len(report.incomplete)} finding(s)); nothing was found tampered")
    else:
        what = "TAMPERED" if code == 1 else "TRUNCATED OR ROLLED BACK"
        lines.append(f"result: {what} ({len(report.failures)} finding(s)); first: {report.failures[0].describe()}")
    return "\n".join(lines)
