"""Against a real, throwaway PostgreSQL server (tests/support/postgres.py; issue 13)."""
