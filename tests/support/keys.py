"""The fixed keys every test store uses: a master key, an audit signing key, the environment."""

from __future__ import annotations

import base64

from securestore.api.keys import SIGNING_KEY_ENV
from securestore.audit.keys import new_signer_key

MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
SIGNING = new_signer_key("test.audit", bytes(range(100, 132)))
SIGNING_KEY = SIGNING.text()
KEYS = {SIGNING_KEY_ENV: SIGNING_KEY}  # an environment holding only the audit signing key
