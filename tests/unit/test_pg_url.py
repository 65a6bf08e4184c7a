"""The PostgreSQL URL (issue 13), no server: what libpq gets, our own parameters, a display and
errors that never hold the password, and the transport rule (a host not on this machine needs
sslmode=verify-full, or the explicit opt-out), environment and host lists included."""

from __future__ import annotations

import pytest

from securestore.backends.postgres.url import PgTarget, is_local_host, is_postgres_url, parse_target
from securestore.errors import UsageError

SECRET = "Sup3r-s3cret-pw"
VERIFIED = "sslmode=verify-full&sslrootcert=/etc/ca.pem"


def _parse(url: str, **environ: str) -> PgTarget:
    return parse_target(url, environ)


def _refused(url: str, **environ: str) -> str:
    with pytest.raises(UsageError) as refused:
        parse_target(url, environ)
    message = str(refused.value)
    assert "\n" not in message and SECRET not in message
    return message


def _conninfo(target: PgTarget) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict  # libpq's own reading of what we hand it

    return {key: str(value) for key, value in conninfo_to_dict(target.conninfo).items()}


@pytest.mark.parametrize(("text", "expected"), [
    ("postgresql://h/db", True), ("postgres://h", True), ("PostgreSQL://h", True), ("POSTGRES://", True),
    ("postgresql:/h", False), ("mysql://h", False), ("/var/store", False), ("host=h dbname=db", False)])
def test_is_postgres_url(text: str, expected: bool) -> None:
    assert is_postgres_url(text) is expected


def test_a_full_url_becomes_libpqs_keywords_and_ours() -> None:
    target = _parse(f"postgresql://al%69ce:{SECRET}@localhost:6543/my%20db?application_name=x&connect_timeout=3"
                    "&securestore_schema=agents_1&securestore_prepare_threshold=0")
    assert _conninfo(target) == {"user": "alice", "password": SECRET, "host": "localhost", "port": "6543",
                                 "dbname": "my db", "application_name": "x", "connect_timeout": "3"}
    assert (target.schema, target.prepare_threshold, target.local, target.allow_insecure) == ("agents_1", 0, True, False)
    assert target.display == ("postgresql://al%69ce@localhost:6543/my%20db?application_name=x&connect_timeout=3"
                              "&securestore_schema=agents_1&securestore_prepare_threshold=0")


def test_defaults_and_quoting() -> None:
    target = _parse("postgres:///")
    assert (target.conninfo, target.schema, target.prepare_threshold, target.local) == ("", "securestore", 5, True)
    quoted = _parse("postgresql:///d?options=-c%20search_path%3D%27a%20b%27%5C")
    assert _conninfo(quoted) == {"dbname": "d", "options": "-c search_path='a b'\\"}


def test_hosts_ipv6_and_socket_directories() -> None:
    target = _parse("postgresql://[::1]:5433,127.0.0.7,%2Fvar%2Frun%2Fpostgresql,%40abstract:5434/db")
    assert _conninfo(target)["host"] == "::1,127.0.0.7,/var/run/postgresql,@abstract"
    assert _conninfo(target)["port"] == "5433,,,5434" and target.local


def test_query_parameters_override_the_url_and_ssl_true_is_require() -> None:
    target = _parse("postgresql://u@localhost/a?user=v&dbname=b&ssl=true")
    assert _conninfo(target) == {"user": "v", "host": "localhost", "dbname": "b", "sslmode": "require"}


@pytest.mark.parametrize("prepare", ["none", "NONE", "None"])
def test_prepare_threshold_none_for_pgbouncer(prepare: str) -> None:
    assert _parse(f"postgresql:///?securestore_prepare_threshold={prepare}").prepare_threshold is None


@pytest.mark.parametrize("prepare", ["-1", "five", "1e3", "", "12345678901"])
def test_prepare_threshold_must_be_a_count_or_none(prepare: str) -> None:
    assert "securestore_prepare_threshold" in _refused(f"postgresql:///?securestore_prepare_threshold={prepare}")


@pytest.mark.parametrize("schema", ["_", "a", "securestore_2", "x" * 63])
def test_schema_names_accepted(schema: str) -> None:
    assert _parse(f"postgresql:///?securestore_schema={schema}").schema == schema


@pytest.mark.parametrize("schema", ["", "A", "1a", "a-b", "a b", "x" * 64, "pg_catalog", "s%3Bdrop", "s%0A"])
def test_schema_names_refused(schema: str) -> None:
    message = _refused(f"postgresql://u:{SECRET}@localhost/?securestore_schema={schema}")
    assert message.startswith("invalid schema name")
    if schema == "s%0A":
        assert "'s\\x0a'" in message


