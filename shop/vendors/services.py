"""Vendor administration (validated, audited) and the vendor snapshot an order line keeps."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from shop.catalog.admin import changed_values, clean
from shop.db import unique_or, write_transaction
from shop.i18n import gettext as _
from shop.staff.audit import audit
from shop.staff.auth import Staff, utcnow
from shop.vendors.iban import is_kuwaiti_iban, normalise_iban
from shop.vendors.splits import MAX_COMMISSION_BPS
from shop.vendors.tables import Vendor

NAME_MAX = 120
# A percentage with at most two decimals: 12.5 % is 1250 basis points. Parsed as text, never float.
_PERCENT = re.compile(r"^(\d{1,3})(?:\.(\d{1,2}))?$")
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹٫", "01234567890123456789.")


class VendorError(ValueError):
    """A vendor change refused as asked; `errors` maps form fields to messages for staff."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = dict(errors)


class VendorNotFound(LookupError):
    """No vendor with that id."""


@dataclass(frozen=True, slots=True)
class VendorInput:
    name: str
    iban: str
    commission_bps: int
    active: bool


def parse_commission(text: str) -> int | None:
    """A percentage such as `12.5` to basis points (1250); None if it is not one or is out of range."""
    match = _PERCENT.match(text.translate(_DIGITS).strip().removesuffix("%").strip())
    if not match:
        return None
    bps = int(match.group(1)) * 100 + int((match.group(2) or "").ljust(2, "0"))
    return bps if bps <= MAX_COMMISSION_BPS else None


def commission_text(bps: int) -> str:
    """Basis points as the form shows them: 1250 -> "12.5"."""
    whole, part = divmod(bps, 100)
    return f"{whole}.{part:02d}".rstrip("0").rstrip(".")


def validate_vendor(form: Mapping[str, object]) -> tuple[VendorInput | None, dict[str, str], dict[str, Any]]:
    """Check a vendor form: a name, a Kuwaiti IBAN whose check digits hold, a commission 0-99.99 %."""
    values: dict[str, Any] = {
        "name": clean(form.get("name")),
        "iban": normalise_iban(clean(form.get("iban"))),
        "commission": clean(form.get("commission")) or "0",
        "active": isinstance(form.get("active"), str) and str(form.get("active")).lower() in {"1", "on", "true", "yes"},
    }
    errors: dict[str, str] = {}
    if not values["name"]:
        errors["name"] = _("Enter the vendor's name.")
    elif len(values["name"]) > NAME_MAX:
        errors["name"] = _("At most %(max)s characters.", max=NAME_MAX)
    if not values["iban"]:
        errors["iban"] = _("Enter the vendor's IBAN.")
    elif not values["iban"].startswith("KW") or len(values["iban"]) != 30:
        errors["iban"] = _("Enter a Kuwaiti IBAN: KW followed by 28 letters and digits.")
    elif not is_kuwaiti_iban(values["iban"]):
        errors["iban"] = _("This IBAN's check digits are wrong: please check it for a typo.")
    bps = parse_commission(values["commission"])
    if bps is None:
        errors["commission"] = _("Enter a commission from 0 to 99.99 percent, with at most two decimals.")
    if errors:
        return None, errors, values
    assert bps is not None
    return VendorInput(values["name"], values["iban"], bps, values["active"]), {}, values


def vendor_form_values(vendor: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": vendor["name"], "iban": vendor["iban"], "commission": commission_text(vendor["commission_bps"]),
            "active": vendor["active"]}


async def all_vendors() -> list[dict[str, Any]]:
    return await Vendor.select().order_by(Vendor.name)


async def get_vendor(vendor_id: int) -> dict[str, Any]:
    """Raises VendorNotFound."""
    row = await Vendor.select().where(Vendor.id == vendor_id).first()
    if row is None:
        raise VendorNotFound(vendor_id)
    return row


def _name_taken() -> VendorError:
    return VendorError({"name": _("Another vendor already has this name.")})


async def _require_free_name(name: str, own_id: int | None) -> None:
    condition = Vendor.name == name
    if own_id is not None:
        condition &= Vendor.id != own_id
    if await Vendor.exists().where(condition):
        raise _name_taken()


async def create_vendor(staff: Staff | None, data: VendorInput) -> dict[str, Any]:
    """Add a vendor. Raises VendorError (name taken)."""
    await _require_free_name(data.name, None)
    async with unique_or(_name_taken), write_transaction(Vendor._meta.db):
        rows = await Vendor.insert(Vendor(**asdict(data))).returning(*Vendor.all_columns())
        await audit(staff, "vendor.create", "vendor", rows[0]["id"], after=asdict(data))
    return rows[0]


async def update_vendor(staff: Staff | None, vendor_id: int, data: VendorInput) -> dict[str, Any]:
    """Change a vendor. Placed orders keep the vendor they were placed with (order line snapshots).

    Raises VendorNotFound, VendorError. Saving unchanged values audits nothing."""
    await _require_free_name(data.name, vendor_id)
    values = asdict(data)
    async with unique_or(_name_taken), write_transaction(Vendor._meta.db):
        current = await get_vendor(vendor_id)
        before, after = changed_values(current, values)
        if not after:
            return current
        await Vendor.update({**values, "updated_at": utcnow()}).where(Vendor.id == vendor_id)
        await audit(staff, "vendor.update", "vendor", vendor_id, before=before, after=after)
    return await get_vendor(vendor_id)


# --- the snapshot an order line keeps ---

def vendor_columns(vendor: Any) -> list[Any]:
    """Columns to select through a `...vendor` foreign key, for `vendor_snapshot`."""
    return [vendor.id.as_alias("vendor_id"), vendor.name.as_alias("vendor_name"), vendor.iban.as_alias("vendor_iban"),
            vendor.commission_bps.as_alias("vendor_commission_bps")]


def vendor_snapshot(line: Mapping[str, Any]) -> dict[str, Any]:
    """The order line's vendor columns. A deactivated vendor's products already assigned stay its
    own (deactivating only takes it off the product form's picker)."""
    if line.get("vendor_id") is None:
        return {}
    return {"vendor_id": line["vendor_id"], "vendor_name": line["vendor_name"], "vendor_iban": line["vendor_iban"],
            "vendor_commission_bps": line["vendor_commission_bps"]}
