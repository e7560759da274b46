import pytest

from shop.checkout.forms import normalise_phone, validate_checkout
from shop.checkout.kuwait import AREAS_BY_SLUG, GOVERNORATES

VALID = {
    "name": "Fatima Al-Sabah",
    "email": "fatima@example.com",
    "phone": "+965 5512 3456",
    "governorate": "hawalli",
    "area": "salmiya",
    "block": "10",
    "street": "Salem Al-Mubarak St",
    "avenue": "",
    "building": "12A",
    "floor": "3",
    "apartment": "",
    "notes": "Ring twice\nthen call",
}


def test_valid_form_gives_normalised_details() -> None:
    details, errors, _ = validate_checkout(VALID)
    assert errors == {}
    assert details is not None
    assert details.phone == "+96555123456"
    assert details.notes == "Ring twice\nthen call"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("55123456", "+96555123456"),
        ("+965 9912-3456", "+96599123456"),
        ("00965 6612 3456", "+96566123456"),
        ("٥٥١٢٣٤٥٦", "+96555123456"),
        ("2212 3456", None),  # a landline
        ("5512345", None),
        ("+971 55 123 4567", None),
        ("abc", None),
    ],
)
def test_kuwaiti_mobile_numbers(raw: str, expected: str | None) -> None:
    assert normalise_phone(raw) == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("phone", "12345"),
        ("governorate", "dubai"),
        ("area", "nowhere"),
        ("area", "jahra"),  # real area, other governorate
        ("block", "abc"),
        ("street", ""),
        ("building", ""),
        ("notes", "x" * 501),
    ],
)
def test_each_bad_field_is_reported_and_typed_values_are_kept(field: str, value: str) -> None:
    details, errors, values = validate_checkout({**VALID, field: value})
    assert details is None
    assert set(errors) == {field}
    assert values["name"] == VALID["name"] or field == "name"


def test_control_characters_are_stripped() -> None:
    details, errors, _ = validate_checkout({**VALID, "street": "Main\x00 St\x1b"})
    assert details is not None and details.street == "Main St"


def test_kuwait_reference_data_is_consistent() -> None:
    assert {g.slug for g in GOVERNORATES} == {
        "capital", "hawalli", "farwaniya", "mubarak-al-kabeer", "ahmadi", "jahra"
    }
    assert len(AREAS_BY_SLUG) == sum(len(g.areas) for g in GOVERNORATES)
    assert all(area.name_ar and area.name_en for g in GOVERNORATES for area in g.areas)
