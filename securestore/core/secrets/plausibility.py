"""Is a value found only by its context (`password=...`, netrc, a URL) a literal secret? (pure)

Source code such as `password = getpass()` or `token=request.headers.get(...)`, templates,
placeholders, paths, names and config words are not.
"""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(
    r"""\A(?:
        [*\u2022\u25cf]+ | x{3,} | X{3,} | \.{3,} | -+ | _+ |
        <[^>]*>? | \$.* | %.* | \{\{.* | \[secret.* |
        (?i:password|secret|token|null|none|nil|true|false|
            undefined|redacted|hidden|masked|example|dummy|placeholder|data\+omitted|your[_\-].*|my[_\-].*|xxx.*)
    )\Z""",
    re.VERBOSE,
)
# A template reference where a URL or netrc password would be: `${DB_PASSWORD}`, `{{ pw }}`, `%s`.
TEMPLATE = re.compile(r"\A(?:\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\{\{.*\}\}|\{[A-Za-z_]*\}|%\(?[A-Za-z_]*\)?s|\*+|x{3,}|X{3,})\Z")
# os.environ, cfg.db.password, session?.access_token, minified `A$.apiKey`
_DOTTED_NAME = re.compile(r"\A[A-Za-z_$][A-Za-z0-9_$]*(?:\??\.[A-Za-z_$][A-Za-z0-9_$]*)+\Z")
_KUBEADM_TOKEN = re.compile(r"\A[a-z0-9]{6}\.(?=[a-z]*[0-9])[a-z0-9]{16}\Z")  # dotted, yet a bootstrap token
_NOT_SECRET_SHAPE = re.compile(
    r"\A(?:#[0-9A-Fa-f]{3,8}"  # a colour: `Token: "#d8dee9"` in a theme
    r"|[0-9]+(?:\.[0-9]+)+"  # a version, an OID or an address: `SERVER_AUTH = '1.3.6.1.5.5.7.3.1'`
    r"|[^A-Za-z0-9]+)\Z"  # a mask or a separator: `":****"`
)
_PATH_PREFIX = re.compile(r"\A(?:~/|\./|\.\./|[A-Za-z]:\\)")
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_.@\-]{1,40}")
_NAME_LIKE = re.compile(r"[A-Za-z_:\-./=]+")  # `my_var`, `env:API_KEY`, `vault/prod-db`, `theme=dark`
_URL = re.compile(r"\A[A-Za-z][A-Za-z0-9+.\-]*://")  # a password inside one is url-credentials' job
# Documentation fillers inside a token-shaped value: `ghp_xxxxxxxxxxxx...`, `AKIA...EXAMPLE`.
FILLER = re.compile(r"([xX*0\u2022])\1{7,}|EXAMPLE")
# Mixed-case letters that split into words and acronyms (`SecretStr`, `APIKey`, `getAuthToken`,
# `Option`) are identifiers; random mixed case (`qWfTzkLp...`) does not split that way.
_IDENTIFIER_CASE = re.compile(r"(?:[A-Z]+(?![a-z])|[A-Z]?[a-z]{2,})+")
_CONFIG_WORDS = frozenset("""
    required optional none null nil true false yes no on off string str text bytes int integer bool
    boolean any object hidden masked prompt keyring keychain empty unset invalid incorrect expired
    wrong missing revoked valid set enabled disabled default auto env environment file stdin stdout
    secret secrets password passwords token tokens key keys value values sensitive redacted omitted
    blank generated random encrypted hashed salted plain plaintext basic bearer oauth digest ntlm
    kerberos ldap saml oidc sso local remote external internal vault managed provided supplied
    unknown protected unprotected rotated stored saved updated changed reset forgotten weak strong
    mismatch same different here given unavailable pending ignore ignored skip
    include omit inherit inherited disable enable never always read write public private
    void this self new function return await async typeof static const super
""".split())


def strip_punctuation(value: str) -> str:
    return value.rstrip(".,;:!?`')\"")  # "the password is incorrect.", `(password is x)`


def _is_path(value: str) -> bool:
    if _PATH_PREFIX.match(value):
        return True
    if not value.startswith("/"):
        return False
    # `/run/secrets/db`, `/etc/ssl/key.pem`; a base64 secret that happens to start with `/` has
    # long random segments, `+` or `=`, and is not a path.
    segments = value[1:].rstrip("/").split("/")
    return (len(segments) >= 2 or "." in value) and all(_PATH_SEGMENT.fullmatch(s) for s in segments)


def _passphrase_like(value: str) -> bool:
    """A letters-only value: a passphrase unless it is shaped like an identifier or a config word."""
    if value.isupper() or (not value.islower() and _IDENTIFIER_CASE.fullmatch(value)):
        return False
    return value.lower() not in _CONFIG_WORDS


def plausible_value(value: str, *, letters_ok: bool) -> bool:
    """Is the right-hand side of `password=...` a literal secret rather than code or a template?"""
    value = strip_punctuation(value)
    if len(value) < 4 or PLACEHOLDER.match(value) or _is_path(value) or _URL.match(value):
        return False
    if FILLER.search(value):
        return False
    if any(c in value for c in "()[]{}") or _NOT_SECRET_SHAPE.match(value):
        return False
    if _DOTTED_NAME.match(value) and not _KUBEADM_TOKEN.match(value):
        return False
    if value.isalpha():
        return letters_ok and _passphrase_like(value)
    # Identifiers and references ("my_var", "env:API_KEY", "vault/prod-db") without a digit
    # are names, not secrets: code and config mention them all the time.
    return not _NAME_LIKE.fullmatch(value)
