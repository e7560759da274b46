"""Kuwaiti IBANs: the KW layout and the ISO 13616 mod-97 check. Pure, no I/O."""
from __future__ import annotations

import re

# KW, 2 check digits, a 4-letter bank code, 22 account characters: 30 in all.
KW_IBAN = re.compile(r"^KW\d{2}[A-Z]{4}[A-Z0-9]{22}$")


def normalise_iban(text: str) -> str:
    """As people type it (spaces, lower case) to the stored form."""
    return "".join(text.split()).upper()


def mod97_ok(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to 10..35, remainder 1."""
    moved = iban[4:] + iban[:4]
    if not moved.isascii() or not moved.isalnum():
        return False
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def is_kuwaiti_iban(iban: str) -> bool:
    """A stored-form IBAN that is Kuwaiti by layout and whose check digits hold."""
    return bool(KW_IBAN.match(iban)) and mod97_ok(iban)
