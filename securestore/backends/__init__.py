"""Storage backends: `base.py` holds the protocols the api needs; `local/` is the directory backend."""
