"""Credential-named keys (pure): does an object key say that its value is a credential?

A key is folded (NFKC, invisible characters dropped, look-alike letters mapped to Latin) and
split into lowercase words (separators, camelCase and digits split it). Trailing qualifiers
(`confirm`, `new`, `old`, `value`, `pem`, a number, ...) are set aside, and the key names a
credential when its LAST remaining words spell one of the credential names below:
`password`, `db_password`, `passwordConfirmation`, `password2`, `SecretAccessKey`,
`X-Api-Key`, `client_secret`, `github_token`, `Authorization`, `passwort` and `PGPASSWORD` do;
`password_hint`, `token_count`, `max_tokens`, `AccessKeyId` and `secret_name` do not.
Pagination and other non-credential tokens (`next_token`, `page_token`, `token_type`, ...)
are listed as exceptions.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

# Word sequences (joined by a space) that name a credential when they end a key.
_CREDENTIAL_NAMES = frozenset({
    "password", "passwords", "pass word", "passwd", "pwd", "passphrase", "pass phrase", "passcode", "secret",
    "secrets", "client secret", "client secrets", "app secret", "consumer secret", "api secret", "shared secret",
    "webhook secret", "signing secret", "secret key", "secret access key", "access key secret", "secret token",
    "token", "access token", "access tokens", "refresh token", "refresh tokens", "id token", "session token",
    "auth token", "auth tokens", "bearer token", "security token", "private token", "personal access token",
    "csrf token", "xsrf token", "api key", "api keys", "apikey", "apikeys", "api token", "api tokens", "x api key",
    "subscription key", "account key", "master key", "encryption key", "signing key", "private key",
    "private keys", "authorization", "proxy authorization", "auth", "basic auth", "credentials", "credential",
    "cookie", "set cookie", "session cookie", "connection string", "conn string", "client key data",
    "sas token", "shared access key", "shared access signature", "access key", "otp secret", "totp secret",
    "recovery code", "recovery codes", "pat", "db pass", "user pass", "admin pass", "root pass", "smtp pass",
    "mysql pass", "pg pass", "ftp pass", "mail pass", "redis pass", "proxy pass", "secret key base",
    # other languages
    "passwort", "kennwort", "contraseña", "contrasena", "clave", "mot de passe", "motdepasse", "senha",
    "parola", "wachtwoord", "lösenord", "losenord", "salasana", "hasło", "haslo", "heslo", "jelszó", "jelszo",
    "пароль", "密码", "密碼", "口令", "パスワード", "비밀번호", "şifre", "sifre", "סיסמה", "كلمة المرور",
})
# Keys that end like a credential name but name something else.
_NOT_CREDENTIALS = frozenset({
    "next token", "page token", "continuation token", "sync token", "pagination token", "cursor token",
    "next page token", "prev token", "previous token", "token type", "token uri", "token url",
    "token endpoint", "key data", "max token", "min token",
})
# Words after a credential name that still leave the value a credential (`password_confirm`).
_QUALIFIERS = frozenset({
    "confirm", "confirmation", "confirmed", "again", "repeat", "retype", "verify", "new", "old", "current",
    "previous", "prev", "value", "val", "raw", "plain", "plaintext", "clear", "pem", "b64", "base64", "text", "str",
    "string", "data", "bytes", "input", "field",
})
# A last word that glues a credential name to something else (`PGPASSWORD`, `dbpassword`).
_GLUED = ("password", "passwd", "passphrase", "secretkey", "apikey", "apitoken", "authtoken", "accesstoken")
# Latin look-alikes that a key could use to dodge the names above (Cyrillic and Greek).
_CONFUSABLES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "х": "x", "у": "y", "к": "k", "м": "m", "т": "t",
    "н": "h", "в": "b", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "α": "a", "ο": "o",
    "ρ": "p", "τ": "t", "κ": "k", "ν": "v", "ι": "i", "ε": "e",
})
_MAX_KEY_CHARS = 128
_LONGEST = max(name.count(" ") + 1 for name in _CREDENTIAL_NAMES)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])|([A-Z]+)([A-Z][a-z])")
_SPLIT = re.compile(r"[\W_]+|(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")

# Values that stand in for a credential rather than being one (compared case-insensitively):
# configuration words and auth-scheme names. "changeme" and "password" are NOT here: people
# really use them as passwords.
_STAND_INS = frozenset({
    "none", "null", "nil", "true", "false", "yes", "no", "on", "off", "enabled", "disabled", "required",
    "optional", "redacted", "hidden", "masked", "undefined", "n/a", "na", "tbd", "todo", "placeholder",
    "example", "dummy", "basic", "bearer", "digest", "oauth", "oauth2", "ntlm", "kerberos", "negotiate", "env",
    "file", "vault", "keyring", "keychain", "prompt", "default", "auto", "unset", "empty",
})
_MASK = re.compile(r"\A[*xX•·.#?_\-]+\Z")
# Only shapes that cannot carry a secret: an environment variable, or a template around a name.
# Templates wrap words (one case, no digits: `<your-token>`, `{{ API_KEY }}`), never random text.
_WORDS = r"(?:[a-z][a-z _.\-]{0,62}|[A-Z][A-Z _.\-]{0,62})"
_TEMPLATE = re.compile(
    r"\A(?:\$[A-Z_][A-Z0-9_]*|\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-[A-Za-z0-9_./ -]{0,64})?\}"
    rf"|<{_WORDS}>|\{{\{{\s*{_WORDS}\s*\}}\}}|%\([A-Za-z_][A-Za-z0-9_]*\)s"
    r"|\[secret!*:(?:vault|env|redacted):[A-Za-z0-9_]{1,128}\])\Z")


def _words(key: str, *, confusables: bool) -> list[str]:
    folded = unicodedata.normalize("NFKC", key[-_MAX_KEY_CHARS:])
    folded = "".join(c for c in folded if unicodedata.category(c) != "Cf")  # zero-width, soft hyphen
    if confusables:
        folded = folded.translate(_CONFUSABLES)
    spaced = _CAMEL.sub(lambda m: f"{m.group(1) or m.group(3)} {m.group(2) or m.group(4)}", folded)
    return [word.lower() for word in _SPLIT.split(spaced) if word]


def key_words(key: str) -> list[str]:
    """`X-Api-Key` -> [x, api, key]; `SecretAccessKey` -> [secret, access, key]."""
    return list(_key_words(key))


@lru_cache(maxsize=4096)
def _key_words(key: str) -> tuple[str, ...]:  # object keys repeat from value to value
    return tuple(_words(key, confusables=False))


def _names_credential(words: list[str]) -> bool | None:
    """True or False when the key's last words decide; None when they do not."""
    for length in range(min(len(words), _LONGEST), 0, -1):
        tail = " ".join(words[-length:])
        if tail in _NOT_CREDENTIALS:
            return False
        if tail in _CREDENTIAL_NAMES:
            return True
    return None


