"""Audit key material (pure): the verification seed, ratcheting epoch keys, record MACs, and
Ed25519 signing keys in the Go `note` text formats (PRIVATE+KEY+name+id+data / name+id+data).

Key schedule (Schneier-Kelsey forward integrity, one chain per log):
  store log   chain_0 = HMAC(seed, "store-log" || store id || log id)
  session log chain_0 = HMAC(store-log chain of the epoch holding its create intent,
                             "session-log" || session name || intent seq)
  every log   chain_{e+1} = HMAC(chain_e, "ratchet");  mac key_e = HMAC(chain_e, "mac")
The writer keeps only the current chain key; the seed lives with the auditor.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import cached_property

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import RecordError

SEED_PREFIX = "securestore-audit-seed-v1"
_LABEL = b"securestore/audit/"
MAC_FIELD = b'"mac":"'
ZERO_MAC = b"0" * 64
_ED25519 = b"\x01"
_NAME = re.compile(r"^[A-Za-z0-9._\-/]{1,64}$")


def _derive(key: bytes, label: bytes, *parts: str | int) -> bytes:
    message = _LABEL + label + b"".join(b"\x00" + str(part).encode() for part in parts)
    return hmac.digest(key, message, "sha256")


def store_log_key(seed: bytes, store_id: str, log_id: str) -> bytes:
    return _derive(seed, b"store-log", store_id, log_id)


def session_log_key(chain: bytes, session: str, intent_seq: int) -> bytes:
    return _derive(chain, b"session-log", session, intent_seq)


def ratchet(chain: bytes) -> bytes:
    """One-way: the next epoch's chain key. The previous one must then be wiped."""
    return _derive(chain, b"ratchet")


def mac_key(chain: bytes) -> bytes:
    return _derive(chain, b"mac")


class RecordMac:
    """HMAC-SHA256 (RFC 2104) of a canonical record line whose `mac` value is 64 zeros. The
    keyed inner and outer hash states are computed once per epoch and copied per record."""

    def __init__(self, key: bytes) -> None:
        block = key.ljust(64, b"\x00")  # keys here are 32 bytes, below the block size
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block) + _LABEL + b"record\x00")
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def of_blank(self, blank_line: bytes) -> str:
        inner = self._inner.copy()
        inner.update(blank_line)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def check(self, line: bytes) -> bool:
        """True if the line's `mac` field is the MAC of the line (without newline)."""
        at = line.find(MAC_FIELD)
        if at < 0:
            return False
        start = at + len(MAC_FIELD)
        view = memoryview(line)
        inner = self._inner.copy()
        inner.update(view[:start])
        inner.update(ZERO_MAC)
        inner.update(view[start + 64 :])
        outer = self._outer.copy()
        outer.update(inner.digest())
        return hmac.compare_digest(line[start : start + 64], outer.hexdigest().encode())


@dataclass(frozen=True)
class EpochRule:
    """When a log ratchets: before the record that would be the (records+1)-th of an epoch, or
    the first one written `seconds` or more after the epoch's first record."""

    records: int
    seconds: int

    def due(self, count_in_epoch: int, ts: int, epoch_start_ts: int) -> bool:
        return count_in_epoch >= self.records or ts - epoch_start_ts >= self.seconds * 1000


# -- the verification seed ---------------------------------------------------------------------

def encode_seed(store_id: str, seed: bytes) -> bytes:
    return f"{SEED_PREFIX} {store_id} {seed.hex()}\n".encode()


def parse_seed(text: bytes) -> tuple[str, bytes]:
    """(store id, seed) from a seed file; the value is never echoed in errors."""
    parts = text.decode("ascii", errors="replace").split()
    if len(parts) != 3 or parts[0] != SEED_PREFIX or not re.fullmatch(r"[0-9a-f]{32}", parts[1]) \
            or not re.fullmatch(r"[0-9a-f]{64}", parts[2]):
        raise ValueError(f"not a securestore audit seed (expected '{SEED_PREFIX} <store id> <64 hex>')")
    return parts[1], bytes.fromhex(parts[2])


