"""Kuwaiti IBANs and how an order's money is split between vendors and the shop (integer fils)."""
import pytest

from shop.payments.providers.base import VendorSplit
from shop.vendors.iban import is_kuwaiti_iban, normalise_iban
from shop.vendors.services import commission_text, parse_commission, validate_vendor
from shop.vendors.splits import SplitError, commission_of, plan_split, provider_splits

IBAN_A, IBAN_B, SHOP_IBAN = ("KW91KFHO0000000000051010173254", "KW31NBOK0000000000002010177457",
                             "KW81CBKU0000000000001234560101")


def line(total: int, vendor: int | None = None, iban: str = IBAN_A, bps: int = 0, name: str = "") -> dict:
    return {"line_total_fils": total, "vendor_id": vendor, "vendor_name": name or f"v{vendor}", "vendor_iban": iban,
            "vendor_commission_bps": bps}


@pytest.mark.parametrize("iban", [IBAN_A, IBAN_B, SHOP_IBAN])
def test_real_kuwaiti_ibans_pass(iban: str) -> None:
    assert is_kuwaiti_iban(iban)


@pytest.mark.parametrize("iban", [
    "KW92KFHO0000000000051010173254",  # check digits off by one
    "KW91KFHO0000000000051010173245",  # two digits swapped
    "GB82WEST12345698765432",  # a valid IBAN, but not Kuwaiti
    "KW91KFHO000000000005101017325",  # one character short
    "KW91kfho0000000000051010173254",  # not normalised
    "KW91KFH00000000000051010173254",  # bank code must be letters
    "",
])
def test_wrong_ibans_fail(iban: str) -> None:
    assert not is_kuwaiti_iban(iban)


def test_ibans_are_normalised_as_typed() -> None:
    assert normalise_iban(" kw91 kfho 0000 0000 0005 1010 1732 54 ") == IBAN_A


def test_commission_rounds_down_so_the_vendor_never_loses_a_fils() -> None:
    assert commission_of(10_000, 1250) == 1250
    assert commission_of(999, 1250) == 124  # 124.875 fils
    assert commission_of(1, 9999) == 0
    assert commission_of(5_000, 0) == 0
    with pytest.raises(SplitError):
        commission_of(5_000, 10_000)
    with pytest.raises(SplitError):
        commission_of(5_000, -1)


def test_an_order_without_vendor_lines_has_no_split() -> None:
    assert plan_split([line(3_000), line(2_500)], 5_500) is None


def test_a_vendor_only_order_pays_each_vendor_its_lines_less_commission() -> None:
    plan = plan_split([line(6_000, 1, IBAN_A, 1000), line(4_500, 2, IBAN_B, 0), line(1_000, 1, IBAN_A, 1000)], 11_500)
    assert plan is not None
    first, second = plan.vendors
    assert (first.vendor_id, first.gross_fils, first.commission_fils, first.payout_fils) == (1, 7_000, 700, 6_300)
    assert (second.vendor_id, second.gross_fils, second.commission_fils, second.payout_fils) == (2, 4_500, 0, 4_500)
    assert plan.own_fils == 0 and plan.merchant_fils == 700
    assert provider_splits(plan, "") == (VendorSplit("vendor-1", IBAN_A, 7_000, 700),
                                         VendorSplit("vendor-2", IBAN_B, 4_500, 0))


def test_commission_is_taken_on_the_vendors_lines_together_not_line_by_line() -> None:
    # Line by line, 10 % of 333, 333 and 334 fils rounds down to 33 + 33 + 33 = 99; together it is 100.
    plan = plan_split([line(333, 1, bps=1000), line(333, 1, bps=1000), line(334, 1, bps=1000)], 1_000)
    assert plan is not None and plan.vendors[0].commission_fils == 100


