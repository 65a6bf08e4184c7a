"""Where the PostgreSQL backend connects (issue 13): a postgresql:// URL read into the conninfo
libpq gets, our own `securestore_*` parameters, a display safe to log, and the transport rule.

Pure: no driver, no I/O, no clock; the environment libpq would read is passed in. The URL is
parsed here, as libpq parses it, and handed on as key=value pairs, so libpq connects to exactly
what the rule checked.

The transport rule: every effective host (host and hostaddr, each from the URL else from
$PGHOST/$PGHOSTADDR; lists count entry by entry) is loopback or a Unix socket, or the effective
sslmode (URL, else $PGSSLMODE, else libpq's `prefer`) is `verify-full`; otherwise the URL is
refused unless it says `securestore_allow_insecure=true`. A service (`service=`, $PGSERVICE)
can name any host and sslmode, and `sslkeylogfile` writes the TLS keys to disk: both need the
opt-out too. $PGREQUIRESSL can only raise sslmode to `require`, never lower it, so it changes no
verdict. A checked target's sslmode is written into its conninfo, so no later environment
change lowers it, with gssencmode=disable (libpq prefers GSSAPI encryption over TLS)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from ...errors import UsageError

DEFAULT_SCHEMA = "securestore"
DEFAULT_PREPARE_THRESHOLD = 5  # psycopg's own
SCHEMA_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
OUR_PARAMETERS = ("securestore_schema", "securestore_prepare_threshold", "securestore_allow_insecure")
# Never shown: libpq parameters whose values are secrets.
SECRET_PARAMETERS = frozenset({"password", "sslpassword", "oauth_client_secret", "scram_client_key",
                               "scram_server_key"})
_KEYWORD = re.compile(r"[a-z_][a-z0-9_]*")  # libpq's keywords: nothing else reaches the conninfo
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})|%00")
_BOOLEANS = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False, "0": False}
_UNSHOWABLE = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]} | {
    c: f"\\u{c:04x}" for c in [0x61C, *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF]}
_FIX = ("add sslmode=verify-full and sslrootcert=<the CA's certificate file> (or sslrootcert=system) to the "
        "URL, or securestore_allow_insecure=true to accept a connection nobody verifies")


def shown(text: str) -> str:
    """`text` fit for a one-line message or log: control and reordering characters escaped."""
    return text.translate(_UNSHOWABLE)


def is_postgres_url(text: str) -> bool:
    return text.lower().startswith(("postgresql://", "postgres://"))


def is_local_host(host: str) -> bool:
    """Loopback, a Unix socket directory, or empty (libpq's default socket)."""
    if host == "" or host.startswith(("/", "@")) or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class PgTarget:
    conninfo: str = field(repr=False)  # holds the password: never printed
    display: str  # the URL without its secrets, control characters escaped
    schema: str = DEFAULT_SCHEMA
    prepare_threshold: int | None = DEFAULT_PREPARE_THRESHOLD  # None: PgBouncer in transaction mode
    local: bool = True  # every effective host is loopback or a Unix socket
    allow_insecure: bool = False
    secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)  # scrubbed from errors


def parse_target(url: str, environ: Mapping[str, str]) -> PgTarget:
    if not is_postgres_url(url):
        raise UsageError("not a PostgreSQL URL: it must start with postgresql:// (or postgres://)")
    if "\x00" in url:
        raise UsageError("the PostgreSQL URL contains a NUL character: remove it")
    scheme, rest = url.split("://", 1)
    cut = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
    userinfo, at, hostlist = rest[:cut].rpartition("@")
    path, _, query = rest[cut:].partition("?")
    if "@" in path:
        raise UsageError("an @ after the host in the PostgreSQL URL: percent-encode / ? @ in a password "
                         "(%2F %3F %40), and @ in a database name")
    params: dict[str, str] = {}
    user, colon, password = userinfo.partition(":")
    if user:
        params["user"] = _decode(user, "the user name")
    if colon:
        params["password"] = _decode(password, "the password")
    hosts, ports = zip(*(_host_port(entry) for entry in hostlist.split(",")), strict=True)
    if any(hosts) or len(hosts) > 1:
        params["host"] = ",".join(hosts)
    if any(ports):
        params["port"] = ",".join(ports)
    if len(path) > 1:
        params["dbname"] = _decode(path[1:], "the database name")
    ours, pieces = _query(query, params)
    display = f"{scheme.lower()}://{user + '@' if user else ''}{hostlist}{path}"
    return _checked(params, ours, environ, shown(display + ("?" + "&".join(pieces) if pieces else "")))


