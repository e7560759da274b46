from decimal import Decimal

import pytest

from shop.money import fils_to_decimal, fils_to_str, format_kwd, parse_kwd


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