def test_a_mixed_order_sends_the_shops_own_lines_to_the_shops_iban() -> None:
    plan = plan_split([line(2_250), line(7_777, 3, IBAN_B, 1500), line(1_001)], 11_028)
    assert plan is not None
    assert plan.own_fils == 3_251
    assert plan.vendors[0].commission_fils == 1_166  # 7777 * 15 % = 1166.55
    assert plan.merchant_fils == 3_251 + 1_166
    assert plan.merchant_fils + sum(v.payout_fils for v in plan.vendors) == 11_028
    splits = provider_splits(plan, SHOP_IBAN)
    assert splits == (VendorSplit("vendor-3", IBAN_B, 7_777, 1_166), VendorSplit("merchant", SHOP_IBAN, 3_251, 0))
    assert sum(s.amount_fils for s in splits) == 11_028


def test_a_mixed_order_without_a_shop_iban_cannot_be_split() -> None:
    plan = plan_split([line(2_000), line(3_000, 1)], 5_000)
    assert plan is not None
    with pytest.raises(SplitError, match="SHOP_UPAYMENTS_MERCHANT_IBAN"):
        provider_splits(plan, "")


def test_lines_that_do_not_add_up_to_the_total_are_refused() -> None:
    with pytest.raises(SplitError):
        plan_split([line(2_000), line(3_000, 1)], 5_001)


@pytest.mark.parametrize(("text", "bps"), [("0", 0), ("12.5", 1250), ("12.50", 1250), ("7", 700), ("99.99", 9999),
                                           ("٥", 500), ("3.05 %", 305)])
def test_commission_percentages_become_basis_points(text: str, bps: int) -> None:
    assert parse_commission(text) == bps
    assert parse_commission(commission_text(bps)) == bps


@pytest.mark.parametrize("text", ["100", "-1", "12.555", "1e2", "abc", "", "0.1.2"])
def test_commissions_out_of_range_or_malformed_are_refused(text: str) -> None:
    assert parse_commission(text) is None


def test_the_vendor_form_names_each_bad_field() -> None:
    data, errors, values = validate_vendor({"name": "", "iban": "kw92 kfho 0000 0000 0005 1010 1732 54",
                                            "commission": "150"})
    assert data is None and set(errors) == {"name", "iban", "commission"}
    assert "check digits" in errors["iban"] and values["iban"] == "KW92KFHO0000000000051010173254"
    data, errors, _ = validate_vendor({"name": " Boutique  Salmiya ", "iban": IBAN_A.lower(), "commission": "12.5",
                                       "active": "on"})
    assert errors == {} and data is not None
    assert (data.name, data.iban, data.commission_bps, data.active) == ("Boutique Salmiya", IBAN_A, 1250, True)


def test_the_shop_iban_setting_is_checked_and_only_the_sandbox_has_a_default(tmp_path) -> None:
    from shop.settings import SANDBOX_MERCHANT_IBAN, Settings, SettingsError

    assert Settings.from_env({}, cwd=tmp_path).merchant_iban == SANDBOX_MERCHANT_IBAN
    typed = Settings.from_env({"SHOP_UPAYMENTS_MERCHANT_IBAN": "kw81 cbku 0000 0000 0000 1234 5601 01"}, cwd=tmp_path)
    assert typed.merchant_iban == SHOP_IBAN
    assert Settings.from_env({"SHOP_SANDBOX": "0"}, cwd=tmp_path).merchant_iban == ""
    with pytest.raises(SettingsError, match="SHOP_UPAYMENTS_MERCHANT_IBAN"):
        Settings.from_env({"SHOP_UPAYMENTS_MERCHANT_IBAN": "KW82CBKU0000000000001234560101"}, cwd=tmp_path)


def test_a_refund_is_shared_in_proportion_to_what_each_payee_still_holds() -> None:
    from shop.vendors.splits import allocate_refund

    assert allocate_refund(1_000, [6_000, 4_000]) == [600, 400]
    assert allocate_refund(10_000, [6_000, 4_000]) == [6_000, 4_000]  # a full refund empties each
    assert allocate_refund(1, [5_000, 5_000]) == [1, 0]  # the tie goes to the first payee
    parts = allocate_refund(1_000, [3_333, 3_333, 3_334])
    assert sum(parts) == 1_000 and parts == [333, 333, 334]
    assert allocate_refund(500, [0, 7_777]) == [0, 500]
    for bad in (0, -1, 10_001):
        with pytest.raises(SplitError):
            allocate_refund(bad, [6_000, 4_000])
