"""Value policy (pure): types, depth, sizes, integer range, and prototype keys at any depth."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import ForbiddenKeyError, InvalidValueError, LimitExceededError
from .keys import is_forbidden_key

if TYPE_CHECKING:
    from ...config import Limits

_PLAIN_SEGMENT = re.compile(r"\A[A-Za-z_][A-Za-z0-9_\-]{0,39}\Z")


def render_path(path: tuple[object, ...], *, hide: Callable[[str], bool] = lambda _: False) -> str:
    """`$.a[2]["b c"]`. Keys that `hide` flags (e.g. look like credentials) print as `[?]`."""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif hide(part if isinstance(part, str) else ""):
            out.append("[?]")
        elif isinstance(part, str) and (_PLAIN_SEGMENT.match(part) or is_forbidden_key(part)):
            out.append(f".{part}")
        else:
            text = str(part)
            shown = text if len(text) <= 40 else text[:37] + "..."
            out.append("[" + json.dumps(shown) + "]")
    return "".join(out)


def check_value(
    value: Any,
    limits: Limits,
    *,
    leaf_types: tuple[type, ...] = (),
    hide: Callable[[str], bool] = lambda _: False,
) -> int:
    """Validate a JSON-like value against the caps; return the number of nodes.

    `leaf_types` are opaque leaves allowed in place of a string (the secret types). Raises a
    PolicyError naming the path and the rule; never the offending value.
    """
    max_int = 1 << limits.max_int_bits
    nodes = 0
    budget = limits.max_value_bytes  # rough size: rejects huge input before any costly work

    def fail(cls: type[InvalidValueError] | type[LimitExceededError], path: tuple[object, ...], why: str) -> None:
        raise cls(f"value rejected at {render_path(path, hide=hide)}: {why}")

    def walk(node: Any, path: tuple[object, ...], depth: int) -> None:
        nonlocal nodes, budget
        nodes += 1
        if nodes > limits.max_nodes:
            fail(LimitExceededError, path, f"more than {limits.max_nodes} nodes")
        if isinstance(node, dict):
            if depth >= limits.max_depth:
                fail(LimitExceededError, path, f"nested deeper than {limits.max_depth}")
            for key, child in node.items():
                if not isinstance(key, str):
                    fail(InvalidValueError, path, "object keys must be strings")
                if is_forbidden_key(key):
                    raise ForbiddenKeyError(
                        f"value rejected at {render_path(path + (key,), hide=hide)}: "
                        "prototype/dunder key is not allowed"
                    )
                key_size = len(key) if key.isascii() else _utf8_len(key, path + (key,), fail)
                budget -= key_size + 4
                if key_size > limits.max_key_bytes:
                    fail(LimitExceededError, path, f"an object key longer than {limits.max_key_bytes} bytes")
                walk(child, path + (key,), depth + 1)
        elif isinstance(node, (list, tuple)):
            if depth >= limits.max_depth:
                fail(LimitExceededError, path, f"nested deeper than {limits.max_depth}")
            for index, child in enumerate(node):
                budget -= 1
                walk(child, path + (index,), depth + 1)
        elif isinstance(node, str):
            size = len(node) if node.isascii() else _utf8_len(node, path, fail)
            if size > limits.max_string_bytes:
                fail(LimitExceededError, path, f"string of {size} bytes exceeds {limits.max_string_bytes}")
            budget -= size + 2
        elif isinstance(node, bool) or node is None:
            budget -= 5
        elif isinstance(node, int):
            if not -max_int <= node < max_int:
                fail(LimitExceededError, path, f"integer outside the signed {limits.max_int_bits + 1}-bit range")
            budget -= 20
        elif isinstance(node, float):
            if not math.isfinite(node):
                fail(InvalidValueError, path, "NaN and infinity are not JSON")
            budget -= 24
        elif leaf_types and isinstance(node, leaf_types):
            budget -= 64
        else:
            fail(InvalidValueError, path, f"unsupported type {type(node).__name__}")
        if budget < 0:
            fail(LimitExceededError, path, f"value exceeds {limits.max_value_bytes} bytes")

    try:
        walk(value, (), 0)
    except RecursionError:
        raise LimitExceededError(f"value rejected: nested deeper than {limits.max_depth}") from None
    return nodes


def _utf8_len(text: str, path: tuple[object, ...], fail: Callable[..., None]) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        fail(InvalidValueError, path, "string is not valid Unicode (lone surrogate)")
        return 0


def parse_json_text(data: bytes, limits: Limits) -> Any:
    """Parse untrusted JSON text strictly: UTF-8, no NaN/Infinity, no duplicate keys, and no
    integer literal long enough to be costly to convert (CVE-2020-10735)."""
    if len(data) > 2 * limits.max_value_bytes:
        raise LimitExceededError(f"JSON input of {len(data)} bytes exceeds {2 * limits.max_value_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidValueError("JSON input is not valid UTF-8") from None
    digits_limit = len(str(1 << limits.max_int_bits)) + 1

    def parse_int(literal: str) -> int:
        if len(literal) > digits_limit:
            raise LimitExceededError(f"integer literal of {len(literal)} digits is out of range")
        return int(literal)

    def reject_constant(name: str) -> Any:
        raise InvalidValueError(f"{name} is not valid JSON")

    def unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, item in pairs:
            if key in result:
                raise InvalidValueError("JSON object has a duplicate key")
            result[key] = item
        return result

    try:
        return json.loads(
            text, parse_int=parse_int, parse_constant=reject_constant, object_pairs_hook=unique_pairs
        )
    except RecursionError:
        raise LimitExceededError("JSON input is nested too deeply") from None
    except json.JSONDecodeError as exc:
        # The decoder's message names a position, never the content.
        raise InvalidValueError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
