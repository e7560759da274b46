"""The audit log: one row per staff action, written in the same transaction as the action."""
from __future__ import annotations

import json
from typing import Any

from shop.payments.redact import redact
from shop.staff.auth import Staff
from shop.staff.tables import AuditLog


async def audit(
    staff: Staff | None,
    action: str,
    target_type: str = "",
    target_id: object = "",
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> None:
    """Record what a staff member did. `before`/`after` are redacted like provider payloads."""
    await AuditLog.insert(AuditLog(
        staff=staff.id if staff else None,
        staff_email=staff.email if staff else "",
        action=action[:60],
        target_type=target_type[:40],
        target_id=str(target_id)[:64],
        before=json.dumps(redact(before or {}), default=str),
        after=json.dumps(redact(after or {}), default=str),
        reason=reason[:2000],
    ))
