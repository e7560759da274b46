"""The checkout form: customer details and a Kuwaiti delivery address, validated on the server."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Mapping

from shop.checkout.kuwait import AREAS_BY_SLUG, GOVERNORATES_BY_SLUG, area_in_governorate
from shop.i18n import gettext as _

FIELDS = (
    "name", "email", "phone", "governorate", "area", "block", "street", "avenue", "building",
    "floor", "apartment", "notes",
)
# Kuwaiti mobile numbers: 8 digits starting 4, 5, 6 or 9 after the +965 country code.
_MOBILE = re.compile(r"^(?:\+?965|00965)?([4569]\d{7})$")
_EMAIL = re.compile(r"^[^@\s<>\"']{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩", "0123456789")
LIMITS = {
    "name": 100, "email": 254, "phone": 20, "block": 10, "street": 100, "avenue": 50,
    "building": 20, "floor": 10, "apartment": 20, "notes": 500,
}
REQUIRED = ("name", "email", "phone", "governorate", "area", "block", "street", "building")


@dataclass(frozen=True, slots=True)
class CheckoutDetails:
    name: str
    email: str
    phone: str  # +965XXXXXXXX
    governorate: str  # slugs from shop.checkout.kuwait
    area: str
    block: str
    street: str
    avenue: str
    building: str
    floor: str
    apartment: str
    notes: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def normalise_phone(raw: str) -> str | None:
    compact = re.sub(r"[\s\-()]", "", raw.translate(_DIGITS))
    match = _MOBILE.match(compact)
    return f"+965{match.group(1)}" if match else None


def clean(raw: str | None) -> str:
    """Trim, drop control characters, fold runs of spaces (notes keep their line breaks)."""
    text = _CONTROL.sub("", raw or "")
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines()).strip()


def validate_checkout(form: Mapping[str, str]) -> tuple[CheckoutDetails | None, dict[str, str], dict[str, str]]:
    """(details or None, field -> error message, cleaned values to show again in the form)."""
    values = {name: clean(form.get(name)) for name in FIELDS}
    for name in FIELDS:
        if name != "notes":
            values[name] = values[name].replace("\n", " ")
    errors: dict[str, str] = {}
    for name in REQUIRED:
        if not values[name]:
            errors[name] = _("This field is required.")
    for name, limit in LIMITS.items():
        if name not in errors and len(values[name]) > limit:
            errors[name] = _("Please use at most %(limit)s characters.", limit=limit)
    if "name" not in errors and len(values["name"]) < 2:
        errors["name"] = _("Please enter your full name.")
    if "email" not in errors and not _EMAIL.match(values["email"]):
        errors["email"] = _("Please enter a valid email address.")
    if "phone" not in errors:
        phone = normalise_phone(values["phone"])
        if phone is None:
            errors["phone"] = _("Please enter a Kuwaiti mobile number: +965 followed by 8 digits.")
        else:
            values["phone"] = phone
    if "governorate" not in errors and values["governorate"] not in GOVERNORATES_BY_SLUG:
        errors["governorate"] = _("Please choose a governorate.")
    if "area" not in errors:
        if values["area"] not in AREAS_BY_SLUG:
            errors["area"] = _("Please choose an area.")
        elif "governorate" not in errors and not area_in_governorate(values["governorate"], values["area"]):
            errors["area"] = _("This area is not in the chosen governorate.")
    if "block" not in errors:
        values["block"] = values["block"].translate(_DIGITS)
        if not re.fullmatch(r"[0-9]{1,3}[A-Za-z]?", values["block"]):
            errors["block"] = _("Block is a number, such as 4.")
    if errors:
        return None, errors, values
    return CheckoutDetails(**values), errors, values
