"""A LangGraph serializer that turns checkpointed state into tagged JSON the securestore
redactor can see into, and that revives only the types listed in this file (or registered by the
application in code).

LangGraph's default `JsonPlusSerializer` writes msgpack and, on load, imports and calls the class
a payload names (CVE-2026-28277): whoever can write checkpoint bytes runs code in the reader.
Here a stored value names at most a short tag; the tag is looked up in a fixed table, so no
module path or class name taken from stored data is ever imported, resolved or called.

What is stored as what (`~lg` is the tag key; a plain dict never carries it):

- JSON values as they are: str, bool, None, finite floats, ints within 64 bits, lists, and dicts
  whose keys are plain strings (other dicts: `{"~lg": "map", "items": [[key, value], ...]}`, so
  LangGraph's `__start__`-style channel names, which the store refuses as object keys, fit);
- tuple, set, frozenset, deque, bytes, bytearray, datetime, date, time, timedelta, timezone, UUID,
  Decimal, big ints and non-finite floats: `{"~lg": <tag>, ...}`. Bytes that decode as UTF-8 are
  stored as their text (`{"~lg": "bytes", "text": ...}`), so the redactor scans them like any
  string; only other bytes are stored as base64, and such binary blobs are opaque to the redactor
  (a secret inside them is not found);
- a tagged value under a credential-named key (`{"password": b"..."}`, a tuple under `token`, a
  UUID under `api_key`, ...) is sealed: its whole tagged JSON text becomes ONE securestore
  `Secret`, `{"~lg": 1, "json": <Secret>}`, so the redactor vaults it in one piece instead of
  turning its tag into a reference. It loads back as the value with `resolve_secrets=True` and as
  the reference string `[secret:vault:...]` by default;
- LangChain messages (Human, AI, Tool, System, Function, Chat, Remove and their chunks) and
  `Document`: `{"~lg": "msg", "type": "HumanMessage", "data": {...}}`, revived from a fixed table;
- LangGraph's own values: `Send`, `Interrupt`, `Command`, `Overwrite`, `_DeltaSnapshot`;
- securestore `Secret` and pydantic `SecretStr`/`SecretBytes` pass through to the store, which
  vaults them (they come back as reference strings, or values with `resolve_secrets=True`);
- an exception (LangGraph's ERROR writes) as its `repr`, as LangGraph's own serializer does;
- dataclasses, pydantic models, NamedTuples and Enums only when registered:
  `JsonStateSerializer(allowed_types=[MyState])` stores `{"~lg": "obj", "name": "MyState", ...}`
  and revives through that registration.

Anything else is refused when the checkpoint is written, with an `InvalidValueError` naming the
type and where it was found. Loading degrades per value, never per checkpoint: a tagged value
whose tag or field the redactor turned into a reference (a credential-shaped string inside
base64, a tag under a credential-named key that was not sealed) loads as that marker text.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import decimal
import enum
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from pydantic import BaseModel, SecretBytes, SecretStr

from ..core.policy.keys import is_forbidden_key
from ..core.policy.limits import render_path
from ..core.secrets import REFERENCE, Secret, contains_secret
from ..core.secrets.credential_keys import is_credential_container, is_credential_key
from ..errors import IntegrityError, InvalidValueError, SecureStoreError, UsageError

TAG = "~lg"
SEALED = 1  # the tag of a sealed value: not a string, so the redactor keeps it as it is
_PAIR_NAMES = ("name", "Name", "key", "Key", "header", "Header")  # as the store's redactor pairs them
_PAIR_VALUES = frozenset({"value", "Value", "val"})
# what a failed decode of a damaged tagged value may raise (binascii.Error and pydantic's are ValueErrors)
_DECODE_ERRORS = (SecureStoreError, ValueError, TypeError, KeyError, IndexError)
_INT_MAX = 1 << 63
_SECRET_TYPES: tuple[type, ...] = (Secret, SecretStr, SecretBytes)
Path = tuple[object, ...]


def _message_types() -> dict[str, type[Any]]:
    from langchain_core.documents import Document
    from langchain_core.messages import (
        AIMessage, AIMessageChunk, ChatMessage, ChatMessageChunk, FunctionMessage, FunctionMessageChunk,
        HumanMessage, HumanMessageChunk, RemoveMessage, SystemMessage, SystemMessageChunk, ToolMessage,
        ToolMessageChunk,
    )
    classes: list[type[Any]] = [
        AIMessage, AIMessageChunk, ChatMessage, ChatMessageChunk, FunctionMessage, FunctionMessageChunk,
        HumanMessage, HumanMessageChunk, RemoveMessage, SystemMessage, SystemMessageChunk, ToolMessage,
        ToolMessageChunk, Document,
    ]
    return {cls.__name__: cls for cls in classes}


def _graph_types() -> dict[str, type[Any]]:
    from langgraph.checkpoint.serde.types import _DeltaSnapshot
    found: dict[str, type[Any]] = {"delta": _DeltaSnapshot}
    try:  # langgraph itself is optional for a saver (langgraph-checkpoint is enough)
        from langgraph.types import Command, Interrupt, Overwrite, Send
    except ImportError:  # pragma: no cover - only langgraph-checkpoint installed
        return found
    found.update({"send": Send, "interrupt": Interrupt, "command": Command, "overwrite": Overwrite})
    return found


class JsonStateSerializer:
    """Tagged JSON for LangGraph state (see the module docstring). `allowed_types` registers
    application classes (dataclasses, pydantic models, NamedTuples, Enums) under their class
    name, or under the name given as `{"Name": cls}`."""

    def __init__(self, allowed_types: Iterable[type[Any]] | Mapping[str, type[Any]] = ()) -> None:
        self._messages = _message_types()
        self._message_names = {cls: name for name, cls in self._messages.items()}
        self._graph = _graph_types()
        self._graph_names = {cls: name for name, cls in self._graph.items()}
        pairs = allowed_types.items() if isinstance(allowed_types, Mapping) else (
            (cls.__name__, cls) for cls in allowed_types)
        self._registered: dict[str, type[Any]] = {}
        for name, cls in pairs:
            if not isinstance(cls, type) or not (dataclasses.is_dataclass(cls) or issubclass(cls, (BaseModel, enum.Enum))
                                                 or _is_named_tuple(cls)):
                raise UsageError(f"allowed_types: {name} is not a dataclass, pydantic model, NamedTuple or Enum class")
            if name in self._registered and self._registered[name] is not cls:
                raise UsageError(f"allowed_types: two classes are registered under the name {name}")
            self._registered[name] = cls
        self._registered_names = {cls: name for name, cls in self._registered.items()}

    # -- SerializerProtocol (LangGraph calls these only through a saver that uses them) ----------
    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        return "json", orjson.dumps(self.to_json(obj))

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind, raw = data
        if kind != "json":  # a msgpack or pickle payload is never decoded here
            raise IntegrityError(f"refusing a serialized value of type {kind!r}: only tagged JSON is loaded")
        return self.from_json(orjson.loads(raw))

    # -- encoding --------------------------------------------------------------------------------
    def to_json(self, obj: Any, path: Path = ()) -> Any:
        """`obj` as tagged JSON; InvalidValueError for a type that could not be revived."""
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        kind = type(obj)
        if kind is int:
            return obj if -_INT_MAX <= obj < _INT_MAX else {TAG: "int", "v": str(obj)}
        if kind is float:
            return obj if math.isfinite(obj) else {TAG: "float", "v": repr(obj)}
        if kind is dict:
            return self._dict(obj, path)
        if kind is list:
            return self._items(obj, path)
        if isinstance(obj, _SECRET_TYPES):
            return obj  # the store vaults it before anything is written
        name = self._registered_names.get(kind)
        if name is not None:
            return {TAG: "obj", "name": name, "data": self.to_json(_fields_of(obj), path)}
        name = self._message_names.get(kind)
        if name is not None:
            return {TAG: "msg", "type": name, "data": self.to_json(obj.model_dump(), path)}
        name = self._graph_names.get(kind)
        if name is not None:
            return {TAG: name, "data": self.to_json(self._graph_fields(name, obj, path), path)}
        if kind is bytes or kind is bytearray:
            return _bytes(obj)
        simple = _SIMPLE_ENCODERS.get(kind)
        if simple is not None:
            tag, encode = simple
            return {TAG: tag, "v": encode(obj)}
        if kind in _SEQUENCE_TAGS:
            return {TAG: _SEQUENCE_TAGS[kind], "items": self._items(obj, path)}
        if isinstance(obj, BaseException):
            return repr(obj)  # as LangGraph's own serializer stores an ERROR write
        where = render_path(path, hide=contains_secret)
        raise InvalidValueError(
            f"langgraph state rejected at {where}: type {kind.__module__}.{kind.__qualname__} cannot be stored; "
            "store plain JSON, LangChain messages or a type registered with JsonStateSerializer(allowed_types=...)")

    def encode_field(self, key: str, value: Any, path: Path = ()) -> Any:
        """`value` as tagged JSON stored under the object key `key` (sealed when the key names a
        credential and the value is tagged)."""
        return _guarded(_credential_key(key, value), self.to_json(value, path))

    def _items(self, obj: Iterable[Any], path: Path) -> list[Any]:
        return _paired([self.to_json(child, path + (index,)) for index, child in enumerate(obj)])

    def _dict(self, obj: dict[Any, Any], path: Path) -> Any:
        if all(type(key) is str and key != TAG and not is_forbidden_key(key) for key in obj):
            paired = next((obj[name] for name in _PAIR_NAMES if name in obj), None)
            return {key: _guarded(_credential_key(key, value) or (key in _PAIR_VALUES and _credential_name(paired)),
                                  self.to_json(value, path + (key,)))
                    for key, value in obj.items()}
        return {TAG: "map", "items": [_paired([self.to_json(key, path), self.to_json(value, path + (str(key),))])
                                      for key, value in obj.items()]}

    @staticmethod
    def _graph_fields(name: str, obj: Any, path: Path) -> dict[str, Any]:
        if name == "delta":
            return {"value": obj.value}
        if name == "send":
            return {"node": obj.node, "arg": obj.arg, "timeout": getattr(obj, "timeout", None)}
        if name == "interrupt":
            schema = obj.response_schema
            if schema is not None and not isinstance(schema, dict):
                raise InvalidValueError(f"langgraph state rejected at {render_path(path, hide=contains_secret)}: "
                                        "an Interrupt whose response_schema is a class cannot be stored")
            return {"value": obj.value, "id": obj.id, "response_schema": schema}
        return {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}

    # -- decoding --------------------------------------------------------------------------------
    def from_json(self, data: Any) -> Any:
        """The value `to_json` encoded. Only tags and names from this file's tables (or the
        registered types) are revived; an unknown one is an error, never an import."""
        if isinstance(data, list):
            return [self.from_json(child) for child in data]
        if not isinstance(data, dict):
            return data
        tag = data.get(TAG)
        if tag is None:
            return {key: self.from_json(value) for key, value in data.items()}
        try:
            return self._tagged(tag, data)
        except _DECODE_ERRORS:
            shown = _marker_text(data)
            if shown is None:
                raise
            return shown  # the redactor replaced part of this one value: it loads as its marker text

    def _tagged(self, tag: object, data: dict[str, Any]) -> Any:
        if tag == SEALED and type(tag) is int:
            return self._unseal(data.get("json"))
        if not isinstance(tag, str):
            raise IntegrityError("a stored langgraph value has a malformed type tag")
        if tag in ("bytes", "bytearray") and "text" in data:
            text = data["text"]
            raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
            return raw if tag == "bytes" else bytearray(raw)
        if tag == "map":
            return {_hashable(self.from_json(key)): self.from_json(value) for key, value in data["items"]}
        if tag in _SEQUENCE_DECODERS:
            return _SEQUENCE_DECODERS[tag]([self.from_json(child) for child in data["items"]])
        if tag in _SIMPLE_DECODERS:
            return _SIMPLE_DECODERS[tag](data["v"])
        if tag == "msg":
            cls = self._lookup(self._messages, data.get("type"), "message type")
            return cls.model_validate(self.from_json(data["data"]))
        if tag == "obj":
            cls = self._lookup(self._registered, data.get("name"), "registered type")
            return _revive(cls, self.from_json(data["data"]))
        if tag in self._graph:
            return self._revive_graph(tag, self.from_json(data["data"]))
        raise IntegrityError(f"a stored langgraph value carries an unknown type tag {tag[:40]!r}; nothing was loaded")

    def _unseal(self, text: object) -> Any:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise IntegrityError("a sealed langgraph value is not text")
        if REFERENCE.fullmatch(text):
            return text  # not resolved (resolve_secrets=False): the graph gets the reference
        return self.from_json(orjson.loads(text))

    @staticmethod
    def _lookup(table: Mapping[str, type[Any]], name: object, what: str) -> type[Any]:
        cls = table.get(name) if isinstance(name, str) else None
        if cls is None:  # never an import: the name only ever selects from the table
            shown = name[:60] if isinstance(name, str) else type(name).__name__
            raise UsageError(f"a stored langgraph value names the {what} {shown!r}, which this saver does not allow; "
                             "register the class with allowed_types=[...] if it is yours")
        return cls

    def _revive_graph(self, tag: str, fields: dict[str, Any]) -> Any:
        cls = self._graph[tag]
        if tag == "delta":
            return cls(fields["value"])
        if tag == "send":
            timeout = fields.get("timeout")
            return cls(fields["node"], fields["arg"]) if timeout is None else cls(fields["node"], fields["arg"],
                                                                                  timeout=timeout)
        if tag == "interrupt":
            return cls(value=fields["value"], id=fields["id"], response_schema=fields.get("response_schema"))
        return cls(**fields)


def _credential_name(name: object) -> bool:
    return isinstance(name, str) and is_credential_key(name)


def _credential_key(key: str, value: Any) -> bool:
    """The store's redactor treats every string below this key as one credential."""
    return is_credential_key(key) or (isinstance(value, dict) and is_credential_container(key))


