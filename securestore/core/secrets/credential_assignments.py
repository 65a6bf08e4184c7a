"""Credential fields: `key = value` / `key: value` assignments under a credential-named key (pure).

The key is checked by word (credential_keys.is_credential_key): `db_password`, `SecretAccessKey`,
`X-Api-Key`, `auth` and `client-key-data` are credentials; `next_token`, `token_count` and
`private_key_id` are not. A letters-only value is a passphrase only under a password-like key and
when it does not read as code or prose.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .context_detector import ContextDetector
from .credential_keys import is_credential_key, key_words
from .plausibility import plausible_value, strip_punctuation

# A bare letters-only value that names a credential is a variable: `password = passwd`.
_CREDENTIAL_STEM = re.compile(r"(?i)pass|pwd|secret|token|key|auth|cred")
# Keys whose letters-only values may be passphrases (`auth: oauth` or `credentials: include` are
# modes, not secrets).
_PASSPHRASE_KEY_WORDS = frozenset({"password", "passwd", "pwd", "passphrase", "passcode", "pass", "secret",
                                   "key", "apikey", "token"})
# After an unquoted letters-only value, prose or code (`password=passwd)`, `Password: required
# for login`) says it is a word or a variable, not a passphrase.
_PROSE_AFTER = re.compile(r"[ \t]+[A-Za-z(]|[,)(.\[<]")
# Glued names that the word-based key check does not split: PGPASSWORD, dbpassword, secretkey.
_GLUED_CREDENTIAL = re.compile(r"(?:password|passwd|passphrase|secret|secretkey|apikey|accesskey|privatekey"
                               r"|authtoken|accesstoken|refreshtoken|apitoken)\Z")


def _credential_key(key: str) -> bool:
    if is_credential_key(key):
        return True
    words = key_words(key)
    return bool(words) and bool(_GLUED_CREDENTIAL.search(words[-1])) and len(key) <= 128


def _accept_assignment(match: re.Match[str], value: str) -> bool:
    key = match.group("key")
    if not _credential_key(key):
        return False
    if not strip_punctuation(value).isalpha():
        return plausible_value(value, letters_ok=False)
    if key_words(key)[-1] not in _PASSPHRASE_KEY_WORDS:
        return False
    if match.group("bare") is not None and not _bare_word_is_a_value(match, value):
        return False
    return plausible_value(value, letters_ok=True)


def _bare_word_is_a_value(match: re.Match[str], value: str) -> bool:
    """An unquoted word after a credential key: a value (`db_password=word`, `password: word`),
    or code and prose (`passwd:gecos`, `x, password = split`, `password=passwd)`, `Password:
    required for login`)?"""
    separator = match.group("sep")
    if separator == ":" or (separator.startswith((" ", "\t")) and "=" in separator and separator.endswith((" ", "\t"))):
        return False  # `key:word` is a namespaced name; `key = word` is code (INI values lose here)
    if _PROSE_AFTER.match(match.string, match.end()):
        return False
    return not _CREDENTIAL_STEM.search(value)


_VALUE_MAX = 16384  # session tokens, kubeconfig `client-key-data` (a base64 PEM) are long
# Key endings that can name a credential (a superset: credential_keys decides). The key is taken
# whole, the separator checked, and only then its ending: cheaper than trying every ending at
# every character.
_KEY_ENDINGS = ("pass", "password", "passwd", "passphrase", "passcode", "pwd", "secret", "token", "key", "auth",
                "authorization", "credential", "credentials", "cookie", "string", "signature", "code", "codes",
                "pat", "data")
_ASSIGN_KEY = (
    r"(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z0-9_.\-]{1,96}+)(?=\\?[\"']?[ \t]*[:=])"
    r"(?:" + "|".join(f"(?<=(?i:{ending}))" for ending in _KEY_ENDINGS) + ")"
)

# An assignment read backward, on the reversed text: the separator, spaces, a quote, a
# backslash, then the key, which must end like a credential name (its reversed ending leads).
_REVERSED_KEY = re.compile(
    r"[:=][ \t]*[\"']?\\?(?=(?i:" + "|".join(re.escape(ending[::-1]) for ending in _KEY_ENDINGS) + r"))"
    r"([A-Za-z0-9_.\-]{1,97})"
)


def _key_starts(text: str) -> Iterator[int]:
    """Where an assignment's key can start (a superset of where one does): a run of at most 96
    key characters, ending like a credential name, before a separator. One scan of the
    reversed text for separators costs far less than trying the pattern at every word."""
    if ":" not in text and "=" not in text:
        return iter(())
    size = len(text)
    return reversed([size - key.end(1) for key in _REVERSED_KEY.finditer(text[::-1]) if key.end(1) - key.start(1) <= 96])


# A credential field: `db_password = "..."`, `apiKey: ...`, `"client_secret": "..."`. An unquoted
# value ends at whitespace, a quote, or `)}]<>`; at `,` or `;` only where code or prose follows
# (`{token:a.b,password:c}`, `x=1, then`), not inside a word (`Tr0ub;4dor,x9`). (Brackets still end
# it: plausibility refuses bracketed values as code, so `Tr0ub]4dor` keeps its tail; SECURITY.md.) A
# password may hold `&`, and a value cut there left its tail in clear, so `&` ends it only where
# a query parameter follows (`&user=`), or always in a URL query (the key right after `?` or `&`,
# where `#` ends it too). A value never starts with `&` (`token: &str` is Rust, not a token). A
# quoted value runs past escaped quotes (`"Tr0ub\\"4dor"`): it ends at its real closing quote.
ASSIGNMENT = ContextDetector(
    "assignment",
    re.compile(
        r"(?:(?<=[?&])(?P<query>))?"
        + _ASSIGN_KEY + r"\\?[\"']?(?P<sep>[ \t]*[:=][ \t]*)(?:\"((?:\\.|[^\"\\\s]){4,%d})\"|\\\"([^\"\s\\]{4,%d})\\\"|'((?:\\.|[^'\\\s]){4,%d})'"
        r"|`([^`\s]{4,%d})`|(?(query)([^\s&#\"'`<>]{4,%d})"
        r"|(?!&)(?P<bare>(?:[^\s\"'`,;)}\]<>&]|&(?![A-Za-z0-9_.\-]*=)"
        r"|[,;](?=[^\s\"'`<>:=(]{0,128}(?:[\s\"'`<>]|$))(?=[^\s\"'`<>:=(]{0,128}?[A-Za-z0-9])){4,%d})))"
        % ((_VALUE_MAX,) * 6)
    ),
    -1,
    _accept_assignment,
    generic=True,
    needs=("pass", "pwd", "secret", "token", "key", "auth", "credential", "cookie", "string", "signature", "code",
           "pat", "data"),
    starts=_key_starts,
)
