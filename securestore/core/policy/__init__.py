"""Pure input policy: key normalization and encoding, prototype-key rejection, value caps."""

from .keys import (
    PROTOTYPE_KEYS,
    decode_plain_name,
    describe_key,
    encode_name,
    is_forbidden_key,
    is_hashed_name,
    is_session_name,
    name_matches_key,
    normalize_key,
)
from .limits import check_value, parse_json_text, render_path
from .checked import checked_key, session_name, slot_key

__all__ = [
    "PROTOTYPE_KEYS",
    "check_value",
    "checked_key",
    "decode_plain_name",
    "describe_key",
    "encode_name",
    "is_forbidden_key",
    "is_hashed_name",
    "is_session_name",
    "name_matches_key",
    "normalize_key",
    "parse_json_text",
    "render_path",
    "session_name",
    "slot_key",
]