def _checked(params: dict[str, str], ours: dict[str, str], environ: Mapping[str, str], display: str) -> PgTarget:
    schema = ours.get("securestore_schema", DEFAULT_SCHEMA)
    if not SCHEMA_PATTERN.fullmatch(schema) or schema.startswith("pg_"):
        raise UsageError(f"invalid schema name '{shown(schema)}' in securestore_schema: it must match "
                         "[a-z_][a-z0-9_]{0,62} and not start with pg_ (reserved); choose another name")
    threshold = ours.get("securestore_prepare_threshold", str(DEFAULT_PREPARE_THRESHOLD)).lower()
    if threshold != "none" and not re.fullmatch(r"[0-9]{1,9}", threshold):
        raise UsageError(f"invalid securestore_prepare_threshold '{shown(threshold)}': give a number of "
                         "executions (0: prepare at once) or none (never prepare, for PgBouncer's transaction mode)")
    insecure = _BOOLEANS.get(ours.get("securestore_allow_insecure", "false").lower())
    if insecure is None:
        raise UsageError("invalid securestore_allow_insecure: give true or false")
    from_environ = {key: variable for key, variable in (("host", "PGHOST"), ("hostaddr", "PGHOSTADDR"),
                    ("sslmode", "PGSSLMODE")) if key not in params and variable in environ}
    params |= {key: environ[variable] for key, variable in from_environ.items()}  # what libpq would read
    hosts = [h for key in ("host", "hostaddr") if key in params for h in params[key].split(",")]
    service = "the service parameter" if "service" in params else "$PGSERVICE" if environ.get("PGSERVICE") else ""
    local = all(is_local_host(host) for host in hosts) and not service
    if not insecure:
        if service:
            raise UsageError(f"refusing the connection service named by {service}: a pg_service.conf entry can "
                             "name any host and sslmode, which securestore cannot check; put the host, "
                             "sslmode=verify-full and sslrootcert in the URL, or add securestore_allow_insecure=true")
        if "sslkeylogfile" in params:
            raise UsageError("refusing sslkeylogfile: it writes the TLS session keys to a file, and whoever "
                             "reads it can decrypt the traffic; remove it, or add securestore_allow_insecure=true")
        if "sslmode" not in params and params.get("sslrootcert", environ.get("PGSSLROOTCERT")) == "system":
            params["sslmode"] = "verify-full"  # libpq 16+ does the same for sslrootcert=system
        if not local and params.get("sslmode") != "verify-full":
            host = next(h for h in hosts if not is_local_host(h))
            mode = f"'{shown(params['sslmode'])}'" if "sslmode" in params else "'prefer' (libpq's default)"
            mode += " (from $PGSSLMODE)" if "sslmode" in from_environ else ""
            raise UsageError(f"refusing to connect to '{shown(host)}' with sslmode {mode}: only verify-full checks "
                             f"that the server's certificate is valid for that host name; {_FIX}")
        if not local:
            params.setdefault("gssencmode", "disable")  # else a Kerberos ticket would replace TLS
    secrets = tuple(params[key] for key in sorted(SECRET_PARAMETERS & params.keys()) if params[key])
    return PgTarget(" ".join(f"{key}={_quote(value)}" for key, value in params.items()), display, schema,
                    None if threshold == "none" else int(threshold), local, insecure, secrets)


def _query(query: str, params: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Reads the query into `params` (libpq's, overriding the URL's own parts) and our own
    parameters; returns those and the raw pieces that may be shown."""
    ours: dict[str, str] = {}
    pieces: list[str] = []
    seen: set[str] = set()
    for piece in query.split("&") if query else []:
        raw_key, equals, raw_value = piece.partition("=")
        key = _decode(raw_key, "a query parameter's name")
        if not equals or not _KEYWORD.fullmatch(key):
            raise UsageError("malformed query parameter in the PostgreSQL URL: each one is keyword=value, "
                             "separated by &, with a lowercase keyword")
        value = _decode(raw_value, f"the query parameter {key}")
        if key == "ssl":  # libpq's JDBC spelling
            if value != "true":
                raise UsageError("invalid ssl parameter in the PostgreSQL URL: only ssl=true (sslmode=require) exists")
            key, value = "sslmode", "require"
        if key in seen:
            raise UsageError(f"the query parameter {key} is given twice in the PostgreSQL URL: keep one")
        seen.add(key)
        if key.startswith("securestore_") and key not in OUR_PARAMETERS:
            raise UsageError(f"unknown parameter {key} in the PostgreSQL URL: securestore's are "
                             + ", ".join(OUR_PARAMETERS))
        (ours if key in OUR_PARAMETERS else params)[key] = value
        if key not in SECRET_PARAMETERS:
            pieces.append(piece)
    return ours, pieces


def _host_port(entry: str) -> tuple[str, str]:
    if entry.startswith("["):
        host, bracket, after = entry[1:].partition("]")
        if not bracket or after[:1] not in ("", ":"):
            raise UsageError("malformed IPv6 host in the PostgreSQL URL: write it as [address] or [address]:port")
        port = after[1:]
    else:
        host, _, port = entry.partition(":")
    if not re.fullmatch(r"[0-9]{0,5}", port):  # the value is not shown: it may be part of a password
        raise UsageError("invalid port in the PostgreSQL URL: a port is a number (percent-encode / ? @ in a "
                         "password: %2F %3F %40)")
    return _decode(host, "a host name"), port


def _decode(raw: str, what: str) -> str:
    """Percent-decoding as libpq does it (no `+` for space); the value is never shown."""
    if _BAD_PERCENT.search(raw):
        raise UsageError(f"invalid percent-encoding in {what} of the PostgreSQL URL: write % as %25, never %00")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{what} of the PostgreSQL URL is not UTF-8 once percent-decoded") from None


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