def _paired(items: list[Any]) -> list[Any]:
    if len(items) == 2 and _credential_name(items[0]):
        items[1] = _guarded(True, items[1])  # the redactor reads a [name, value] pair as one field
    return items


def _has_tag(data: Any) -> bool:
    if isinstance(data, dict):
        return TAG in data or any(_has_tag(child) for child in data.values())
    if isinstance(data, list):
        return any(_has_tag(child) for child in data)
    return False


def _guarded(credential: bool, encoded: Any) -> Any:
    """`encoded`, sealed into one `Secret` when it sits under a credential and holds a tagged
    value: the redactor would otherwise vault the tag's strings one by one, and the value would
    no longer load."""
    if not credential or not _has_tag(encoded):
        return encoded
    try:
        text = orjson.dumps(encoded).decode("utf-8")
    except TypeError:
        return encoded  # holds a typed Secret (vaulted as it is); a damaged tag degrades on load
    return {TAG: SEALED, "json": Secret(text)}


def _marker_text(data: dict[str, Any]) -> str | None:
    """The text of a tagged value's field (or tag) that holds a reference, if any."""
    fields = [value for key, value in data.items() if key != TAG] + [data.get(TAG)]
    return next((value for value in fields if isinstance(value, str) and REFERENCE.search(value)), None)


