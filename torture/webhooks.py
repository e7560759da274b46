"""Webhook chaos: every provider's real signed notifications, five copies each, shuffled and
sent 20 at a time; then returns and notifications landing at the same moment."""
from __future__ import annotations

import asyncio
import random
import time
from contextlib import AsyncExitStack
from urllib.parse import parse_qs

import httpx

from tests.webhook_receiver import Received, WebhookReceiver, webhook_receiver
from torture import db
from torture.figures import Figure, exactly
from torture.harness import PROVIDERS, Shop
from torture.registry import case
from torture.shopping import (Purchase, claim_product, close_all, extra_emails, pay_without_returning,
                              provider_in_use, states, stock_drift, timeout)

CASE = "webhook-chaos"
COPIES = 5
SENDERS = 20


def _knet_reply(base_url: str):
    """KNET's tranportal only completes a payment whose notification is answered `REDIRECT=<url>`."""
    def reply(received: Received) -> bytes:
        track_id = parse_qs(received.body.decode(errors="replace")).get("trackid", [""])[0]
        return f"REDIRECT={base_url}/payments/knet/return?ref={track_id}".encode()
    return reply


def _notifications_of(receiver: WebhookReceiver, purchase: Purchase) -> list[Received]:
    with receiver.lock:
        return [r for r in receiver.received if purchase.reference.encode() in r.body]


async def _wait_for_notifications(receiver: WebhookReceiver, purchases: list[Purchase], timeout_s: float = 20) -> int:
    """Until every purchase has at least one captured notification; how many still have none."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = sum(not _notifications_of(receiver, p) for p in purchases)
        if not missing or time.monotonic() > deadline:
            return missing
        await asyncio.sleep(0.1)


async def _capture_transitions(shop: Shop, product: int) -> dict[int, int]:
    """Capture transitions per order (its payments moving into `captured` from an open state)."""
    rows = await db.fetch(
        shop, "SELECT l.\"order\" AS order_id, COUNT(e.id) AS moves FROM order_line l "
              "JOIN payment_attempt a ON a.\"order\" = l.\"order\" "
              "LEFT JOIN payment_event e ON e.attempt = a.id AND e.status_after = 'captured' "
              "AND e.status_before IN ('initiated', 'pending') WHERE l.product = ? GROUP BY l.\"order\"",
        product)
    return {row["order_id"]: int(row["moves"]) for row in rows}


@case(CASE, order=30)
async def webhook_chaos(shop: Shop) -> list[Figure]:
    rng = random.Random(5)
    chaos_total = shop.scaled(200, minimum=2 * len(PROVIDERS))
    race_total = shop.scaled(100, minimum=len(PROVIDERS))
    stock = 10 * (chaos_total + race_total)
    chaos_product, race_product = await claim_product(shop, stock), await claim_product(shop, stock)
    sent = server_errors = refused = unmatched = 0
    customer_errors = race_not_paid = 0
    async with httpx.AsyncClient(base_url=shop.base_url, timeout=timeout()) as provider_side:
        for index, provider in enumerate(PROVIDERS):
            share = chaos_total // len(PROVIDERS) + (index < chaos_total % len(PROVIDERS))
            race_share = race_total // len(PROVIDERS) + (index < race_total % len(PROVIDERS))
            async with AsyncExitStack() as stack:
                receiver = stack.enter_context(webhook_receiver(f"/webhooks/{provider}"))
                if provider == "knet":
                    receiver.reply = _knet_reply(shop.base_url)
                # The controls hold until the replays are done (UPayments' status-call limit stays off).
                await stack.enter_async_context(provider_in_use(shop, provider, webhook_url=receiver.url))
                chaos = await pay_without_returning(shop, chaos_product, count=share)
                race = await pay_without_returning(shop, race_product, count=race_share)
                try:
                    unmatched += await _wait_for_notifications(receiver, chaos + race)

                    async def deliver(notification: Received) -> int:
                        for attempt in range(3):
                            try:
                                answer = await provider_side.post(f"/webhooks/{provider}", content=notification.body,
                                                                  headers=_wire_headers(notification))
                                return answer.status_code
                            except httpx.TransportError:
                                # A kept-alive connection closed as we sent: providers resend, so do we.
                                if attempt == 2:
                                    raise
                        raise AssertionError("unreachable")

                    # Every notification five times, all shuffled together, 20 in flight.
                    copies = [n for p in chaos for n in _notifications_of(receiver, p)] * COPIES
                    rng.shuffle(copies)
                    gate = asyncio.Semaphore(SENDERS)

                    async def gated(notification: Received) -> int:
                        async with gate:
                            return await deliver(notification)

                    codes = await asyncio.gather(*(gated(n) for n in copies))
                    sent += len(codes)
                    server_errors += sum(code >= 500 for code in codes)
                    refused += sum(400 <= code < 500 for code in codes)

                    # The customer comes back at the very moment the notification arrives.
                    async def together(purchase: Purchase) -> tuple[int, str]:
                        page, *answers = await asyncio.gather(
                            purchase.customer.come_back(purchase.back),
                            *(deliver(n) for n in _notifications_of(receiver, purchase)))
                        return page.status_code, states(page.text)[0] if page.status_code == 200 else ""

                    for status_code, order_state in await asyncio.gather(*(together(p) for p in race)):
                        customer_errors += status_code != 200
                        race_not_paid += order_state != "paid"
                finally:
                    await close_all(chaos + race)
    chaos_moves = await _capture_transitions(shop, chaos_product)
    race_moves = await _capture_transitions(shop, race_product)
    duplicate_emails = await extra_emails(shop, chaos_product) + await extra_emails(shop, race_product)
    drift = await stock_drift(shop, chaos_product, stock) + await stock_drift(shop, race_product, stock)
    return [
        exactly(CASE, f"transitions to captured for {chaos_total} payments ({sent} notifications)",
                sum(chaos_moves.values()), chaos_total),
        exactly(CASE, "orders that never moved", sum(moves == 0 for moves in chaos_moves.values()), 0),
        exactly(CASE, "duplicate receipt emails", duplicate_emails, 0),
        exactly(CASE, "stock moved other than once per item sold", drift, 0),
        exactly(CASE, "webhook 5xx answers", server_errors, 0),
        exactly(CASE, "genuine notifications refused (4xx)", refused, 0),
        exactly(CASE, "payments whose notification never came", unmatched, 0),
        exactly(CASE, f"return + webhook together ({race_total} orders): double transitions",
                sum(moves > 1 for moves in race_moves.values()), 0),
        exactly(CASE, "return + webhook together: errors shown to customers", customer_errors, 0),
        exactly(CASE, "return + webhook together: orders not shown paid", race_not_paid, 0),
    ]


def _wire_headers(notification: Received) -> dict[str, str]:
    """The notification's own headers, minus those that describe the old connection."""
    return {k: v for k, v in notification.headers.items() if k not in {"host", "content-length", "connection"}}
