import random
from decimal import Decimal

import pytest

from shop import money
from shop.money import _babel_kwd, fils_to_decimal, fils_to_str, format_kwd, parse_kwd


@pytest.mark.parametrize(
    ("fils", "text"), [(0, "0.000"), (5, "0.005"), (990, "0.990"), (10500, "10.500"), (1234567, "1234.567")]
)
def test_fils_to_str_is_exact(fils: int, text: str) -> None:
    assert fils_to_str(fils) == text
    assert parse_kwd(text) == fils
    assert fils_to_decimal(fils) == Decimal(text)


def test_no_float_drift_on_awkward_values() -> None:
    # 0.1 + 0.2 style drift would show here if floats were involved anywhere.
    assert fils_to_str(sum([100, 200])) == "0.300"
    assert str(fils_to_decimal(10499 + 1)) == "10.500"


@pytest.mark.parametrize("bad", ["", "abc", "1.2345", "-1", "1e3", "1,5", "12.5.0"])
def test_parse_kwd_rejects_what_is_not_an_amount(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_kwd(bad)


def test_display_in_english_and_arabic() -> None:
    assert format_kwd(12500, "en") == "KWD 12.500"
    assert format_kwd(1234500, "en") == "KWD 1,234.500"
    arabic = format_kwd(12500, "ar")
    assert "د.ك" in arabic and "12.500" in arabic


@pytest.mark.parametrize("language", ["en", "ar"])
def test_display_repeats_babel_for_every_amount(language: str) -> None:
    """Prices are formatted by the locale's pattern read once off Babel: the text must be Babel's
    own for any amount, negative, zero, small and past the billions."""
    rng = random.Random(7)
    amounts = [0, 1, 999, 1000, 1001, 999_999, 1_000_000, *(rng.randrange(-10**8, 10**12) for _ in range(3000))]
    for fils in amounts:
        assert format_kwd.__wrapped__(fils, language) == _babel_kwd(fils_to_decimal(fils), language), fils


def test_a_pattern_that_cannot_be_repeated_falls_back_to_babel(monkeypatch: pytest.MonkeyPatch) -> None:
    # A locale writing other digits (or grouping otherwise) is formatted by Babel every time.
    monkeypatch.setattr("shop.money._babel_kwd", lambda amount, locale: f"{amount}".translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")))
    money._kwd_shape.cache_clear()
    try:
        assert money._kwd_shape("ar") is None
        assert format_kwd.__wrapped__(12500, "ar") == "١٢.٥٠٠"
    finally:
        money._kwd_shape.cache_clear()
