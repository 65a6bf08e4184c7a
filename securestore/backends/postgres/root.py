"""Opening a store's tree in a PostgreSQL database: the connection, then the schema's version
(`securestore pg-setup` creates the schema; a store is then made in it like in a directory)."""

from __future__ import annotations

from ...errors import LayoutVersionError, NotFoundError
from ...fs import FsContext
from .link import PgLink
from .reads import query
from .schema import ROOT, SCHEMA_VERSION
from .tree import PgDir
from .url import PgTarget


def open_pg_root(target: PgTarget, ctx: FsContext) -> PgDir:
    """The root of the tree: closing it closes the handle's connection (and frees its locks)."""
    # The name other writers see in a LockHeldError: which process on which host holds the lock.
    link = PgLink(target, ctx, f"securestore pid {ctx.os.getpid()} on {ctx.os.hostname()}"[:63])
    try:
        (found,) = query(link, target.display, [(
            b"SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            b"WHERE n.nspname = %(schema)s AND c.relname = 'meta'", {"schema": target.schema})])
        version = None if found.fetchone() is None else \
            query(link, target.display, [(link.sql.schema_version, None)])[0].fetchone()
        if version is None:
            raise NotFoundError(f"no securestore schema {target.schema!r} at {target.display} (run `securestore "
                                "pg-setup URL` as the database's owner first)")
        if int(version[0]) > SCHEMA_VERSION:
            raise LayoutVersionError(f"the securestore schema at {target.display} is version {version[0]}, newer "
                                     f"than this securestore supports ({SCHEMA_VERSION}); nothing was modified")
    except BaseException:
        link.close()
        raise
    return PgDir(link, ROOT, "", "", owns_link=True)
