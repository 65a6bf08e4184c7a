"""Floor 1, pure and sans-IO: values and bytes in, values and bytes out. Nothing here imports
os, time, the fs fence, a backend or the api (tests/unit/test_import_rules.py enforces it)."""
