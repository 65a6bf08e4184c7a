"""Checked by mypy, never run: the local classes implement the protocols of backends/base.py."""

from __future__ import annotations

from ..base import SessionBackend, SessionReader
from .session_dir import SessionDir
from .session_reader import ReadOnlySession


def _conforms(writer: SessionDir, reader: ReadOnlySession) -> tuple[SessionBackend, SessionReader]:
    return writer, reader