def _decide(words: list[str]) -> bool:
    while True:
        found = _names_credential(words)
        if found is not None:
            return found
        if len(words) > 1 and (words[-1] in _QUALIFIERS or words[-1].isdigit()):
            words = words[:-1]  # `password_confirm`, `api_key_2`: still the credential
            continue
        return bool(words) and words[-1].endswith(_GLUED)


@lru_cache(maxsize=4096)
def is_credential_key(key: str) -> bool:
    """True when the key's last words (qualifiers aside) name a credential, case-, separator-
    and look-alike-insensitively (only the last 128 characters are read)."""
    if key == "PWD":  # the shell's working directory, not a password
        return False
    return _decide(_words(key, confusables=False)) or _decide(_words(key, confusables=True))


def is_stand_in(value: str) -> bool:
    """An obvious placeholder rather than a credential: empty or blank, a mask (`****`,
    `xxxx`), an environment variable or a template around a name (`$TOKEN`, `${DB_PASSWORD}`,
    `<your-token>`, `{{ secret }}`), a reference marker, or a configuration word (`none`,
    `basic`, `keyring`, ...). Anything else under a credential-named key is a credential."""
    text = value.strip()
    return not text or bool(_MASK.match(text) or _TEMPLATE.match(text)) or text.lower() in _STAND_INS


def is_credential_container(key: str) -> bool:
    """`tokens` holding an object names its credentials (`{"tokens": {"github": ...}}`); a
    list under it is usually tokenizer output and is not."""
    return key_words(key)[-1:] == ["tokens"]


def is_bare_pass(key: str, siblings: Iterable[str]) -> bool:
    """`pass` is a password beside a user name (`{"user": "bob", "pass": ...}`)."""
    return key_words(key) == ["pass"] and any(key_words(s)[-1:] in (["user"], ["username"], ["login"])
                                             for s in siblings if s != key)
