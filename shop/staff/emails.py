"""Customer emails for owners and operations: the outbox, resending an email, sending pending ones now.

A resend puts the same outbox row back to `pending` rather than inserting a `receipt_resend` row:
the outbox holds one row per (order, kind) (a unique index), so a second resend row could not
exist, and one row per email keeps the outbox readable. What the row was before (status, send
time, attempts, last error) is kept in the audit log, written in the same transaction."""
from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException

from shop.db import write_transaction
from shop.i18n import gettext as _
from shop.notifications.outbox import deliver_pending
from shop.notifications.tables import OutboxEmail
from shop.staff import reports
from shop.staff.audit import audit
from shop.staff.auth import Role, Staff
from shop.staff.guards import current_staff, roles
from shop.staff.pages import staff_template
from shop.web.errors import UserError
from shop.web.pages import RowId, app_settings, flash, is_htmx, see_other


class EmailNotFound(LookupError):
    """No outbox email with that id."""


class AlreadyPending(ValueError):
    """The email is already waiting to be sent: nothing to re-queue."""


async def requeue_email(staff: Staff, email_id: int) -> dict[str, Any]:
    """Put a sent, kept or failed email back in the queue (attempts reset), audited.

    Raises EmailNotFound, or AlreadyPending (then nothing changes). The conditional update makes
    two concurrent resends queue the email once."""
    async with write_transaction(OutboxEmail._meta.db):
        before = await reports.outbox_email(email_id)
        if before is None:
            raise EmailNotFound(email_id)
        changed = await OutboxEmail.update({
            OutboxEmail.status: "pending", OutboxEmail.attempts: 0, OutboxEmail.last_error: "",
        }).where((OutboxEmail.id == email_id) & (OutboxEmail.status != "pending")).returning(OutboxEmail.id)
        if not changed:
            raise AlreadyPending(email_id)
        await audit(staff, "email.resend", "outbox_email", email_id,
                    before={k: before[k] for k in ("status", "attempts", "last_error", "sent_at", "kind", "to_address")},
                    after={"status": "pending", "attempts": 0})
    row = await reports.outbox_email(email_id)
    assert row is not None
    return row


async def send_pending_now(staff: Staff, smtp_url: str, sender: str) -> int:
    """Deliver what is pending now (the reconciler also does, every pass). Returns how many were handled."""
    handled = await deliver_pending(smtp_url, sender)
    # Not one transaction with the sending (SMTP is slow and outside the database): audited after.
    await audit(staff, "email.send_pending", "outbox_email", "", after={"handled": handled,
                                                                       "smtp_configured": bool(smtp_url)})
    return handled


def status_labels() -> dict[str, str]:
    return {"pending": _("Waiting to send"), "sent": _("Sent"), "kept": _("Kept (no mail server)"),
            "failed": _("Failed")}


def kind_labels() -> dict[str, str]:
    return {"receipt": _("Receipt"), "receipt_resend": _("Receipt (resent)")}


def _labels() -> dict[str, Any]:
    return {"status_labels": status_labels(), "kind_labels": kind_labels(), "statuses": reports.OUTBOX_STATUSES}


class EmailsController(Controller):
    path = "/staff/emails"

    @get("/", name="staff-emails", opt=roles(Role.OPERATIONS))
    async def outbox(self, request: Request) -> Response:
        status = (request.query_params.get("status") or "")[:20]
        try:
            page = reports.parse_page(request.query_params.get("page"))
            result = await reports.outbox_page(status, page)
        except reports.ReportError as error:
            raise UserError(detail=str(error), status_code=400) from None
        return staff_template(request, "staff/emails.html", "staff/_emails.html", result=result, status=status,
                              notice="", **_labels())

    @post("/{email_id:int}/resend", name="staff-email-resend", opt=roles(Role.OPERATIONS), status_code=200)
    async def resend(self, request: Request, email_id: RowId) -> Response:
        try:
            row = await requeue_email(current_staff(request), email_id)
        except EmailNotFound:
            raise NotFoundException("no such email") from None
        except AlreadyPending:
            raise UserError(detail=_("This email is already waiting to be sent."), status_code=409) from None
        message = _("The email to %(to)s is queued again.", to=row["to_address"])
        if is_htmx(request):
            return staff_template(request, "staff/_email_row.html", email=row, row_notice=message, **_labels())
        flash(request, message)
        return see_other("/staff/emails")

    @post("/send", name="staff-emails-send", opt=roles(Role.OPERATIONS), status_code=200)
    async def send_now(self, request: Request) -> Response:
        form = await request.form()
        status = str(form.get("status", ""))[:20]
        if status not in ("", *reports.OUTBOX_STATUSES):
            status = ""
        settings = app_settings(request)
        handled = await send_pending_now(current_staff(request), settings.smtp_url, settings.email_from)
        if settings.smtp_url:
            message = _("Pending emails handled: %(count)s.", count=handled)
        else:
            message = _("Pending emails handled: %(count)s. No mail server is configured, so they are kept in "
                        "the outbox.", count=handled)
        if not is_htmx(request):
            flash(request, message)
            return see_other("/staff/emails" + (f"?status={status}" if status else ""))
        result = await reports.outbox_page(status, 1)
        return staff_template(request, "staff/_emails.html", result=result, status=status, notice=message,
                              **_labels())
