"""Credential detectors (pure). Each finds the secret part of a string; the rest is kept.

Formats are anchored on vendor prefixes where they exist (few false positives). Generic
`password=`-style assignments use a plausibility check so that source code such as
`password = getpass()` or `token=request.headers.get(...)` is not flagged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_END = r"(?![A-Za-z0-9_\-])"


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    kind: str
    generic: bool = False


@dataclass(frozen=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    group: int = 0
    accept: Callable[[str], bool] | None = None
    generic: bool = False  # context rules yield to vendor formats found at the same place


_PLACEHOLDER = re.compile(
    r"""\A(?:
        \*+ | x{3,} | X{3,} | \.{3,} | -+ | _+ |
        <[^>]*>? | \$.* | %.* | \{\{.* | \[secret.* |
        (?i:changeme|change_me|password|passw0rd|secret|token|null|none|nil|true|false|
            undefined|redacted|hidden|masked|example|dummy|placeholder|your[_\-].*|my[_\-].*|xxx.*)
    )\Z""",
    re.VERBOSE,
)
_DOTTED_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+\Z")
_PATHLIKE = re.compile(r"\A(?:/|~/|\./|\.\./|[A-Za-z]:\\)")


def _plausible_assignment(value: str) -> bool:
    """Is the right-hand side of `password=...` a literal secret rather than code or a template?"""
    value = value.rstrip(".,;:!?")  # sentence punctuation: "the password is incorrect."
    if len(value) < 4 or _PLACEHOLDER.match(value) or _PATHLIKE.match(value):
        return False
    if any(c in value for c in "()[]{}") or _DOTTED_NAME.match(value):
        return False
    # Identifiers and references ("my_var", "env:API_KEY", "vault/prod-db") without a digit
    # are names, not secrets: code and config mention them all the time.
    if re.fullmatch(r"[A-Za-z_:\-./]+", value):
        return False
    return True


_ASSIGN_KEY = (
    r"(?<![A-Za-z0-9])[A-Za-z0-9_.\-]*?"
    r"(?:password|passwd|passphrase|pwd|secret|api[_\-]?key|apikey|access[_\-]?key|private[_\-]?key"
    r"|auth[_\-]?token|access[_\-]?token|refresh[_\-]?token|client[_\-]?secret|session[_\-]?token|token)"
)

_DETECTORS: tuple[_Detector, ...] = (
    _Detector(
        "pem-private-key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)"
        ),
    ),
    # Distinctive vendor prefixes need no left boundary: a key glued to other text is still a key.
    _Detector("aws-access-key-id", re.compile(r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}")),
    _Detector(
        "aws-secret-access-key",
        re.compile(r"(?i)aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"),
        1,
    ),
    _Detector("github-token", re.compile(r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}")),
    _Detector("github-pat", re.compile(r"github_pat_[A-Za-z0-9_]{22,255}")),
    _Detector("anthropic-key", re.compile(r"sk-ant-[a-z]{2,10}\d{0,3}-[A-Za-z0-9_\-]{32,}")),
    _Detector("openai-key", re.compile(r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}")),
    _Detector("openai-key", re.compile(r"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}")),
    # The bare `sk-` form keeps its boundary: "desk-organizer-2024-edition" is not a key.
    _Detector("openai-key", re.compile(r"(?<![A-Za-z0-9_\-])sk-(?!ant-)[A-Za-z0-9_\-]{20,}" + _END)),
    _Detector("slack-token", re.compile(r"xox[abposr]-[0-9]{6,}-[0-9A-Za-z\-]{8,}")),
    _Detector("slack-app-token", re.compile(r"xapp-\d-[A-Z0-9]+-\d+-[a-f0-9]+")),
    _Detector(
        "slack-webhook",
        re.compile(r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_/\-]{20,}"),
    ),
    _Detector("google-api-key", re.compile(r"AIza[0-9A-Za-z_\-]{35}")),
    _Detector("stripe-key", re.compile(r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}")),
    _Detector("stripe-webhook-secret", re.compile(r"whsec_[A-Za-z0-9]{24,}")),
    _Detector(
        "jwt",
        re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
    ),
    _Detector(
        "authorization-header",
        re.compile(r"(?i)\bauthorization[\"']?\s*[:=]\s*[\"']?\s*(?:bearer|basic|token|bot|digest)\s+([A-Za-z0-9\-._~+/]{8,}=*)"),
        1,
        generic=True,
    ),
    _Detector("bearer-token", re.compile(r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{20,}=*)"), 1, generic=True),
    _Detector(
        "url-credentials",
        re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,15}://[^\s:/@\"'<>]{1,128}:([^\s@/\"'<>]{3,256})@"),
        1,
    ),
    _Detector(
        "assignment",
        re.compile(
            _ASSIGN_KEY
            + r"[\"']?[ \t]*[:=][ \t]*(?:\"([^\"\s]{4,256})\"|'([^'\s]{4,256})'|([^\s\"',;&)}\]<>]{4,256}))",
            re.IGNORECASE,
        ),
        -1,
        _plausible_assignment,
        generic=True,
    ),
    _Detector(
        "password-phrase",
        re.compile(r"(?i)\b(?:password|passcode|passphrase)\s+(?:is|was|=)\s*:?\s*[\"']?([^\s\"']{6,128})"),
        1,
        _plausible_assignment,
        generic=True,
    ),
)

DETECTOR_KINDS: tuple[str, ...] = tuple(d.kind for d in _DETECTORS)


def _span(detector: _Detector, match: re.Match[str]) -> tuple[int, int] | None:
    if detector.group >= 0:
        return match.span(detector.group)
    for index in range(1, (match.re.groups or 0) + 1):  # first alternative that matched
        if match.group(index) is not None:
            return match.span(index)
    return None


def find_secrets(text: str) -> list[Finding]:
    """Non-overlapping spans to redact, in order.

    Overlapping findings are merged into one span (a secret partly covered by another match is
    still redacted whole). One exception: where a vendor format and a generic rule start at the
    same place, the vendor format defines the extent (`x-access-token:ghp_...@host` keeps @host).
    """
    found: list[Finding] = []
    for detector in _DETECTORS:
        for match in detector.pattern.finditer(text):
            span = _span(detector, match)
            if span is None or span[0] == span[1]:
                continue
            if detector.accept is not None and not detector.accept(text[span[0] : span[1]]):
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
