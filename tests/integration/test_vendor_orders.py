"""Vendors on real databases: order lines keep the vendor as it was, and a UPayments payment sends
each vendor's share (`extraMerchantData`) built from those lines; other providers send none."""
from __future__ import annotations

import json
import secrets
from decimal import Decimal
from typing import Any

import httpx

from shop.catalog.tables import Product
from shop.orders.tables import Order, OrderLine
from shop.payments.providers.tap import TapProvider
from shop.payments.providers.upayments import UpaymentsProvider
from shop.payments.service import start_attempt
from shop.settings import SANDBOX_MERCHANT_IBAN, Settings
from shop.vendors.services import VendorInput, create_vendor, update_vendor
from tests.integration.conftest import make_order, make_product

IBAN_A, IBAN_B = "KW91KFHO0000000000051010173254", "KW31NBOK0000000000002010177457"
PUBLIC = "https://shop.example"


async def vendor(iban: str, commission_bps: int) -> dict[str, Any]:
    return await create_vendor(None, VendorInput(f"Vendor {secrets.token_hex(4)}", iban, commission_bps, True))


async def vendor_product(vendor_row: dict[str, Any] | None, price_fils: int) -> dict[str, Any]:
    product = await make_product(stock=50, price_fils=price_fils)
    if vendor_row is not None:
        await Product.update({Product.vendor: vendor_row["id"]}).where(Product.id == product["id"])
    return product


class Recorder:
    """A provider API that answers every call like UPayments/Tap would and keeps the bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content, parse_float=Decimal))
        if "upayments" in str(request.url):
            return httpx.Response(200, json={"status": True, "message": "ok", "data": {
                "link": "https://pay.example/kpg", "trackId": "2026" + secrets.token_hex(6)}})
        return httpx.Response(200, json={"id": "chg_" + secrets.token_hex(6), "status": "INITIATED",
                                          "transaction": {"url": "https://pay.example/tap"}})


def provider(kind: type, settings: Settings, recorder: Recorder) -> Any:
    return kind(settings, httpx.AsyncClient(transport=httpx.MockTransport(recorder)))


SETTINGS = Settings(secret_key="x" * 40, public_url=PUBLIC, provider_settings={
    "SHOP_UPAYMENTS_API_URL": "https://upayments.example", "SHOP_TAP_API_URL": "https://tap.example"})


async def test_order_lines_keep_the_vendor_as_it_was_when_the_order_was_placed() -> None:
    seller = await vendor(IBAN_A, 1250)
    theirs, ours = await vendor_product(seller, 4_000), await vendor_product(None, 1_500)
    order = await make_order([(theirs, 2), (ours, 1)], provider="upayments")
    await update_vendor(None, seller["id"], VendorInput("Renamed", IBAN_B, 3000, False))
    lines = await OrderLine.select().where(OrderLine.order == order["id"]).order_by(OrderLine.line_total_fils)
    assert [(l["vendor_id"], l["vendor_name"], l["vendor_iban"], l["vendor_commission_bps"]) for l in lines] == [
        (None, "", "", 0), (seller["id"], seller["name"], IBAN_A, 1250)]


async def test_a_upayments_payment_sends_each_vendor_its_share_and_the_shop_its_own_lines() -> None:
    first, second = await vendor(IBAN_A, 1000), await vendor(IBAN_B, 0)
    items = [(await vendor_product(first, 3_333), 3), (await vendor_product(second, 2_250), 1),
             (await vendor_product(None, 1_001), 2)]
    order = await make_order(items, provider="upayments")
    recorder = Recorder()
    outcome = await start_attempt(order, provider(UpaymentsProvider, SETTINGS, recorder), PUBLIC, number=1)
    assert outcome.redirect_url == "https://pay.example/kpg"
    [body] = recorder.bodies
    assert order["total_fils"] == 9_999 + 2_250 + 2_002
    assert body["extraMerchantData"] == [
        {"amount": Decimal("9.999"), "knetCharge": Decimal("0.999"), "knetChargeType": "fixed",
         "ccCharge": Decimal("0.999"), "ccChargeType": "fixed", "ibanNumber": IBAN_A},
        {"amount": Decimal("2.250"), "knetCharge": Decimal("0.000"), "knetChargeType": "fixed",
         "ccCharge": Decimal("0.000"), "ccChargeType": "fixed", "ibanNumber": IBAN_B},
        {"amount": Decimal("2.002"), "knetCharge": Decimal("0.000"), "knetChargeType": "fixed",
         "ccCharge": Decimal("0.000"), "ccChargeType": "fixed", "ibanNumber": SANDBOX_MERCHANT_IBAN},
    ]
    assert sum(e["amount"] for e in body["extraMerchantData"]) == body["order"]["amount"] == Decimal("14.251")


async def test_orders_without_vendor_lines_and_other_providers_send_no_split() -> None:
    recorder = Recorder()
    own_only = await make_order([(await vendor_product(None, 2_000), 1)], provider="upayments")
    await start_attempt(own_only, provider(UpaymentsProvider, SETTINGS, recorder), PUBLIC, number=1)
    seller = await vendor(IBAN_A, 500)
    mixed = await make_order([(await vendor_product(seller, 2_000), 1)], provider="tap")
    await start_attempt(mixed, provider(TapProvider, SETTINGS, recorder), PUBLIC, number=1)
    assert len(recorder.bodies) == 2
    assert all("extraMerchantData" not in b and "destinations" not in b for b in recorder.bodies)


async def test_a_mixed_order_without_a_shop_iban_is_charged_whole_and_flagged() -> None:
    seller = await vendor(IBAN_A, 500)
    order = await make_order([(await vendor_product(seller, 2_000), 1), (await vendor_product(None, 1_000), 1)],
                             provider="upayments")
    recorder = Recorder()
    live = SETTINGS.with_(sandbox=False, provider_settings={**SETTINGS.provider_settings,
                                                            "SHOP_UPAYMENTS_API_KEY": "live-key"})
    outcome = await start_attempt(order, provider(UpaymentsProvider, live, recorder), PUBLIC, number=1)
    assert outcome.redirect_url and "extraMerchantData" not in recorder.bodies[0]
    flagged = await Order.select(Order.needs_attention, Order.attention_reason).where(Order.id == order["id"]).first()
    assert flagged["needs_attention"] and "SHOP_UPAYMENTS_MERCHANT_IBAN" in flagged["attention_reason"]
    # A vendor-only order needs no shop IBAN: it is split.
    alone = await make_order([(await vendor_product(seller, 3_000), 1)], provider="upayments")
    await start_attempt(alone, provider(UpaymentsProvider, live, recorder), PUBLIC, number=1)
    assert [e["ibanNumber"] for e in recorder.bodies[1]["extraMerchantData"]] == [IBAN_A]
