"""Audit trail: pure record hashing and verification (chain, verify) and the appender (log)."""
