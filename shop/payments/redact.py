"""What may be stored or logged of a provider payload: secrets and card data removed."""
from __future__ import annotations

import re
from typing import Any

# Whole words of a key name (`pin`, but not `shipping`); `authorization` alone is the HTTP header,
# while `authorization_code` is a receipt field customers see anyway.
SECRET_KEYS = re.compile(
    r"(secret|password|passwd|(^|_)pin($|_)|cvv|cvc|card_?number|(^|_)pan($|_)|signature|token_data|"
    r"^authorization$|api_?key|access_code|resource_?key|phrase|hash|trandata)",
    re.IGNORECASE,
)
# Runs of 12-19 digits look like card numbers; KNET ids of that length are named, not guessed.
CARD_LIKE = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
# Provider ids that are long digit runs by nature; anything else that long is masked.
SAFE_DIGIT_FIELDS = {
    "knet_payment_id", "knet_transaction_id", "bank_reference", "payment_id", "paymentid",
    "tranid", "tran_id", "ref", "trackid", "track_id", "transaction_id", "acquirer", "gateway",
    "fort_id", "third_party_transaction_number", "knet_ref_number", "authorization_id", "payment", "track",
}
REDACTED = "[redacted]"


def redact(value: Any, key: str = "") -> Any:
    """A copy of `value` safe to keep: secret-looking keys blanked, card-like digit runs masked."""
    if isinstance(value, dict):
        return {k: (REDACTED if SECRET_KEYS.search(str(k)) else redact(v, str(k))) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, key) for v in value]
    if isinstance(value, str) and key.lower() not in SAFE_DIGIT_FIELDS:
        return CARD_LIKE.sub(lambda m: m.group(0)[:6] + "…" + m.group(0)[-4:], value)
    return value
