"""How one order's money is shared between vendors and the shop. Pure integer fils, no I/O.

Rules (docs/vendors.md):
- A vendor's gross is the total of its lines in the order; its commission is
  `gross * commission_bps // 10000`, rounded down, so a vendor never loses a fils to rounding.
  It is computed once per vendor per order, on the vendor's lines together, not line by line.
- The vendor is paid gross minus commission. The shop keeps its own-stock lines plus every commission.
- Vendor grosses plus the own-stock total equal the order total exactly: nothing is rounded away.
- An order without vendor lines has no split at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from shop.payments.providers.base import VendorSplit

BPS_PER_WHOLE = 10_000  # basis points in 100 %
MAX_COMMISSION_BPS = BPS_PER_WHOLE - 1  # 99.99 %: a vendor is always paid something


class SplitError(ValueError):
    """The lines cannot be split as asked (a share that does not add up, a commission out of range)."""


@dataclass(frozen=True, slots=True)
class VendorShare:
    vendor_id: int
    name: str
    iban: str
    commission_bps: int
    gross_fils: int
    commission_fils: int

    @property
    def payout_fils(self) -> int:
        return self.gross_fils - self.commission_fils


@dataclass(frozen=True, slots=True)
class SplitPlan:
    vendors: tuple[VendorShare, ...]
    own_fils: int  # the shop's own-stock lines
    total_fils: int

    @property
    def commission_fils(self) -> int:
        return sum(v.commission_fils for v in self.vendors)

    @property
    def merchant_fils(self) -> int:
        """What the shop keeps: its own lines and the commissions."""
        return self.own_fils + self.commission_fils


def commission_of(gross_fils: int, commission_bps: int) -> int:
    if not 0 <= commission_bps <= MAX_COMMISSION_BPS:
        raise SplitError(f"commission {commission_bps} bps is outside 0..{MAX_COMMISSION_BPS}")
    return gross_fils * commission_bps // BPS_PER_WHOLE


def plan_split(lines: Iterable[Mapping[str, object]], total_fils: int) -> SplitPlan | None:
    """The split of an order from its lines (order line snapshots: `line_total_fils`, `vendor_id`,
    `vendor_name`, `vendor_iban`, `vendor_commission_bps`). None when no line is a vendor's.

    Raises SplitError when the lines do not add up to `total_fils`."""
    grosses: dict[int, int] = {}
    details: dict[int, tuple[str, str, int]] = {}
    own = 0
    for line in lines:
        amount = int(line["line_total_fils"])  # type: ignore[call-overload]
        vendor = line.get("vendor_id")
        if vendor is None:
            own += amount
            continue
        vendor_id = int(vendor)  # type: ignore[call-overload]
        grosses[vendor_id] = grosses.get(vendor_id, 0) + amount
        details.setdefault(vendor_id, (str(line["vendor_name"]), str(line["vendor_iban"]),
                                       int(line["vendor_commission_bps"])))  # type: ignore[call-overload]
    if own + sum(grosses.values()) != total_fils:
        raise SplitError("the order lines do not add up to the order total")
    if not grosses:
        return None
    shares = tuple(
        VendorShare(vendor_id, name, iban, bps, grosses[vendor_id], commission_of(grosses[vendor_id], bps))
        for vendor_id, (name, iban, bps) in sorted(details.items())
    )
    return SplitPlan(vendors=shares, own_fils=own, total_fils=total_fils)


def provider_splits(plan: SplitPlan, merchant_iban: str) -> tuple[VendorSplit, ...]:
    """The plan as the provider takes it: one entry per vendor (its gross, our commission as a
    fixed charge the provider deducts) and, for a mixed order, one for our own lines to our IBAN.

    Raises SplitError for a mixed order when the shop has no IBAN to receive its own lines."""
    entries = [VendorSplit(f"vendor-{v.vendor_id}", v.iban, v.gross_fils, v.commission_fils) for v in plan.vendors]
    if plan.own_fils:
        if not merchant_iban:
            raise SplitError("a mixed order needs SHOP_UPAYMENTS_MERCHANT_IBAN for the shop's own lines")
        entries.append(VendorSplit("merchant", merchant_iban, plan.own_fils, 0))
    if sum(e.amount_fils for e in entries) != plan.total_fils:  # cannot happen: plan_split checked it
        raise SplitError("the shares do not add up to the order total")
    return tuple(entries)


def allocate_refund(amount_fils: int, remaining_fils: list[int]) -> list[int]:
    """Share a refund of a split payment among its payees in proportion to what each can still
    give back, in whole fils: each gets the floor of its share, and the fils left over go one by one
    to the largest remainders (the first payee on a tie). The parts add up to `amount_fils` exactly.

    A full refund takes back exactly what each payee still holds. Raises SplitError when the
    amount is more than the payees hold together."""
    available = sum(remaining_fils)
    if amount_fils <= 0 or amount_fils > available or any(r < 0 for r in remaining_fils):
        raise SplitError(f"cannot refund {amount_fils} fils from payees holding {available}")
    parts = [amount_fils * r // available for r in remaining_fils]
    leftovers = sorted(range(len(remaining_fils)), key=lambda i: (-(amount_fils * remaining_fils[i] % available), i))
    for index in leftovers[:amount_fils - sum(parts)]:
        parts[index] += 1
    return parts
