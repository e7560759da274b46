"""Money is an integer number of fils (1 KWD = 1000 fils); these are its only conversions."""
from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

from babel.numbers import format_currency

FILS_PER_KWD = 1000
CURRENCY = "KWD"
CURRENCY_NUMERIC = "414"
_KWD_TEXT = re.compile(r"^\s*(\d{1,9})(?:\.(\d{1,3}))?\s*$")


def fils_to_decimal(fils: int) -> Decimal:
    """Exact major-unit value: 10500 -> Decimal('10.500')."""
    return Decimal(fils).scaleb(-3).quantize(Decimal("0.001"))


def fils_to_str(fils: int) -> str:
    """Three-decimal string built from integers: 10500 -> '10.500'."""
    sign = "-" if fils < 0 else ""
    whole, part = divmod(abs(fils), FILS_PER_KWD)
    return f"{sign}{whole}.{part:03d}"


def parse_kwd(text: str) -> int:
    """'12.5' / '12.500' / '12' -> fils. Raises ValueError for anything else (no floats)."""
    match = _KWD_TEXT.match(text)
    if not match:
        raise ValueError("not a KWD amount with at most 3 decimals")
    whole, part = match.group(1), (match.group(2) or "").ljust(3, "0")
    return int(whole) * FILS_PER_KWD + int(part)


# Babel formatting costs ~40 µs a call and a product grid makes dozens: cache the (pure) result.
@lru_cache(maxsize=8192)
def format_kwd(fils: int, locale: str = "en") -> str:
    """Display form: 'KWD 12.500' in English, the Arabic locale's own form in Arabic."""
    amount = fils_to_decimal(fils)
    if locale.startswith("ar"):
        return format_currency(amount, CURRENCY, locale="ar_KW")
    return format_currency(amount, CURRENCY, locale="en", format="¤ #,##0.000", currency_digits=False)
