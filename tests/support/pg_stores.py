"""Stores in a real PostgreSQL database: a fresh database per store, set up by pg-setup's
`install` (schema and roles), then `init_store` like a directory store."""

from __future__ import annotations

import uuid

import psycopg

from securestore.backends.postgres.setup import install
from securestore.backends.postgres.url import parse_target

from .postgres import PostgresServer


def fresh_database(server: PostgresServer) -> str:
    """A new, empty database on `server`; its URL (superuser, loopback, no password)."""
    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:{server.port}/{name}"


def stored_bytes(url: str) -> bytes:
    """Every byte the store's rows hold: names, file chunks and audit records."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT convert_to(name, 'UTF8') FROM securestore.nodes UNION ALL SELECT data FROM securestore.chunks "
            "UNION ALL SELECT data FROM securestore.audit_records").fetchall()
    return b"\n".join(bytes(row[0]) for row in rows)


def set_up_database(server: PostgresServer) -> str:
    """A fresh database with the securestore schema and roles in it; its URL."""
    url = fresh_database(server)
    install(parse_target(url, {}))
    return url
