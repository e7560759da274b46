"""Receipts go through the outbox: kept without SMTP, delivered through a real SMTP server with it."""
import asyncio

import pytest
from aiosmtpd.controller import Controller

from shop.notifications.outbox import deliver_pending
from shop.notifications.tables import OutboxEmail
from shop.payments.providers.base import Observation
from shop.payments.service import apply_observation
from shop.payments.states import PaymentStatus
from tests.integration.conftest import make_attempt, make_order, make_product
from tests.support import free_port

pytestmark = pytest.mark.asyncio


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(envelope.content)
        return "250 OK"


async def paid_order() -> dict:
    order = await make_order([(await make_product(), 1)])
    attempt = await make_attempt(order)
    await apply_observation(attempt["id"], Observation(status=PaymentStatus.CAPTURED, amount_fils=order["total_fils"],
                                                       currency="KWD"), "webhook")
    return order


async def test_without_smtp_the_receipt_is_kept() -> None:
    order = await paid_order()
    await deliver_pending("", "shop@example.com", limit=1000)
    email = await OutboxEmail.select().where(OutboxEmail.order == order["id"]).first()
    assert email["status"] == "kept"
    assert order["reference"] in email["subject"] and order["reference"] in email["body_text"]


async def test_with_smtp_the_receipt_is_sent_once() -> None:
    await deliver_pending("", "shop@example.com", limit=1000)  # earlier tests' mail is kept, not sent here
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        order = await paid_order()
        await deliver_pending(f"smtp://127.0.0.1:{port}", "Dira Market <orders@example.com>")
        await deliver_pending(f"smtp://127.0.0.1:{port}", "Dira Market <orders@example.com>")
    finally:
        await asyncio.to_thread(controller.stop)
    assert len(inbox.messages) == 1
    assert order["reference"].encode() in inbox.messages[0]
    email = await OutboxEmail.select().where(OutboxEmail.order == order["id"]).first()
    assert email["status"] == "sent" and email["sent_at"] is not None


async def test_an_unreachable_smtp_server_keeps_the_email_pending_for_a_retry() -> None:
    order = await paid_order()
    await deliver_pending(f"smtp://127.0.0.1:{free_port()}", "shop@example.com", limit=1000)
    email = await OutboxEmail.select().where(OutboxEmail.order == order["id"]).first()
    assert email["status"] == "pending" and email["attempts"] == 1 and email["last_error"]
