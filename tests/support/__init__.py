"""Helpers shared by the tests and by tools/: keys, store builders, fault machinery, corpora.

Test modules import from here, never from each other or from conftest.py (which holds fixtures).
"""