@pytest.mark.parametrize(("url", "says"), [
    ("postgresql://h/?securestore_schma=x", "unknown parameter securestore_schma"),
    ("postgresql://h/?securestore_allow_insecure=maybe", "securestore_allow_insecure"),
    ("postgresql://h/?sslmode=verify-full&sslmode=disable", "given twice"),
    ("postgresql://h/?sslmode", "keyword=value"),
    ("postgresql://h/?Host=x", "keyword=value"),
    ("postgresql://h/?ssl=false", "ssl=true"),
    ("postgresql://h:54x2/", "invalid port"),
    ("postgresql://[::1/", "IPv6"),
    ("postgresql://[::1]x/", "IPv6"),
    ("postgresql://h/d%zz", "percent-encoding in the database name"),
    ("postgresql://h/d%00", "never %00"),
    ("postgresql://h/d%ff", "not UTF-8"),
    ("postgresql://h/\x00", "NUL"),
    ("mysql://h/", "not a PostgreSQL URL"),
])
def test_malformed_urls_are_refused_in_one_line(url: str, says: str) -> None:
    assert says in _refused(url)


@pytest.mark.parametrize("url", [
    f"postgresql://alice:{SECRET}@db.example.com/d",  # refused by the transport rule
    f"postgresql://alice@db.example.com/d?password={SECRET}",
    f"postgresql://alice:{SECRET}@localhost/d?securestore_schema=Bad",
    f"postgresql://alice:{SECRET}@localhost/d?securestore_nope=1",
    f"postgresql://alice:{SECRET}@localhost/d?service=prod",
    f"postgresql://alice:{SECRET}%zz@localhost/d",
    f"postgresql://alice:{SECRET}:1@localhost/d?sslmode",
    f"postgresql://alice:{SECRET[:4]}/{SECRET[4:]}@localhost/d",  # an unencoded / in the password
    f"postgresql://alice:1/{SECRET}@localhost/d",
    f"postgresql://alice:{SECRET}?x@localhost/d",
])
def test_errors_never_hold_the_password(url: str) -> None:
    message = _refused(url)
    assert SECRET[:4] not in message and SECRET[4:] not in message


@pytest.mark.parametrize("url", [
    f"postgresql://alice:{SECRET}@localhost/d",
    f"postgresql://alice:{SECRET.replace('-', '%2D')}@localhost/d",
    f"postgresql://alice@localhost/d?password={SECRET}&sslpassword={SECRET}x&application_name=a",
    f"postgresql://alice@localhost/d?pass%77ord={SECRET}",
    f"postgresql://alice@localhost/d?scram_client_key={SECRET}&oauth_client_secret={SECRET}",
])
def test_the_display_never_holds_the_password(url: str) -> None:
    target = _parse(url)
    assert SECRET not in target.display and SECRET.replace("-", "%2D") not in target.display
    assert SECRET not in repr(target) and target.display.startswith("postgresql://alice@localhost/d")
    assert SECRET in target.secrets


def test_the_display_escapes_control_characters() -> None:
    target = _parse("postgresql://u@localhost/d?application_name=a\x1b[2Jb\u202e")
    assert target.display == "postgresql://u@localhost/d?application_name=a\\x1b[2Jb\\u202e"


# --- the transport rule --------------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.9.8.7", "::1", "0:0:0:0:0:0:0:1",
                                  "/var/run/postgresql", "@abstract", ""])
def test_local_hosts(host: str) -> None:
    assert is_local_host(host)


@pytest.mark.parametrize("host", ["db.example.com", "10.0.0.1", "128.0.0.1", "::2", "localhost.evil.com",
                                  " 127.0.0.1", "127.1", "var/run"])
def test_hosts_not_on_this_machine(host: str) -> None:
    assert not is_local_host(host)


@pytest.mark.parametrize("url", ["postgresql://localhost/d", "postgresql://127.0.0.1:5432/d?sslmode=disable",
                                 "postgresql://[::1]/d", "postgresql://%2Ftmp/d", "postgresql:///d?host=/tmp",
                                 "postgresql:///d", "postgresql://localhost,%2Ftmp,127.0.0.2/d?sslmode=disable"])
def test_loopback_and_sockets_are_always_accepted(url: str) -> None:
    target = _parse(url)
    assert target.local and "gssencmode" not in _conninfo(target)


@pytest.mark.parametrize("mode", [None, "disable", "allow", "prefer", "require", "verify-ca", "VERIFY-FULL"])
def test_a_remote_host_without_verify_full_is_refused(mode: str | None) -> None:
    url = "postgresql://u@db.example.com/d" + (f"?sslmode={mode}" if mode else "")
    message = _refused(url)
    assert message.startswith("refusing to connect to 'db.example.com' with sslmode ")
    assert "sslmode=verify-full" in message and "sslrootcert=" in message and "securestore_allow_insecure=true" in message


