"""Signature helpers shared by the adapters (and nothing else: no provider logic here)."""
from __future__ import annotations

import hashlib
import hmac


def hmac_sha256_hex(key: str | bytes, message: bytes) -> str:
    key_bytes = key.encode() if isinstance(key, str) else key
    return hmac.new(key_bytes, message, hashlib.sha256).hexdigest()


def same_text(expected: str, given: str | None) -> bool:
    """Constant-time comparison, case-insensitive for hex digests."""
    if not given:
        return False
    return hmac.compare_digest(expected.lower().encode(), given.strip().lower().encode())
