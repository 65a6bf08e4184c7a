"""The composition root: which tree a store's root names. A `postgresql://` URL opens the
PostgreSQL backend (imported only then); anything else is a directory on disk."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import OperationalError
from ..fs import FsContext, open_root
from .postgres.url import is_postgres_url, parse_target
from .tree import TreeDir

MISSING_EXTRA = "a postgresql:// store needs the postgres extra: pip install 'securestore[postgres]'"


def backend_of(root_path: str) -> str:
    """The name a new store's identity records for where it was made."""
    return "postgres" if is_postgres_url(root_path) else "fs"


def disk_root(root_path: str) -> str | None:
    """The directory key files must stay out of (None: the store is not on this disk)."""
    return None if is_postgres_url(root_path) else root_path


def root_label(root_path: str, environ: Mapping[str, str]) -> str:
    """How messages name the root: a URL without its password."""
    return parse_target(root_path, environ).display if is_postgres_url(root_path) else root_path


def open_store_root(root_path: str, ctx: FsContext, environ: Mapping[str, str], *, create: bool) -> TreeDir:
    if not is_postgres_url(root_path):
        return open_root(root_path, ctx, create=create)
    try:
        from .postgres.root import open_pg_root
    except ImportError:
        raise OperationalError(MISSING_EXTRA) from None
    return open_pg_root(parse_target(root_path, environ), ctx)
