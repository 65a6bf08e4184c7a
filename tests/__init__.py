"""The securestore test suite (a package so that tests/support imports as `tests.support`)."""
