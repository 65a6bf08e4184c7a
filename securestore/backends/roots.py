"""The composition root: which tree a store's root names. A `postgresql://` URL opens the
PostgreSQL backend (imported only then); anything else is a directory on disk."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import OperationalError
from ..fs import FsContext, open_root
from .postgres.url import is_postgres_url, parse_target
from .tree import TreeDir

if TYPE_CHECKING:
    from .postgres.setup import SetupReport as SetupReport

MISSING_EXTRA = "a postgresql:// store needs the postgres extra: pip install 'securestore[postgres]'"


def backend_of(root_path: str) -> str:
    """The name a new store's identity records for where it was made."""
    return "postgres" if is_postgres_url(root_path) else "fs"


def disk_root(root_path: str | None) -> str | None:
    """The directory key files must stay out of (None: no store, or not on this disk)."""
    return None if root_path is None or is_postgres_url(root_path) else root_path


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


def database_findings(root_path: str, environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """The doctor's checks of the server a store URL names: (check, status, detail) each."""
    try:
        from .postgres.health import database_findings as findings
    except ImportError:
        raise OperationalError(MISSING_EXTRA) from None
    return findings(parse_target(root_path, environ))


def set_up_database(url: str, environ: Mapping[str, str], *, owner: str | None = None, writer: str | None = None,
                    grant_writer_to: tuple[str, ...] = ()) -> SetupReport:
    """`securestore pg-setup`: the schema and roles a store needs in the database `url` names."""
    try:
        from .postgres.setup import install
    except ImportError:
        raise OperationalError(MISSING_EXTRA) from None
    return install(parse_target(url, environ), owner=owner, writer=writer, grant_writer_to=grant_writer_to)
