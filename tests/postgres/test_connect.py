"""The connection layer on a real server (issue 13): loopback TCP and the Unix socket, password
authentication that fails in one line without the password, TLS with a CA made here (verify-full
connects, a wrong CA or host name is refused, a plaintext connection to a name not on this
machine is refused even when the environment changes after the URL was checked), and a pool
that replaces a connection the server terminated instead of handing it out."""

from __future__ import annotations

import datetime
import shutil
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg  # the extra `postgres`; missing, the tests fail (never skip)
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from securestore.backends.postgres.connect import connect, describe_error
from securestore.backends.postgres.link import PgLink
from securestore.backends.postgres.reads import query
from securestore.backends.postgres.url import PgTarget, parse_target
from securestore.errors import OperationalError, UsageError
from securestore.fs import FsContext
from tests.support.postgres import PostgresServer, make_server, remove_server

PASSWORD = "correct-horse-battery-staple"
WRONG = "tr0ub4dor-and-3"
NAME = "pg.securestore.test"  # in the server's certificate with localhost; reached through hostaddr


@dataclass
class Tls:
    server: PostgresServer
    ca: Path
    wrong_ca: Path  # another CA
    impostor_ca: Path  # another CA with the right CA's name


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return key, _certificate(subject, subject, key.public_key(), key, ca=True)


def _certificate(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey,
                 signer: ec.EllipticCurvePrivateKey, *, ca: bool, names: tuple[str, ...] = ()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, data: bytes, owner: str | None, mode: int) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    if owner:
        shutil.chown(path, owner, owner)
    return path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    """A server with TLS (a certificate for localhost and NAME) and a password-only user alice."""
    server = make_server()
    try:
        client = tmp_path_factory.mktemp("client")
        ca_key, ca = _ca("securestore test CA")
        _, wrong_ca = _ca("another CA")
        _, impostor_ca = _ca("securestore test CA")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        cert = _certificate(subject, ca.subject, key.public_key(), ca_key, ca=False, names=("localhost", NAME))
        pem = serialization.Encoding.PEM
        key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        cert_file = _write(server.directory / "server.crt", cert.public_bytes(pem), server.os_user, 0o644)
        key_file = _write(server.directory / "server.key", key_pem, server.os_user, 0o600)
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute(f"CREATE ROLE alice LOGIN PASSWORD '{PASSWORD}'")
        hba = server.directory / "data" / "pg_hba.conf"
        hba.write_text("host all alice 127.0.0.1/32 scram-sha-256\n" + hba.read_text())  # first match wins
        server.stop()
        server.start(durable=False, settings={"ssl": "on", "ssl_cert_file": str(cert_file),
                                              "ssl_key_file": str(key_file)})
        yield Tls(server, *(_write(client / f"{name}.crt", authority.public_bytes(pem), None, 0o644)
                            for name, authority in (("ca", ca), ("wrong", wrong_ca), ("impostor", impostor_ca))))
    finally:
        remove_server(server)


def _target(url: str, environ: dict[str, str] | None = None) -> PgTarget:
    return parse_target(url, environ or {})


def _refusal(target: PgTarget) -> str:
    with pytest.raises(OperationalError) as refused:
        connect(target, application_name="securestore-test").close()
    message = str(refused.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"cannot connect to {target.display}: ") or message.startswith("refusing")
    return message


def test_connects_over_loopback_tcp_configured(tls: Tls) -> None:
    target = _target(f"postgresql://postgres@127.0.0.1:{tls.server.port}/postgres")
    with connect(target, application_name="securestore-test") as connection:
        # psycopg prepares nothing itself (wire.py does): its DEALLOCATE ALL on a ROLLBACK would
        # drop the wire's prepared statements.
        assert connection.autocommit and connection.prepare_threshold is None
        assert connection.execute("select current_setting('application_name'), current_setting('tcp_keepalives_idle'),"
                                  " current_setting('tcp_keepalives_count'), current_setting('tcp_user_timeout'),"
                                  " current_setting('client_connection_check_interval')").fetchone() == (
            "securestore-test", "30", "3", "60000", "10s")
        parameters = connection.info.get_parameters()
        assert (parameters["keepalives"], parameters["keepalives_idle"], parameters["keepalives_count"]) == ("1", "30", "3")


def test_connects_over_the_unix_socket(tls: Tls) -> None:
    directory = str(tls.server.directory)
    for url in (f"postgresql://postgres@{directory.replace('/', '%2F')}:{tls.server.port}/postgres",
                f"postgresql://postgres@/postgres?host={directory}&port={tls.server.port}"):
        with connect(_target(url), application_name="securestore-test") as connection:
            assert connection.info.host == directory and not connection.pgconn.ssl_in_use
            assert connection.execute("select 1").fetchone() == (1,)


