"""`Secret`: a value that must never be persisted, printed or logged in clear."""

from __future__ import annotations

import re
from typing import NoReturn

_ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,127}\Z")


class Secret:
    """Wraps a secret str/bytes, or names an environment variable that holds one.

    `Secret("v")` is stored encrypted in the session vault (or dropped, leaving a keyed
    fingerprint, when no master key is configured). `Secret.from_env("NAME")` stores only the
    reference `env:NAME`; the value is read from the environment when a read asks to resolve.
    """

    __slots__ = ("_value", "_env_name")

    def __init__(self, value: str | bytes) -> None:
        if not isinstance(value, (str, bytes)):
            raise TypeError("Secret holds str or bytes")
        self._value: str | bytes | None = value
        self._env_name: str | None = None

    @classmethod
    def from_env(cls, name: str) -> Secret:
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ValueError("environment variable names are [A-Za-z_][A-Za-z0-9_]*")
        secret = cls.__new__(cls)
        secret._value = None
        secret._env_name = name
        return secret

    @property
    def env_name(self) -> str | None:
        return self._env_name

    def reveal(self) -> str | bytes:
        if self._value is None:
            raise ValueError("an environment reference has no value until it is resolved")
        return self._value

    def __repr__(self) -> str:
        return f"Secret(env:{self._env_name})" if self._env_name else "Secret('**********')"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret values refuse serialization")  # never copied out through a reducer
