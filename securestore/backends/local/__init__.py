"""The local directory backend: everything on disk (sessions, store, audit log files, index,
migration, verification, proofs), through the fs fence."""
