"""The items every system stores: ~500 bytes of realistic, non-secret agent JSON (user and
assistant messages, tool calls and their outputs, in the OpenAI Agents SDK's item shapes).
Item i is the same dict for every system, so every peer is handed the same bytes."""

from __future__ import annotations

from typing import Any

import orjson

ITEM_BYTES = 500
_TOPICS = ("the nightly build", "ticket 4711", "the billing export", "the staging cluster", "the release notes")
_FILLER = ("The deployment finished; two services restarted cleanly and the error rate went back to its "
           "baseline within three minutes. Next I will compare the latency graphs with last week's run "
           "and summarise what changed for the on-call engineer. ") * 4


def _shape(i: int) -> dict[str, Any]:
    topic = _TOPICS[i % len(_TOPICS)]
    kind = i % 4
    if kind == 0:
        return {"role": "user", "content": f"Turn {i}: what is the status of {topic}? "}
    if kind == 1:
        return {"type": "function_call", "id": f"fc_{i:08d}", "call_id": f"call_{i:08d}", "name": "lookup_status",
                "arguments": orjson.dumps({"subject": topic, "detail": "full", "turn": i}).decode()}
    if kind == 2:
        return {"type": "function_call_output", "call_id": f"call_{i - 1:08d}", "output": f"{topic}: "}
    return {"id": f"msg_{i:08d}", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": f"About {topic}: ", "annotations": [], "logprobs": []}]}


def _text_field(item: dict[str, Any]) -> tuple[dict[str, Any], str]:
    if "content" in item and isinstance(item["content"], list):
        return item["content"][0], "text"
    if "output" in item:
        return item, "output"
    if "content" in item:
        return item, "content"
    return item, "name"  # function_call: pad via a note field below


def item(i: int) -> dict[str, Any]:
    """Item number i, padded with prose to ITEM_BYTES bytes of compact JSON."""
    body = _shape(i)
    holder, field = _text_field(body)
    if field == "name":
        holder, field = body, "note"
        body["note"] = ""
    pad = ITEM_BYTES - len(orjson.dumps(body))
    holder[field] = holder[field] + _FILLER[(i * 7) % 200:][:max(0, pad)]
    return body


def items(start: int, count: int) -> list[dict[str, Any]]:
    return [item(n) for n in range(start, start + count)]
