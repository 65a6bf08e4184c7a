"""A throwaway PostgreSQL server for the tests (issue 13): a new cluster in a temporary
directory, listening on 127.0.0.1 and a Unix socket there, stopped and removed afterwards.

initdb refuses to run as root, so as root the server runs as the `postgres` OS user (or a
`pgtest` system user made for it). A missing PostgreSQL fails the tests that need it, with the
command that installs it: a green run always means they ran."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))
MISSING = (f"PostgreSQL's server binaries are not in {PGBIN} (set $PGBIN to their directory): the PostgreSQL "
           "tests need a real server. Install it with `apt-get install postgresql-15` (Debian/Ubuntu).")


@dataclass
class PostgresServer:
    directory: Path
    port: int
    os_user: str | None  # the OS user the server runs as (None: this one)
    settings: dict[str, str] = field(default_factory=dict)  # extra server settings, kept across restarts

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = (["runuser", "-u", self.os_user, "--"] if self.os_user else []) + list(argv)
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)

    def start(self, *, durable: bool, settings: Mapping[str, str] | None = None) -> None:
        """`durable=False` turns fsync off for speed; the fault tests start durable servers.
        `settings` (e.g. {"ssl": "on", "ssl_cert_file": ...}) replace the extra settings this
        server starts with, now and on later starts."""
        if settings is not None:
            self.settings = dict(settings)
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory}"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        options += "".join(f" -c {shlex.quote(f'{name}={value}')}" for name, value in self.settings.items())
        done = self.run(str(PGBIN / "pg_ctl"), "-D", str(self.directory / "data"), "-l", str(self.log), "-w",
                        "-t", "60", "-o", options, "start")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()} (log: {self.log})")

    def stop(self, mode: str = "fast") -> None:
        """`mode="immediate"`: no shutdown checkpoint, the server's own crash (recovery on start)."""
        self.run(str(PGBIN / "pg_ctl"), "-D", str(self.directory / "data"), "-m", mode, "-w", "stop")


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgtest"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "pgtest"], check=True)
    return "pgtest"


def _memory_dir() -> str | None:
    """/dev/shm when it is writable and roomy (a container's default 64 MiB is not), else None."""
    try:
        room = os.statvfs("/dev/shm")
    except OSError:
        return None
    roomy = room.f_bavail * room.f_frsize >= 2 << 30  # a cluster, and the databases of the tests at hand
    return "/dev/shm" if roomy and os.access("/dev/shm", os.W_OK | os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_server(*, durable: bool = False, settings: Mapping[str, str] | None = None) -> PostgresServer:
    """A new cluster, started (with extra server `settings`, if given). Raises
    RuntimeError(MISSING) without the binaries."""
    if not (PGBIN / "initdb").exists():
        raise RuntimeError(MISSING)
    user = _server_user()
    # A server with fsync off keeps nothing across a crash anyway: in memory (tmpfs), its CREATE
    # DATABASE per store costs ~15 ms instead of ~150 ms. The durable servers of the fault tests
    # stay on the disk, where fsync means something.
    directory = Path(tempfile.mkdtemp(prefix="securestore-pg-", dir=None if durable else _memory_dir()))
    if user:
        shutil.chown(directory, user, user)
    server = PostgresServer(directory, _free_port(), user)
    made = server.run(str(PGBIN / "initdb"), "-D", str(directory / "data"), "-U", "postgres", "-A", "trust",
                      "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
    if made.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {made.stderr.strip()}")
    server.start(durable=durable, settings=settings)
    return server


def remove_server(server: PostgresServer) -> None:
    server.stop("immediate")
    shutil.rmtree(server.directory, ignore_errors=True)


def set_synchronous_standby(server: PostgresServer, name: str | None) -> None:
    """Name a synchronous standby (None: none); a new connection sees it once this returns. A
    durable commit then waits for that standby (wait_event SyncRep) until it is named no more."""
    import psycopg

    with psycopg.connect(server.dsn, autocommit=True) as admin:
        admin.execute("ALTER SYSTEM SET synchronous_standby_names = %s" % ("''" if name is None else f"'{name}'"))
        admin.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 30
    while True:
        with psycopg.connect(server.dsn, autocommit=True) as fresh:
            if fresh.execute("SHOW synchronous_standby_names").fetchone() == (name or "",):
                return
        assert time.monotonic() < deadline
        time.sleep(0.01)
