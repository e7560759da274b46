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


def _babel_kwd(amount: Decimal, locale: str) -> str:
    if locale.startswith("ar"):
        return format_currency(amount, CURRENCY, locale="ar_KW")
    return format_currency(amount, CURRENCY, locale="en", format="¤ #,##0.000", currency_digits=False)


# Amounts that show every part of a locale's pattern: grouping (or not) at each length, zero.
_PROBES = (0, 5, 999, 1000, 1234, 12345, 123456, 999999, 1234567, 12345678, 123456789, 1234567891, 98765432109)
_SHAPE = re.compile(r"^(\D*)1(\D*)234(\D*)567(\D*)891(\D*)$")


@lru_cache(maxsize=None)
def _kwd_shape(locale: str) -> tuple[str, str, str, str, str, str] | None:
    """The locale's currency pattern read off Babel's own output: (prefix, suffix) for positive
    and negative amounts, the group and decimal separators. None when the pattern is not one
    this module can repeat (other digits, grouping other than by thousands): Babel is then
    used for every amount. Every probe amount must come out as Babel writes it."""
    positive = _SHAPE.match(_babel_kwd(fils_to_decimal(1234567891), locale))
    negative = _SHAPE.match(_babel_kwd(fils_to_decimal(-1234567891), locale))
    if positive is None or negative is None:
        return None
    prefix, group, _, decimal, suffix = positive.groups()
    shape = (prefix, suffix, negative[1], negative[5], group, decimal)
    if any(_shaped(fils, shape) != _babel_kwd(fils_to_decimal(fils), locale)
           for probe in _PROBES for fils in (probe, -probe)):
        return None
    return shape


def _shaped(fils: int, shape: tuple[str, str, str, str, str, str]) -> str:
    prefix, suffix, negative_prefix, negative_suffix, group, decimal = shape
    if fils < 0:
        prefix, suffix = negative_prefix, negative_suffix
    whole, part = divmod(abs(fils), FILS_PER_KWD)
    return f"{prefix}{whole:,}".replace(",", group) + f"{decimal}{part:03d}{suffix}"


# A product grid shows dozens of prices and a new grid is rendered after every catalogue change;
# Babel takes ~20 us an amount, its pattern repeated by hand under a microsecond.
@lru_cache(maxsize=8192)
def format_kwd(fils: int, locale: str = "en") -> str:
    """Display form: 'KWD 12.500' in English, the Arabic locale's own form in Arabic."""
    shape = _kwd_shape("ar" if locale.startswith("ar") else "en")
    return _shaped(fils, shape) if shape is not None else _babel_kwd(fils_to_decimal(fils), locale)
