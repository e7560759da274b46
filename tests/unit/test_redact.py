"""What is stored of provider payloads and audit rows: no secrets, no card numbers, receipts intact."""
from shop.payments.redact import redact


def test_secrets_are_blanked_by_key_name_at_any_depth() -> None:
    payload = {"source": {"pin": "1234", "card_number": "8888880000000001"}, "Authorization": "Bearer sk_x",
               "signature": "abc", "api_key": "k", "access_code": "a", "sha_request_phrase": "p",
               "hashstring": "h", "trandata": "e3f1", "list": [{"password": "p"}]}
    cleaned = redact(payload)
    assert cleaned["source"] == {"pin": "[redacted]", "card_number": "[redacted]"}
    for key in ["Authorization", "signature", "api_key", "access_code", "sha_request_phrase", "hashstring", "trandata"]:
        assert cleaned[key] == "[redacted]", key
    assert cleaned["list"] == [{"password": "[redacted]"}]


def test_card_like_digit_runs_are_masked_but_knet_ids_are_kept() -> None:
    cleaned = redact({"note": "paid with 8888880000000001 today", "knet_payment_id": "100201914315601265",
                      "fort_id": "149295435400084008", "description": "order 12345"})
    assert cleaned["note"] == "paid with 888888…0001 today"
    assert cleaned["knet_payment_id"] == "100201914315601265" and cleaned["fort_id"] == "149295435400084008"
    assert cleaned["description"] == "order 12345"


def test_innocent_keys_that_contain_secret_words_are_kept() -> None:
    cleaned = redact({"shipping": "Salmiya", "spinner": "x", "authorization_code": "B00775", "panel": "1"})
    assert cleaned == {"shipping": "Salmiya", "spinner": "x", "authorization_code": "B00775", "panel": "1"}
