"""Credential detectors (pure). Each finds the secret part of a string; the rest is kept.

Formats are anchored on vendor prefixes where they exist (few false positives); the facts
(prefixes, lengths, alphabets) follow the public gitleaks and trufflehog rule sets. Context
rules (`password=`-style assignments, `password is ...`, netrc, URLs with a password) use a
plausibility check so that source code such as `password = getpass()` or
`token=request.headers.get(...)` is not flagged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .credential_keys import is_credential_key, key_words

_END = r"(?![A-Za-z0-9_\-])"


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    kind: str
    generic: bool = False


# Vendor formats, (kind, pattern). Every pattern starts with a literal character (a left
# boundary, where one is needed, is a look-behind placed AFTER that literal): all of them are
# compiled into ONE alternation, and the regex engine then tries only the positions whose
# character can start a rule and rejects most rules on their first character (one pass over
# the text instead of one per format; see tools/detector_report.py --timing). A named group
# `secret` narrows the finding to part of the match (`AccountKey=<secret>`).
_VENDOR_RULES: tuple[tuple[str, str], ...] = (
    (
        "pem-private-key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    ),
    # Distinctive vendor prefixes need no boundary: a key glued to other text is still a key, and
    # the body is open-ended (`{36,}`) so that glued characters are redacted with it, never left
    # out of a match that then fails.
    ("aws-access-key-id", r"A(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{16}"),
    ("github-token", r"gh[pousr]_[A-Za-z0-9]{36,255}"),
    ("github-pat", r"github_pat_[A-Za-z0-9_]{22,255}"),
    ("anthropic-key", r"sk-ant-[a-z]{2,10}\d{0,3}-[A-Za-z0-9_\-]{32,}"),
    ("openrouter-key", r"sk-or-v1-[a-f0-9]{64}"),
    # The bare `sk-` form keeps its boundary: "desk-organizer-2024-edition" is not a key. It comes
    # before the other OpenAI forms: at one position the first rule that matches sets the extent.
    ("openai-key", r"sk-(?<![A-Za-z0-9_\-]sk-)(?!ant-)[A-Za-z0-9_\-]{20,}" + _END),
    ("openai-key", r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}"),
    ("openai-key", r"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}"),
    ("slack-token", r"xox[abposr]-[0-9]{6,}-[0-9A-Za-z\-]{8,}"),
    ("slack-app-token", r"xapp-\d-[A-Z0-9]+-\d+-[a-f0-9]+"),
    ("slack-webhook", r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_/\-]{20,}"),
    ("discord-webhook", r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/[A-Za-z0-9_\-]{60,80}"),
    ("google-api-key", r"AIza[0-9A-Za-z_\-]{35}"),
    ("google-oauth-client-secret", r"GOCSPX-[A-Za-z0-9_\-]{28,}"),
    ("stripe-key", r"sk_(?:live|test)_[0-9A-Za-z]{16,}"),
    ("stripe-key", r"rk_(?:live|test)_[0-9A-Za-z]{16,}"),
    ("stripe-webhook-secret", r"whsec_[A-Za-z0-9]{24,}"),
    ("jwt", r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
    ("npm-token", r"npm_[A-Za-z0-9]{36,}"),
    ("pypi-token", r"pypi-AgE[A-Za-z0-9_\-]{50,}"),  # a macaroon: "AgE" starts its base64
    (
        "gitlab-token",
        r"gl(?:pat|oas|dt|rt|rtr|cbt|ptt|ft|imt|agent|soat|ffct)-[A-Za-z0-9_\-]{20,}(?:\.[0-9a-z]{2,12}){0,2}",
    ),
    ("gitlab-token", r"GR1348941[A-Za-z0-9_\-]{20,}"),  # runner registration token
    ("huggingface-token", r"hf_[A-Za-z0-9]{34,}"),
    ("huggingface-token", r"api_org_[A-Za-z0-9]{34,}"),
    ("sendgrid-key", r"SG\.[A-Za-z0-9_\-]{20,24}\.[A-Za-z0-9_\-]{39,}"),
    ("vault-token", r"hv[sbr]\.[A-Za-z0-9_\-]{24,}(?:\.[A-Za-z0-9_\-]+)*"),
    # `vault operator init` and dev-mode banners: "Unseal Key 1: <base64>".
    ("vault-unseal-key", r"Unseal Key(?: \d{1,2})?: (?P<secret>[A-Za-z0-9+/]{40,}={0,2})"),
    ("vault-unseal-key", r"Recovery Key(?: \d{1,2})?: (?P<secret>[A-Za-z0-9+/]{40,}={0,2})"),
    ("digitalocean-token", r"do[opr]_v1_[a-f0-9]{64}"),
    ("azure-storage-key", r"AccountKey=(?P<secret>[A-Za-z0-9+/]{20,}={0,2})"),
    ("azure-storage-key", r"SharedAccessKey=(?P<secret>[A-Za-z0-9+/]{20,}={0,2})"),
    # The signature of a SAS URL or `SharedAccessSignature=...&sig=...` grants access by itself.
    ("sas-signature", r"sig=(?<=[?&;]sig=)(?P<secret>[A-Za-z0-9%+/_\-]{16,}={0,2})"),
    ("shopify-token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("age-secret-key", r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"),
    ("databricks-token", r"dapi[a-f0-9]{32}(?:-\d)?"),
    ("doppler-token", r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,}"),
    ("linear-api-key", r"lin_api_[A-Za-z0-9]{40}"),
    ("postman-api-key", r"PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}"),
    ("grafana-token", r"glc_[A-Za-z0-9+/]{32,}={0,3}"),
    ("grafana-token", r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}"),
    ("sentry-token", r"sntryu_[a-f0-9]{64}"),
    ("sentry-token", r"sntrys_eyJ[A-Za-z0-9+/=_]{40,}"),
    ("pulumi-token", r"pul-[a-f0-9]{40}"),
    ("rubygems-token", r"rubygems_[a-f0-9]{48}"),
    ("planetscale-token", r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_=.\-]{32,64}"),
    ("notion-token", r"ntn_[0-9]{11}[A-Za-z0-9]{35}"),
    ("groq-key", r"gsk_[A-Za-z0-9]{52}"),
    ("xai-key", r"xai-[A-Za-z0-9_]{80}"),
    # `r8_` is short: the body must hold a capital or a digit (`ar8_some_long_snake_case_name` does not).
    ("replicate-token", r"r8_(?=[a-z_\-]*[A-Z0-9])[A-Za-z0-9_\-]{37,}"),
    ("langsmith-key", r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}"),
    ("perplexity-key", r"pplx-[A-Za-z0-9]{48}"),
    ("pinecone-key", r"pcsk_[A-Za-z0-9]{5,6}_[A-Za-z0-9]{63}"),
    ("onepassword-token", r"ops_eyJ[A-Za-z0-9+/]{250,}={0,3}"),
    ("heroku-key", r"HRKU-AA[0-9a-zA-Z_\-]{58}"),
)


def _compile_vendor_rules() -> tuple[re.Pattern[str], dict[str, tuple[str, str | None]]]:
    """One alternation; an empty marker group `v<i>` closes each rule, so `lastgroup` names it."""
    parts: list[str] = []
    rules: dict[str, tuple[str, str | None]] = {}
    for index, (kind, pattern) in enumerate(_VENDOR_RULES):
        if not re.match(r"[A-Za-z0-9_\-]", pattern):  # a programming error, caught at import
            raise ValueError(f"vendor rule {kind} must start with a literal character to keep one fast pass")
        secret = f"s{index}" if "(?P<secret>" in pattern else None
        if secret is not None:
            pattern = pattern.replace("(?P<secret>", f"(?P<{secret}>")
        parts.append(f"{pattern}(?P<v{index}>)")
        rules[f"v{index}"] = (kind, secret)
    return re.compile("|".join(parts)), rules


_VENDOR, _VENDOR_BY_MARKER = _compile_vendor_rules()


# --- plausibility of a context-only value ---------------------------------------------------

_PLACEHOLDER = re.compile(
    r"""\A(?:
        [*\u2022\u25cf]+ | x{3,} | X{3,} | \.{3,} | -+ | _+ |
        <[^>]*>? | \$.* | %.* | \{\{.* | \[secret.* |
        (?i:password|secret|token|null|none|nil|true|false|
            undefined|redacted|hidden|masked|example|dummy|placeholder|data\+omitted|your[_\-].*|my[_\-].*|xxx.*)
    )\Z""",
    re.VERBOSE,
)
# A template reference where a URL or netrc password would be: `${DB_PASSWORD}`, `{{ pw }}`, `%s`.
_TEMPLATE = re.compile(r"\A(?:\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\{\{.*\}\}|\{[A-Za-z_]*\}|%\(?[A-Za-z_]*\)?s|\*+|x{3,}|X{3,})\Z")
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
_FILLER = re.compile(r"([xX*0\u2022])\1{7,}|EXAMPLE")
# Mixed-case letters that split into words and acronyms (`SecretStr`, `APIKey`, `getAuthToken`,
# `Option`) are identifiers; random mixed case (`qWfTzkLp...`) does not split that way.
_IDENTIFIER_CASE = re.compile(r"(?:[A-Z]+(?![a-z])|[A-Z]?[a-z]{2,})+")
# A bare letters-only value that names a credential is a variable: `password = passwd`.
_CREDENTIAL_STEM = re.compile(r"(?i)pass|pwd|secret|token|key|auth|cred")
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


def _strip_punctuation(value: str) -> str:
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


def _plausible_value(value: str, *, letters_ok: bool) -> bool:
    """Is the right-hand side of `password=...` a literal secret rather than code or a template?"""
    value = _strip_punctuation(value)
    if len(value) < 4 or _PLACEHOLDER.match(value) or _is_path(value) or _URL.match(value):
        return False
    if _FILLER.search(value):
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


def _credential_key(key: str) -> bool:
    if is_credential_key(key):
        return True
    words = key_words(key)
    return bool(words) and bool(_GLUED_CREDENTIAL.search(words[-1])) and len(key) <= 128


def _accept_assignment(match: re.Match[str], value: str) -> bool:
    key = match.group("key")
    if not _credential_key(key):
        return False
    if not _strip_punctuation(value).isalpha():
        return _plausible_value(value, letters_ok=False)
    if key_words(key)[-1] not in _PASSPHRASE_KEY_WORDS:
        return False
    if match.group("bare") is not None and not _bare_word_is_a_value(match, value):
        return False
    return _plausible_value(value, letters_ok=True)


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


def _accept_phrase(match: re.Match[str], value: str) -> bool:
    return _plausible_value(value, letters_ok=False)  # "Your password is incorrect." stays clean


def _accept_aws_secret(match: re.Match[str], value: str) -> bool:
    return not _FILLER.search(value)


def _accept_reference(match: re.Match[str], value: str) -> bool:
    return not _TEMPLATE.match(value)


def _accept_netrc(match: re.Match[str], value: str) -> bool:
    return not (_TEMPLATE.match(value) or _PLACEHOLDER.match(value))


@dataclass(frozen=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    group: int = 0  # -1: the first group that matched, other than `key` and `sep`
    accept: Callable[[re.Match[str], str], bool] | None = None
    generic: bool = False  # context rules yield to vendor formats found at the same place
    # An ASCII text can only match if its lowercase form contains one of these: the pass is skipped
    # otherwise (most strings name no credential at all).
    needs: tuple[str, ...] = ()


_VALUE_MAX = 16384  # session tokens, kubeconfig `client-key-data` (a base64 PEM) are long
# Key endings that can name a credential (a superset: credential_keys decides). The key is taken
# whole, the separator checked, and only then its ending: cheaper than trying every ending at
# every character.
_KEY_ENDINGS = ("pass", "password", "passwd", "passphrase", "passcode", "pwd", "secret", "token", "key", "auth",
                "authorization", "credential", "credentials", "cookie", "string", "signature", "code", "codes",
                "pat", "data")
_ASSIGN_KEY = (
    r"(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z0-9_.\-]{1,96})(?=\\?[\"']?[ \t]*[:=])"
    r"(?:" + "|".join(f"(?<=(?i:{ending}))" for ending in _KEY_ENDINGS) + ")"
)

# Context detectors, one pass each. The key of an assignment is checked by word
# (credential_keys.is_credential_key): `db_password`, `SecretAccessKey`, `X-Api-Key`, `auth` and
# `client-key-data` are credentials; `next_token`, `token_count` and `private_key_id` are not.
_CONTEXT_DETECTORS: tuple[_Detector, ...] = (
    # Named (`aws_secret_access_key = ...`), or right after its key id, as in the IAM credentials
    # CSV (`AKIA...,<secret>`) and `aws configure` style listings.
    _Detector(
        "aws-secret-access-key",
        re.compile(
            r"(?i:aws_?secret_?(?:access_?)?key)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
            r"|A(?:KIA|SIA)[A-Z0-9]{16}[\s,;:|\"'=]{1,8}([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
        -1,
        _accept_aws_secret,
        needs=("aws", "akia", "asia"),
    ),
    _Detector(
        "authorization-header",
        re.compile(r"(?i)\bauthorization[\"']?\s*[:=]\s*[\"']?\s*(?:bearer|basic|token|bot|digest)\s+([A-Za-z0-9\-._~+/]{8,}=*)"),
        1,
        generic=True,
        needs=("authorization",),
    ),
    _Detector(
        "bearer-token", re.compile(r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{20,}=*)"), 1, generic=True, needs=("bearer",)
    ),
    # Connection strings and URLs: scheme://user:password@host. The user may be empty
    # (`redis://:pw@host`); the password runs to the LAST `@` (`p@ss` unencoded is still a password).
    _Detector(
        "url-credentials",
        re.compile(r"://(?<=[A-Za-z0-9+.\-]://)[^\s:/@\"'<>]{0,128}:([^\s/\"'<>]{1,256})@"),
        1,
        _accept_reference,
        needs=("://",),
    ),
    # ~/.netrc: `machine host login user password pw`, on one line or several.
    _Detector(
        "netrc-password",
        re.compile(
            r"machine(?<![A-Za-z0-9_\-]machine)\s+(?:[A-Za-z0-9\-]+\.[A-Za-z0-9.\-]+|localhost)"
            r"(?:\s+(?:login|account|port)\s+\S+){0,3}\s+password\s+(\S+)"
        ),
        1,
        _accept_netrc,
        generic=True,
        needs=("machine",),
    ),
    _Detector(
        "assignment",
        re.compile(
            _ASSIGN_KEY + r"\\?[\"']?(?P<sep>[ \t]*[:=][ \t]*)(?:\"([^\"\s]{4,%d})\"|\\\"([^\"\s\\]{4,%d})\\\"|'([^'\s]{4,%d})'"
            r"|`([^`\s]{4,%d})`|(?P<bare>[^\s\"'`,;&)}\]<>]{4,%d}))" % ((_VALUE_MAX,) * 5)
        ),
        -1,
        _accept_assignment,
        generic=True,
        needs=("pass", "pwd", "secret", "token", "key", "auth", "credential", "cookie", "string", "signature", "code",
               "pat", "data"),
    ),
    _Detector(
        "password-phrase",
        re.compile(r"(?i)\b(?:password|passcode|passphrase)\s+(?:is|was|=)\s*:?\s*[\"']?([^\s\"']{6,128})"),
        1,
        _accept_phrase,
        generic=True,
        needs=("pass",),
    ),
)


def _unique(kinds: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(kinds))


DETECTOR_KINDS: tuple[str, ...] = _unique([kind for kind, _ in _VENDOR_RULES] + [d.kind for d in _CONTEXT_DETECTORS])


def _span(detector: _Detector, match: re.Match[str]) -> tuple[int, int] | None:
    if detector.group >= 0:
        return match.span(detector.group)
    context = {match.re.groupindex.get("key"), match.re.groupindex.get("sep")}
    for index in range(1, (match.re.groups or 0) + 1):  # the first value alternative that matched
        if index not in context and match.group(index) is not None:
            return match.span(index)
    return None


_MAX_NESTED = 8


def _vendor_findings(text: str) -> list[Finding]:
    """Vendor tokens, overlapping: a token glued inside another match (`whsec_...gho_...`) that
    runs past its end is found too (finditer would resume after the first match)."""
    found: list[Finding] = []
    covered_to = nested = 0
    match = _VENDOR.search(text)
    while match is not None:
        kind, secret = _VENDOR_BY_MARKER[match.lastgroup or ""]
        start, end = match.span(secret) if secret is not None else match.span()
        if kind == "pem-private-key" or not _FILLER.search(text, start, end):
            found.append(Finding(start, end, kind))  # else a placeholder from documentation, not a key
        nested = nested + 1 if match.end() <= covered_to else 0
        covered_to = max(covered_to, match.end())
        # Matches nested in one span add nothing; after many, skip to its end so that a long run of
        # them (`sk-ant-aa-sk-ant-aa-...`, hostile input) costs linear, not quadratic, time. Only a
        # token glued after more than _MAX_NESTED nested ones and running past the span is missed.
        match = _VENDOR.search(text, match.start() + 1 if nested < _MAX_NESTED else covered_to)
    return found


def find_secrets(text: str) -> list[Finding]:
    """Non-overlapping spans to redact, in order.

    Overlapping findings are merged into one span (a secret partly covered by another match is
    still redacted whole). One exception: where a vendor format and a generic rule start at the
    same place, the vendor format defines the extent (`x-access-token:ghp_...@host` keeps @host).
    """
    found = _vendor_findings(text)
    # ASCII only: there `lower()` and the patterns' case-insensitive matching agree exactly.
    lowered = text.lower() if text.isascii() else None
    for detector in _CONTEXT_DETECTORS:
        if lowered is not None and detector.needs and not any(word in lowered for word in detector.needs):
            continue
        for match in detector.pattern.finditer(text):
            span = _span(detector, match)
            if span is None or span[0] == span[1]:
                continue
            if detector.accept is not None and not detector.accept(match, text[span[0] : span[1]]):
                continue
            found.append(Finding(span[0], span[1], detector.kind, detector.generic))
    found.sort(key=lambda f: (f.start, f.generic, -(f.end - f.start)))
    kept: list[Finding] = []
    for finding in found:
        if kept and finding.generic and not kept[-1].generic and kept[-1].start == finding.start:
            continue
        if kept and finding.start < kept[-1].end:
            last = kept[-1]
            kept[-1] = Finding(last.start, max(last.end, finding.end), last.kind, last.generic)
            continue
        kept.append(finding)
    return kept


def contains_secret(text: str) -> bool:
    return bool(find_secrets(text))


def scrub_text(text: str) -> str:
    """Replace detected secrets by a fixed mask. For messages and logs, not for stored data."""
    findings = find_secrets(text)
    for finding in reversed(findings):
        text = text[: finding.start] + f"[secret:{finding.kind}]" + text[finding.end :]
    return text