def test_a_remote_host_with_verify_full_is_accepted_and_pinned() -> None:
    target = _parse(f"postgresql://u@db.example.com:5432/d?{VERIFIED}")
    assert not target.local and not target.allow_insecure
    assert _conninfo(target) == {"user": "u", "host": "db.example.com", "port": "5432", "dbname": "d",
                                      "sslmode": "verify-full", "sslrootcert": "/etc/ca.pem", "gssencmode": "disable"}


def test_sslrootcert_system_means_verify_full() -> None:
    assert _conninfo(_parse("postgresql://db.example.com/d?sslrootcert=system"))["sslmode"] == "verify-full"
    assert _conninfo(_parse("postgresql://db.example.com/d", PGSSLROOTCERT="system"))["sslmode"] == "verify-full"
    _refused("postgresql://db.example.com/d?sslrootcert=system&sslmode=require")


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on"])
def test_the_opt_out_accepts_any_transport(value: str) -> None:
    target = _parse(f"postgresql://db.example.com/d?sslmode=disable&securestore_allow_insecure={value}")
    assert target.allow_insecure and not target.local
    assert _conninfo(target) == {"host": "db.example.com", "dbname": "d", "sslmode": "disable"}


def test_the_opt_out_false_is_no_opt_out() -> None:
    _refused("postgresql://db.example.com/d?sslmode=disable&securestore_allow_insecure=false")


@pytest.mark.parametrize(("url", "host"), [
    ("postgresql://localhost,db.example.com/d", "db.example.com"),
    ("postgresql://db.example.com,localhost/d", "db.example.com"),
    ("postgresql://localhost/d?hostaddr=10.0.0.5", "10.0.0.5"),
    ("postgresql://localhost/d?host=10.0.0.5", "10.0.0.5"),
    ("postgresql://localhost/d?hostaddr=127.0.0.1,10.0.0.5", "10.0.0.5"),
    ("postgresql://%2Ftmp/d?hostaddr=10.0.0.5", "10.0.0.5"),
    ("postgresql://[2001:db8::1]:5432/d", "2001:db8::1"),
])
def test_every_host_of_a_list_and_hostaddr_counts(url: str, host: str) -> None:
    assert _refused(url).startswith(f"refusing to connect to '{host}'")


@pytest.mark.parametrize("environ", [{"PGHOST": "db.example.com"}, {"PGHOSTADDR": "10.0.0.5"},
                                     {"PGHOST": "localhost", "PGHOSTADDR": "10.0.0.5"}, {"PGHOST": "/tmp,10.0.0.5"}])
def test_the_environments_hosts_count_when_the_url_names_none(environ: dict[str, str]) -> None:
    _refused("postgresql:///d", **environ)
    assert _parse(f"postgresql:///d?{VERIFIED}", **environ).local is False


def test_the_urls_host_beats_the_environments() -> None:
    assert _parse("postgresql://localhost/d", PGHOST="db.example.com").local
    assert _conninfo(_parse("postgresql://localhost/d", PGHOST="db.example.com"))["host"] == "localhost"


def test_the_environments_sslmode_counts_and_is_pinned() -> None:
    target = _parse("postgresql://db.example.com/d?sslrootcert=/ca", PGSSLMODE="verify-full")
    assert _conninfo(target)["sslmode"] == "verify-full"
    assert "(from $PGSSLMODE)" in _refused("postgresql://db.example.com/d", PGSSLMODE="require")
    assert "(from $PGSSLMODE)" not in _refused("postgresql://db.example.com/d?sslmode=require", PGSSLMODE="verify-full")
    assert _parse("postgresql://db.example.com/d?sslmode=verify-full", PGSSLMODE="disable").local is False


def test_requiressl_cannot_replace_verify_full() -> None:
    _refused("postgresql://db.example.com/d", PGREQUIRESSL="1")
    _refused("postgresql://db.example.com/d?requiressl=1")


@pytest.mark.parametrize(("url", "environ"), [("postgresql://localhost/d?service=prod", {}),
                                              (f"postgresql:///d?{VERIFIED}", {"PGSERVICE": "prod"})])
def test_a_service_is_refused_without_the_opt_out(url: str, environ: dict[str, str]) -> None:
    message = _refused(url, **environ)
    assert "pg_service.conf" in message and "securestore_allow_insecure=true" in message
    assert ("$PGSERVICE" in message) == bool(environ)
    target = _parse(url + "&securestore_allow_insecure=true" if "?" in url else url + "?securestore_allow_insecure=1",
                    **environ)
    assert target.allow_insecure and not target.local


def test_sslkeylogfile_needs_the_opt_out() -> None:
    assert "sslkeylogfile" in _refused("postgresql://localhost/d?sslkeylogfile=/tmp/keys")
    assert _parse("postgresql://localhost/d?sslkeylogfile=/tmp/keys&securestore_allow_insecure=true").allow_insecure


def test_a_refused_host_is_named_escaped() -> None:
    assert "'db\\x0a.example.com'" in _refused("postgresql://db%0A.example.com/d")
