"""Kuwait time: the business day and every timestamp a person reads (customer, staff, email)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

KUWAIT_TIME = timezone(timedelta(hours=3), "+03")  # Kuwait keeps +03:00 all year (no DST)


def business_day(moment: datetime) -> date:
    """The Kuwait calendar day of an instant."""
    return moment.astimezone(KUWAIT_TIME).date()


def kuwait_time_text(moment: datetime | None, seconds: bool = True) -> str:
    """`2026-12-06 07:30:15`, in Kuwait time; empty for None."""
    if moment is None:
        return ""
    return moment.astimezone(KUWAIT_TIME).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