# -- Ed25519 signing keys, Go note formats -------------------------------------------------------

def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


_KNOWN_SIGNATURES = 64  # per key: a writer re-checks its own latest checkpoint at every seal


@dataclass(frozen=True)
class VerifierKey:
    name: str
    public: bytes

    @cached_property
    def id(self) -> bytes:
        return key_id(self.name, self.public)

    def text(self) -> str:
        data = base64.b64encode(_ED25519 + self.public).decode()
        return f"{self.name}+{self.id.hex()}+{data}"

    @cached_property
    def _key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public)

    @cached_property
    def _known(self) -> dict[tuple[bytes, bytes], None]:
        """(signature, message) pairs this process signed or already checked, newest last."""
        return {}

    def verify(self, signature: bytes, message: bytes) -> bool:
        if (signature, message) in self._known:  # the exact bytes were valid once: they still are
            return True
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False  # only valid pairs are remembered
        self.remember(signature, message)
        return True

    def remember(self, signature: bytes, message: bytes) -> None:
        """A valid signature (made here, or checked): the next check of these bytes is free."""
        known = self._known
        known[(signature, message)] = None
        try:
            while len(known) > _KNOWN_SIGNATURES:
                del known[next(iter(known))]
        except (RuntimeError, KeyError, StopIteration):  # another thread trimmed it meanwhile
            pass


@dataclass(frozen=True)
class SignerKey:
    name: str
    private: bytes  # the 32-byte Ed25519 seed

    @cached_property  # derived once: every seal and every head commit checks against it
    def verifier(self) -> VerifierKey:
        public = self._key.public_key().public_bytes_raw()
        return VerifierKey(self.name, public)

    @cached_property
    def _key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.private)

    def sign(self, message: bytes) -> bytes:
        signature = self._key.sign(message)
        self.verifier.remember(signature, message)
        return signature

    def text(self) -> str:
        verifier = self.verifier
        data = base64.b64encode(_ED25519 + self.private).decode()
        return f"PRIVATE+KEY+{self.name}+{verifier.id.hex()}+{data}"


def _key_parts(text: str, what: str) -> tuple[str, bytes, bytes]:
    parts = text.strip().split("+", 2)  # base64 may itself contain "+"
    if len(parts) != 3 or not _NAME.match(parts[0]) or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise RecordError("key", f"not an audit {what} key (expected name+id+base64)")
    try:
        data = base64.b64decode(parts[2], validate=True)
    except ValueError:
        raise RecordError("key", f"the audit {what} key is not valid base64") from None
    if len(data) != 33 or data[:1] != _ED25519:
        raise RecordError("key", f"the audit {what} key is not an Ed25519 key")
    return parts[0], bytes.fromhex(parts[1]), data[1:]


def parse_verifier_key(text: str) -> VerifierKey:
    name, claimed_id, public = _key_parts(text, "public")
    key = VerifierKey(name, public)
    if key.id != claimed_id:
        raise RecordError("key", "the audit public key's id does not match its name and key")
    return key


def parse_signer_key(text: str) -> SignerKey:
    if not text.startswith("PRIVATE+KEY+"):
        raise RecordError("key", "not an audit signing key (expected PRIVATE+KEY+name+id+base64)")
    name, claimed_id, private = _key_parts(text.removeprefix("PRIVATE+KEY+"), "signing")
    key = SignerKey(name, private)
    if key.verifier.id != claimed_id:
        raise RecordError("key", "the audit signing key's id does not match its name and key")
    return key


def new_signer_key(name: str, random32: bytes) -> SignerKey:
    if not _NAME.match(name):
        raise ValueError("a signing key name is 1-64 of A-Z a-z 0-9 . _ - /")
    return SignerKey(name, random32)