def _bytes(raw: bytes | bytearray) -> dict[str, Any]:
    tag = "bytes" if type(raw) is bytes else "bytearray"
    try:
        return {TAG: tag, "text": bytes(raw).decode("utf-8")}  # text: the redactor scans it
    except UnicodeDecodeError:
        return {TAG: tag, "v": _b64(raw)}  # binary: opaque to the redactor


def _is_named_tuple(cls: type[Any]) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


def _fields_of(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump()
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj):
        return {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}
    return obj._asdict()  # a NamedTuple


def _revive(cls: type[Any], data: Any) -> Any:
    if issubclass(cls, BaseModel):
        return cls.model_validate(data)
    if issubclass(cls, enum.Enum):
        return cls(data)
    if not isinstance(data, dict):
        raise IntegrityError(f"a stored {cls.__name__} is not an object")
    return cls(**data)


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        return tuple(_hashable(part) for part in key)
    return key


def _b64(raw: bytes | bytearray) -> str:
    return base64.b64encode(bytes(raw)).decode("ascii")


_SIMPLE_ENCODERS: dict[type, tuple[str, Callable[[Any], Any]]] = {
    dt.datetime: ("datetime", dt.datetime.isoformat),
    dt.date: ("date", dt.date.isoformat),
    dt.time: ("time", dt.time.isoformat),
    dt.timedelta: ("timedelta", lambda value: [value.days, value.seconds, value.microseconds]),
    dt.timezone: ("timezone", lambda value: [value.utcoffset(None).total_seconds(), value.tzname(None)]),
    uuid.UUID: ("uuid", str),
    decimal.Decimal: ("decimal", str),
}
_SIMPLE_DECODERS: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "float": float,
    "bytes": lambda text: base64.b64decode(text, validate=True),
    "bytearray": lambda text: bytearray(base64.b64decode(text, validate=True)),
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda parts: dt.timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2]),
    "timezone": lambda parts: dt.timezone(dt.timedelta(seconds=parts[0]), parts[1]),
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
}
_SEQUENCE_TAGS: dict[type, str] = {tuple: "tuple", set: "set", frozenset: "frozenset", collections.deque: "deque"}
_SEQUENCE_DECODERS: dict[str, Callable[[list[Any]], Any]] = {
    "tuple": tuple, "set": lambda items: set(map(_hashable, items)),
    "frozenset": lambda items: frozenset(map(_hashable, items)), "deque": collections.deque,
}
