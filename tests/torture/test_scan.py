"""The secrets scan can find what it looks for (a scan that finds nothing must mean nothing is there)."""
from torture.secrets_scan import card_numbers, luhn_valid


def test_card_numbers_are_found_by_luhn_and_the_sandbox_test_cards() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    text = "pan=4111111111111111 ref=1234567890123456 card 8888880000000002 id 41111111111111110"
    assert card_numbers(text) == ["8888880000000002", "4111111111111111"]
