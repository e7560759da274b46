"""Queue emails in the same transaction as the change that causes them; deliver them later.

With `SHOP_SMTP_URL` unset, emails are kept in the outbox (and logged without their body)
so that nothing is lost and staff can resend them once mail is configured."""
from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

from shop import i18n
from shop.notifications.tables import OutboxEmail
from shop.payments.tables import PaymentAttempt
from shop.sql import Insert, Statement

log = logging.getLogger("shop.email")
MAX_ATTEMPTS = 5


def render_receipt(order: dict[str, Any], lines: list[dict[str, Any]], attempt: dict[str, Any] | None,
                   public_url: str = "") -> tuple[str, str]:
    """(subject, plain-text body) in the order's language."""
    from shop.web.templating import environment_for

    language = order["language"] if order["language"] in i18n.LANGUAGES else i18n.DEFAULT_LANGUAGE
    token = i18n.current_language.set(language)
    try:
        subject = i18n.gettext("Your receipt for order %(reference)s", reference=order["reference"])
        body = environment_for(language).get_template("emails/receipt.txt").render(
            order=order, lines=lines, attempt=attempt or {}, public_url=public_url
        )
    finally:
        i18n.current_language.reset(token)
    return subject, body


_RECEIPT = Insert(OutboxEmail, if_new=True)
# The payment the receipt shows: the latest that took money.
_PAID_ATTEMPT = Statement(PaymentAttempt, 'SELECT * FROM payment_attempt WHERE "order" = {} AND captured_fils > 0 '
                                          "ORDER BY number DESC LIMIT 1")


async def queue_receipt(order: dict[str, Any], lines: list[dict[str, Any]], public_url: str = "") -> None:
    """Queue the receipt of `order` (a row, with its lines) once: a unique index on (order, kind)
    turns repeats into no-ops."""
    attempt = await _PAID_ATTEMPT.first(order["id"])
    subject, body = render_receipt(order, lines, attempt, public_url)
    await _RECEIPT.rows(order=order["id"], kind="receipt", to_address=order["email"], subject=subject, body_text=body)


def _send_smtp(smtp_url: str, sender: str, email: dict[str, Any]) -> None:
    """smtp://user:pass@host:port or smtps://... ; STARTTLS when the server offers it."""
    parts = urlsplit(smtp_url)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email["to_address"]
    message["Subject"] = email["subject"]
    message.set_content(email["body_text"])
    port = parts.port or (465 if parts.scheme == "smtps" else 25)
    if parts.scheme == "smtps":
        server: smtplib.SMTP = smtplib.SMTP_SSL(parts.hostname or "localhost", port, timeout=15,
                                                context=ssl.create_default_context())
    else:
        server = smtplib.SMTP(parts.hostname or "localhost", port, timeout=15)
    with server:
        if parts.scheme != "smtps" and server.has_extn("starttls"):
            server.starttls(context=ssl.create_default_context())
        if parts.username:
            server.login(unquote(parts.username), unquote(parts.password or ""))
        server.send_message(message)


async def deliver_pending(smtp_url: str, sender: str, limit: int = 20) -> int:
    """Send (or keep) pending emails. Returns how many were handled."""
    pending = await OutboxEmail.select().where(OutboxEmail.status == "pending").order_by(OutboxEmail.id).limit(limit)
    for email in pending:
        if not smtp_url:
            await OutboxEmail.update({OutboxEmail.status: "kept"}).where(OutboxEmail.id == email["id"])
            log.info("email kept in outbox (no SMTP configured): #%s %s to %s", email["id"], email["kind"],
                     email["to_address"])
            continue
        try:
            await asyncio.to_thread(_send_smtp, smtp_url, sender, email)
        except (OSError, smtplib.SMTPException) as exc:
            attempts = email["attempts"] + 1
            await OutboxEmail.update({
                OutboxEmail.attempts: attempts,
                OutboxEmail.last_error: str(exc)[:500],
                OutboxEmail.status: "failed" if attempts >= MAX_ATTEMPTS else "pending",
            }).where(OutboxEmail.id == email["id"])
            log.warning("email #%s not sent (attempt %s): %s", email["id"], attempts, exc)
            continue
        await OutboxEmail.update({OutboxEmail.status: "sent", OutboxEmail.sent_at: datetime.now(timezone.utc),
                                  OutboxEmail.attempts: email["attempts"] + 1}).where(OutboxEmail.id == email["id"])
    return len(pending)
