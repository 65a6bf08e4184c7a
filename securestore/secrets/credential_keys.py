"""Credential-named keys (pure): does an object key say that its value is a credential?

A key is split into lowercase words (separators, camelCase and digits split it), and it names
a credential when its LAST words spell one of the credential names below: `password`,
`db_password`, `adminPassword`, `SecretAccessKey`, `X-Api-Key`, `client_secret`,
`github_token` and `Authorization` do; `password_hint`, `token_count`, `max_tokens`,
`AccessKeyId` and `secret_name` do not. Pagination and non-credential tokens
(`next_token`, `page_token`, `token_type`, ...) are listed as exceptions.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Word sequences (joined by a space) that name a credential when they end a key.
_CREDENTIAL_NAMES = frozenset({
    "password", "passwd", "pwd", "passphrase", "passcode", "secret", "client secret", "app secret",
    "consumer secret", "api secret", "shared secret", "webhook secret", "signing secret", "secret key",
    "secret access key", "access key secret", "secret token", "token", "access token", "refresh token",
    "id token", "session token", "auth token", "bearer token", "security token", "private token",
    "personal access token", "csrf token", "xsrf token", "api key", "apikey", "api token", "x api key",
    "subscription key", "account key", "master key", "encryption key", "signing key", "private key",
    "authorization", "proxy authorization", "auth", "basic auth", "credentials", "credential", "cookie",
    "set cookie", "session cookie", "connection string", "conn string", "client key data",
    "sas token", "shared access key", "shared access signature", "access key", "otp secret", "totp secret",
    "recovery code", "recovery codes", "pat", "db pass", "user pass", "admin pass", "root pass", "smtp pass",
    "mysql pass", "pg pass", "ftp pass", "mail pass", "redis pass", "proxy pass", "secret key base",
})
# A last word that glues a credential name to something else (`PGPASSWORD`, `dbpassword`).
_GLUED = ("password", "passwd", "passphrase", "secretkey", "apikey", "apitoken", "authtoken", "accesstoken")
# Keys that end like a credential name but name something else.
_NOT_CREDENTIALS = frozenset({
    "next token", "page token", "continuation token", "sync token", "pagination token", "cursor token",
    "next page token", "prev token", "previous token", "token type", "token uri", "token url",
    "token endpoint", "key data", "max token", "min token",
})
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
_TEMPLATE = re.compile(r"\A(?:<[^<>]*>|\$\{[^{}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\{\{.*\}\}|%\([A-Za-z_]+\)s|\[secret.*)\Z", re.S)
_LONGEST = max(name.count(" ") + 1 for name in _CREDENTIAL_NAMES)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])|([A-Z]+)([A-Z][a-z])")
_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")


def key_words(key: str) -> list[str]:
    """`X-Api-Key` -> [x, api, key]; `SecretAccessKey` -> [secret, access, key]."""
    spaced = _CAMEL.sub(lambda m: f"{m.group(1) or m.group(3)} {m.group(2) or m.group(4)}", key)
    return [word.lower() for word in _SPLIT.split(spaced) if word]


@lru_cache(maxsize=4096)
def is_credential_key(key: str) -> bool:
    """True when the key's last words name a credential (case- and separator-insensitive)."""
    if len(key) > 128 or key == "PWD":  # PWD: the shell's working directory, not a password
        return False
    words = key_words(key)
    for length in range(min(len(words), _LONGEST), 0, -1):
        tail = " ".join(words[-length:])
        if tail in _NOT_CREDENTIALS:
            return False
        if tail in _CREDENTIAL_NAMES:
            return True
    return bool(words) and words[-1].endswith(_GLUED)


def is_stand_in(value: str) -> bool:
    """An obvious placeholder rather than a credential: empty or blank, a mask (`****`,
    `xxxx`), a template or variable reference (`<token>`, `${DB_PASSWORD}`, `{{ secret }}`,
    `$TOKEN`), an existing reference marker, or a configuration word (`none`, `basic`,
    `keyring`, ...). Anything else under a credential-named key is treated as a credential."""
    text = value.strip()
    return not text or bool(_MASK.match(text) or _TEMPLATE.match(text)) or text.lower() in _STAND_INS