@pytest.mark.parametrize(("threshold", "prepared"), [("none", 0), ("0", 1)])
def test_the_prepare_threshold_reaches_the_handles_statements(tls: Tls, threshold: str, prepared: int) -> None:
    url = f"postgresql://postgres@localhost:{tls.server.port}/postgres?securestore_prepare_threshold={threshold}"
    link = PgLink(_target(url), FsContext(), "securestore-test")
    try:
        for n in range(3):
            assert query(link, "test", [(b"SELECT %(n)s::int8 + 1", {"n": n})])[0].fetchone() == (n + 1,)
        (answer,) = query(link, "test", [(b"SELECT count(*) FROM pg_prepared_statements WHERE "
                                          b"from_sql = false AND statement LIKE '%%int8 + 1'", None)])
        assert answer.fetchone() == (prepared,)  # none: never prepared (PgBouncer in transaction mode)
    finally:
        link.close()


def test_password_authentication_is_real(tls: Tls) -> None:
    url = f"postgresql://alice:{PASSWORD}@127.0.0.1:{tls.server.port}/postgres"
    with connect(_target(url), application_name="securestore-test") as connection:
        assert connection.execute("select current_user").fetchone() == ("alice",)


@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_a_wrong_password_fails_in_one_line_without_the_password(tls: Tls, where: str) -> None:
    port = tls.server.port
    url = (f"postgresql://alice:{WRONG}@127.0.0.1:{port}/postgres" if where == "userinfo"
           else f"postgresql://alice@127.0.0.1:{port}/postgres?password={WRONG}&connect_timeout=5")
    message = _refusal(_target(url))
    assert 'password authentication failed for user "alice"' in message
    assert WRONG not in message and PASSWORD not in message


def test_an_unknown_user_fails_in_one_line(tls: Tls) -> None:
    message = _refusal(_target(f"postgresql://nobody:{WRONG}@127.0.0.1:{tls.server.port}/postgres"))
    assert 'role "nobody" does not exist' in message and WRONG not in message


def test_a_closed_port_fails_with_libpqs_first_line() -> None:
    with socket.socket() as bound:  # bound, never listening: connections to it are refused
        bound.bind(("127.0.0.1", 0))
        message = _refusal(_target(f"postgresql://postgres:{WRONG}@127.0.0.1:{bound.getsockname()[1]}/postgres"))
    assert "Connection refused" in message and WRONG not in message


def test_verify_full_connects_over_tls(tls: Tls) -> None:
    verified = f"sslmode=verify-full&sslrootcert={tls.ca}"
    for url, local in ((f"postgresql://postgres@localhost:{tls.server.port}/postgres?{verified}", True),
                       (f"postgresql://postgres@{NAME}:{tls.server.port}/postgres?hostaddr=127.0.0.1&{verified}", False)):
        target = _target(url)
        assert target.local == local
        with connect(target, application_name="securestore-test") as connection:
            assert connection.pgconn.ssl_in_use
            assert connection.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone() == (True,)


def test_a_remote_name_without_verify_full_is_refused_before_connecting(tls: Tls) -> None:
    with pytest.raises(UsageError, match=f"refusing to connect to '{NAME}' with sslmode 'require'"):
        _target(f"postgresql://postgres@{NAME}:{tls.server.port}/postgres?hostaddr=127.0.0.1&sslmode=require")


def test_a_wrong_ca_is_refused(tls: Tls) -> None:
    for ca, error in ((tls.wrong_ca, "SSL error: certificate verify failed"), (tls.impostor_ca, "SSL error: ")):
        message = _refusal(_target(f"postgresql://postgres@localhost:{tls.server.port}/postgres?sslmode=verify-full&"
                                   f"sslrootcert={ca}"))
        assert error in message


def test_a_certificate_for_another_name_is_refused(tls: Tls) -> None:
    message = _refusal(_target(f"postgresql://postgres@other.securestore.test:{tls.server.port}/postgres?"
                               f"hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={tls.ca}"))
    assert 'does not match host name "other.securestore.test"' in message


def test_the_opt_out_connects_without_tls(tls: Tls) -> None:
    target = _target(f"postgresql://postgres@{NAME}:{tls.server.port}/postgres?hostaddr=127.0.0.1&sslmode=disable&"
                     "securestore_allow_insecure=true")
    with connect(target, application_name="securestore-test") as connection:
        assert not connection.pgconn.ssl_in_use


def test_an_environment_changed_after_the_check_cannot_downgrade(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> None:
    """The URL names no host, so it was checked as the default socket; by the time libpq reads
    the environment, it names a host not on this machine and turns TLS off."""
    target = _target(f"postgresql://postgres@/postgres?port={tls.server.port}", {})
    assert target.local
    for name, value in {"PGHOST": NAME, "PGHOSTADDR": "127.0.0.1", "PGSSLMODE": "disable"}.items():
        monkeypatch.setenv(name, value)
    message = _refusal(target)
    assert message.startswith(f"refusing the connection to {target.display}: the server '{NAME}' is not on this")


def test_describe_error_is_one_escaped_line_without_the_hidden() -> None:
    error = psycopg.OperationalError(f"first \x1b[31mline {WRONG}\nsecond line")
    assert describe_error(error, hide=(WRONG,)) == "first \\x1b[31mline ***"
    assert describe_error(ValueError("")) == "ValueError"


def test_without_psycopg_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    with pytest.raises(OperationalError, match=r"pip install 'securestore\[postgres\]'"):
        connect(_target("postgresql:///postgres"), application_name="securestore-test")
