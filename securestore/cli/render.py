"""Formatting of results for people and for JSON consumers (no I/O)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from datetime import datetime, UTC
from typing import Any

import orjson

from ..api import LogReport, VerifyReport


# What a terminal or log viewer acts on instead of showing, so stored text could drive it: C0
# controls (ESC, CR, LF, TAB, BEL...), DEL, C1 controls (8-bit CSI/OSC), bidi embeddings,
# overrides and isolates ("Trojan Source"), and the Unicode line/paragraph separators.
_ACTIVE_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
# Lone surrogates too: an undecodable file name byte, written back raw (0x9b is an 8-bit CSI).
_UNSAFE_TEXT = re.compile(f"[\x00-\x1f{_ACTIVE_BEYOND_C0}\ud800-\udfff]")
# JSON encoders escape C0 themselves; everything matched here lies inside a JSON string (JSON
# text is ASCII outside strings), where a \uXXXX escape parses back to the same character.
_UNSAFE_JSON = re.compile(f"[{_ACTIVE_BEYOND_C0}]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """`text` with every character a terminal could act on shown as an escape (`\\x1b`,
    `\\u202e`), so it stays on one line and cannot drive the terminal. Backslashes are kept:
    escaping twice changes nothing, so text may pass through here at more than one layer."""
    return _UNSAFE_TEXT.sub(_visible, text)


def safe_lines(lines: Iterable[str]) -> str:
    """Lines for a person: each escaped whole, then joined; only the joins are newlines."""
    return "\n".join(terminal_safe(line) for line in lines)


def json_safe(text: str) -> str:
    """JSON text with DEL, C1, bidi controls and U+2028/9 written as \\uXXXX escapes."""
    if text.isascii() and "\x7f" not in text:
        return text  # the common case, without a regex pass over a large value
    return _UNSAFE_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def json_default(obj: Any) -> Any:
    """Resolved SecretBytes values are bytes: shown as base64."""
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    raise TypeError


def dump_json(value: Any, *, indent: bool = True) -> str:
    """Exact JSON (it parses back to `value`) that carries no character a terminal acts on."""
    option = orjson.OPT_SORT_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    try:
        text = orjson.dumps(value, default=json_default, option=option).decode()
    except orjson.JSONEncodeError:
        # orjson refuses lone surrogates (an undecodable file name in a report): the standard
        # encoder writes them as \\udcXX escapes, which parse back to the same string.
        text = json.dumps(value, default=json_default, sort_keys=True, ensure_ascii=True,
                          indent=2 if indent else None, separators=(",", ": ") if indent else (",", ":"))
    return json_safe(text)


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
             "keyring": "signatures checked with the public key kept in the store's key directory",
             "signing-key": "signer is the configured signing key", "anchor": "signer taken from the anchor",
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
    lines.extend(f"warning: {finding}" for finding in report.index)  # derived data: rebuild, not tampering
    lines.extend(f"deleted: {deletion}" for deletion in report.deletions)
    lines.extend(f"incomplete: {f.describe()}" for f in report.incomplete)
    code = report.exit_code
    if code == 0:
        unkeyed = not all(log.mac_checked for log in report.logs)
        lines.append("result: OK, the trail is intact and the data matches it"
                     + (" (MACs not checked: an auditor runs this with --seed)" if unkeyed else ""))
    elif code == 6:
        lines.append(f"result: INCOMPLETE ({len(report.incomplete)} finding(s)); nothing was found tampered")
    else:
        what = "TAMPERED" if code == 1 else "TRUNCATED OR ROLLED BACK"
        lines.append(f"result: {what} ({len(report.failures)} finding(s)); first: {report.failures[0].describe()}")
    # Names, paths and details come from files an attacker may have planted: escape every line,
    # so none can add a line, rewrite the result line or drive the terminal.
    return safe_lines(lines)
