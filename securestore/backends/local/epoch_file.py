"""A log's epoch key file (`epoch.key`, 0600): the CURRENT chain key and where its epoch
started. The previous key is wiped at each ratchet, so whoever reads this file later cannot MAC
an earlier epoch."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from ...audit.keys import EpochRule
from ...core.canonical import canonical_bytes
from ...errors import IntegrityError


@dataclass(frozen=True)
class EpochState:
    """What the writer keeps: the current chain key and where its epoch started."""

    store: str
    log: str
    signer: str
    rule: EpochRule
    epoch: int
    chain: bytes
    first_seq: int
    start_ts: int

    def encode(self) -> bytes:
        return canonical_bytes({
            "v": 1, "store": self.store, "log": self.log, "signer": self.signer, "records": self.rule.records,
            "seconds": self.rule.seconds, "epoch": self.epoch, "chain": self.chain.hex(),
            "first_seq": self.first_seq, "start_ts": self.start_ts,
        }) + b"\n"

    @staticmethod
    def decode(data: bytes, label: str) -> EpochState:
        try:
            raw = orjson.loads(data)
            state = EpochState(
                raw["store"], raw["log"], raw["signer"], EpochRule(int(raw["records"]), int(raw["seconds"])),
                int(raw["epoch"]), bytes.fromhex(raw["chain"]), int(raw["first_seq"]), int(raw["start_ts"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise IntegrityError(f"{label} is not a valid epoch key file") from None
        if raw.get("v") != 1 or len(state.chain) != 32:
            raise IntegrityError(f"{label} is not a valid epoch key file")
        return state
