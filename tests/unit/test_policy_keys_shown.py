"""How errors show a session key: quoted, escaped, shortened; never able to drive a terminal."""

from __future__ import annotations

from securestore.core.policy import describe_key


def test_a_key_is_shown_quoted_with_controls_and_bidi_escaped_and_shortened() -> None:
    assert describe_key('a "b" \\c', "k-x") == '"a \\"b\\" \\\\c"'
    shown = describe_key("x\x1b[31m\u202ey\x85", "k-x")
    assert shown == '"x\\x1b[31m\\u202ey\\x85"' and all(c.isprintable() for c in shown)
    assert describe_key("a" * 200, "k-x") == '"' + "a" * 77 + '..."'
    assert describe_key(None, "k-mfrgg") == "k-mfrgg"  # only the directory is known
