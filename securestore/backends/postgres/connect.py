"""The one place the PostgreSQL backend opens connections (issue 13).

psycopg is imported when a function first needs it. Every connection is autocommit, has TCP
keepalives on both ends, and is checked after the handshake: a server not on this machine must
be reached over TLS unless the target opted out. Errors become one-line OperationalErrors that
name the target by its display (never its password), with libpq's first line, escaped."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ...errors import OperationalError
from .url import PgTarget, is_local_host, shown

if TYPE_CHECKING:
    import psycopg

MISSING = "the PostgreSQL backend needs the postgres extra: pip install 'securestore[postgres]'"
# Idle 30 s, then 3 probes 10 s apart: a dead peer is noticed in about a minute, not Linux's 2 h 11 min,
# so a crashed writer's advisory locks free that fast, for one small packet per idle half-minute (and
# under most NAT/load balancer idle timeouts); tcp_user_timeout bounds unacknowledged writes alike.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT, USER_TIMEOUT_MS = 30, 10, 3, 60_000
SERVER_OPTIONS = (f"-c tcp_keepalives_idle={KEEPALIVE_IDLE_S} -c tcp_keepalives_interval={KEEPALIVE_INTERVAL_S} "
                  f"-c tcp_keepalives_count={KEEPALIVE_COUNT} -c tcp_user_timeout={USER_TIMEOUT_MS}")
_MAX_SHOWN = 500


def describe_error(exc: BaseException, *, hide: Iterable[str] = ()) -> str:
    """The first line of `exc`'s message, each of `hide` replaced, escaped: one line to show."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    for secret in hide:
        text = text.replace(secret, "***")
    return shown(text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "...")


def connect(target: PgTarget, *, application_name: str, connect_timeout: int = 10) -> psycopg.Connection[Any]:
    try:
        import psycopg
    except ImportError:
        raise OperationalError(MISSING) from None
    try:
        connection = psycopg.Connection.connect(**_parameters(target, application_name, connect_timeout))
    except psycopg.Error as exc:
        raise _failed(target, exc) from None
    try:
        _configure(target, connection)
    except BaseException as exc:
        connection.close()
        if isinstance(exc, psycopg.Error):
            raise _failed(target, exc) from None
        raise
    return connection


def _parameters(target: PgTarget, application_name: str, connect_timeout: int) -> dict[str, Any]:
    """The target's conninfo as keywords, with our defaults where the URL says nothing; the
    server-side settings come first in `options`, so the URL's own may override them."""
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(target.conninfo)
    defaults = {"connect_timeout": connect_timeout, "keepalives": 1, "keepalives_idle": KEEPALIVE_IDLE_S,
                "keepalives_interval": KEEPALIVE_INTERVAL_S, "keepalives_count": KEEPALIVE_COUNT,
                "tcp_user_timeout": USER_TIMEOUT_MS}
    options = " ".join([SERVER_OPTIONS, *([str(given["options"])] if given.get("options") else [])])
    # psycopg prepares nothing itself: wire.py prepares (per the target's threshold), and
    # psycopg, once it has prepared anything, answers a ROLLBACK with DEALLOCATE ALL, which
    # would drop the wire's prepared statements under it.
    return defaults | given | {"options": options, "application_name": application_name, "autocommit": True,
                               "prepare_threshold": None}


def _configure(target: PgTarget, connection: psycopg.Connection[Any]) -> None:
    """After the handshake: TLS to any server not on this machine (whatever the environment did
    since the URL was checked), and on PostgreSQL 14+ a check for a vanished client mid-query."""
    info = connection.info
    local = is_local_host(info.host) and is_local_host(info.hostaddr)
    if not (local or target.allow_insecure or connection.pgconn.ssl_in_use):
        raise OperationalError(f"refusing the connection to {target.display}: the server '{shown(info.host)}' is "
                               "not on this machine and the connection is not encrypted; add sslmode=verify-full "
                               "and sslrootcert=<the CA's certificate file> to the URL")
    if info.server_version >= 140000:
        connection.execute("SET client_connection_check_interval = '10s'")


def _failed(target: PgTarget, exc: BaseException) -> OperationalError:
    return OperationalError(f"cannot connect to {target.display}: {describe_error(exc, hide=target.secrets)}")
