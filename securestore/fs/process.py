"""The process's own context, read through the fence: path arguments and the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

PathArg = str | os.PathLike[str]


def path_text(path: PathArg) -> str:
    return os.fspath(path)


def absolute_path(path: PathArg) -> str:
    return os.path.abspath(path)


def environment() -> Mapping[str, str]:
    """The process environment, read-only: read once at the top and passed down, so that code
    below never reads os.environ behind its caller's back."""
    return os.environ


def user_data_dir(environ: Mapping[str, str]) -> str:
    """$XDG_DATA_HOME, else $HOME/.local/share (HOME from `environ`, else the password database)."""
    if environ.get("XDG_DATA_HOME"):
        return environ["XDG_DATA_HOME"]
    home = environ["HOME"] if "HOME" in environ else os.path.expanduser("~")
    return os.path.join(home, ".local", "share")


def user_config_dir(environ: Mapping[str, str]) -> str:
    """$XDG_CONFIG_HOME, else $HOME/.config (HOME from `environ`, else the password database)."""
    if environ.get("XDG_CONFIG_HOME"):
        return environ["XDG_CONFIG_HOME"]
    home = environ["HOME"] if "HOME" in environ else os.path.expanduser("~")
    return os.path.join(home, ".config")


def join_path(directory: str, *names: str) -> str:
    return os.path.join(directory, *names)
