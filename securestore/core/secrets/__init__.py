"""Secrets: typed secrets, credential detection, references, and the session vault."""

from .detect import DETECTOR_KINDS, Finding, contains_secret, find_secrets, scrub_text
from .markers import REFERENCE, marker, references_in
from .redact import SECRET_TYPES, Redaction, SecretSink, holds_secret, redact, resolve_value, unescape_value
from .types import Secret

__all__ = [
    "DETECTOR_KINDS",
    "REFERENCE",
    "SECRET_TYPES",
    "Finding",
    "Redaction",
    "Secret",
    "SecretSink",
    "contains_secret",
    "find_secrets",
    "marker",
    "holds_secret",
    "redact",
    "references_in",
    "resolve_value",
    "scrub_text",
    "unescape_value",
]
