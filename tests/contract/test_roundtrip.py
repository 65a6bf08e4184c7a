"""Property: whatever JSON value goes in comes back exactly when resolved with the key, and
no planted credential is stored in clear, whatever text surrounds it."""

from __future__ import annotations

import itertools

import pytest

from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.support.raw_tree import raw_tree, session_path
from tests.support.corpus import secret_corpus
from tests.support.examples import examples
from securestore import ForbiddenKeyError, SecretInKeyError, SecureStore

from securestore.core.secrets import find_secrets

pytestmark = pytest.mark.both_backends
_EXAMPLES = itertools.count()


def _self_identifying(secret: str) -> bool:
    """Vendor formats are recognised anywhere; context-only secrets (a bare random password)
    are by design recognised only next to their context (`password=`), so they are left out."""
    return [(f.start, f.end) for f in find_secrets(secret)] == [(0, len(secret))]


SECRETS = [p.secret for p in secret_corpus() if "\n" not in p.secret and _self_identifying(p.secret)]
FRAGMENTS = st.sampled_from(
    ["[secret:", "[secret:vault:abc]", "[secret!:env:HOME]", "[secret!!:", "password=", "Bearer ", " ", "\n", "é", "💡"]
    + SECRETS
)
TEXT = st.lists(st.one_of(st.text(max_size=12), FRAGMENTS), max_size=6).map("".join)
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                   st.floats(allow_nan=False, allow_infinity=False), TEXT)
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=20)


@given(value=VALUES)
@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_put_then_resolved_get_is_exact(store: SecureStore, root: Path | str, value: object) -> None:
    # One store for every example (a database per example would cost more than the property):
    # each example writes its own session; that session and everything outside sessions/ (the
    # store's trail and index) are searched for every secret.
    session = f"sess{next(_EXAMPLES)}"
    try:
        store.put(session, "slot", value)
    except (SecretInKeyError, ForbiddenKeyError):
        assume(False)  # keys holding credentials or dunder names are refused by design
    assert store.get(session, "slot", resolve=True) == value
    raw = _stored(root, session)
    assert not [s for s in SECRETS if s.encode() in raw]


def _stored(root: Path | str, session: str) -> bytes:
    """Every byte of `session`'s directory and of the store's own files (not other sessions')."""
    tree = raw_tree(root)
    outside = tree.snapshot(skip=frozenset({"sessions"}))
    parts = [*tree.files(session_path(session)).values(), *(data for _, data in outside.values() if data)]
    return b"\n".join(parts + [name.encode() for name in tree.list("sessions")])
