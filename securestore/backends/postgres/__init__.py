"""The PostgreSQL backend (issue 13): the store's tree kept in rows of a PostgreSQL database.

Importing this package imports no driver: psycopg (the `postgres` extra) is loaded by the
modules that talk to a server, when they first do."""
