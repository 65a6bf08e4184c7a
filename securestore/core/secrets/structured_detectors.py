"""Secrets recognised by the structure around them (pure): AWS key pairs, HTTP Authorization and
Bearer headers, URLs and connection strings with a password, netrc entries, `password is ...`."""

from __future__ import annotations

import re

from .context_detector import ContextDetector
from .plausibility import FILLER, PLACEHOLDER, TEMPLATE, plausible_value


def _accept_phrase(match: re.Match[str], value: str) -> bool:
    return plausible_value(value, letters_ok=False)  # "Your password is incorrect." stays clean


def _accept_aws_secret(match: re.Match[str], value: str) -> bool:
    return not FILLER.search(value)


def _accept_reference(match: re.Match[str], value: str) -> bool:
    return not TEMPLATE.match(value)


def _accept_netrc(match: re.Match[str], value: str) -> bool:
    return not (TEMPLATE.match(value) or PLACEHOLDER.match(value))


# Named (`aws_secret_access_key = ...`), or right after its key id, as in the IAM credentials
# CSV (`AKIA...,<secret>`) and `aws configure` style listings.
AWS_SECRET_ACCESS_KEY = ContextDetector(
    "aws-secret-access-key",
    re.compile(
        r"(?i:aws_?secret_?(?:access_?)?key)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        r"|A(?:KIA|SIA)[A-Z0-9]{16}[\s,;:|\"'=]{1,8}([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
    ),
    -1,
    _accept_aws_secret,
    needs=("aws", "akia", "asia"),
)

AUTHORIZATION_HEADER = ContextDetector(
    "authorization-header",
    re.compile(r"(?i)\bauthorization[\"']?\s*[:=]\s*[\"']?\s*(?:bearer|basic|token|bot|digest)\s+([A-Za-z0-9\-._~+/]{8,}=*)"),
    1,
    generic=True,
    needs=("authorization",),
)

BEARER_TOKEN = ContextDetector(
    "bearer-token", re.compile(r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{20,}=*)"), 1, generic=True, needs=("bearer",)
)

# Connection strings and URLs: scheme://user:password@host. The user may be empty
# (`redis://:pw@host`); the password runs to the LAST `@` (`p@ss` unencoded is still a password).
URL_CREDENTIALS = ContextDetector(
    "url-credentials",
    re.compile(r"://(?<=[A-Za-z0-9+.\-]://)[^\s:/@\"'<>]{0,128}:([^\s/\"'<>]{1,256})@"),
    1,
    _accept_reference,
    needs=("://",),
)

# ~/.netrc: `machine host login user password pw`, on one line or several.
NETRC_PASSWORD = ContextDetector(
    "netrc-password",
    re.compile(
        r"machine(?<![A-Za-z0-9_\-]machine)\s+(?:[A-Za-z0-9\-]+\.[A-Za-z0-9.\-]+|localhost)"
        r"(?:\s+(?:login|account|port)\s+\S+){0,3}\s+password\s+(\S+)"
    ),
    1,
    _accept_netrc,
    generic=True,
    needs=("machine",),
)

PASSWORD_PHRASE = ContextDetector(
    "password-phrase",
    re.compile(r"(?i)\b(?:password|passcode|passphrase)\s+(?:is|was|=)\s*:?\s*[\"']?([^\s\"']{6,128})"),
    1,
    _accept_phrase,
    generic=True,
    needs=("pass",),
)
