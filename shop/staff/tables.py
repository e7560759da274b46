"""Staff accounts, their sessions (server-side, so logout and idle timeout really end them),
login throttling, and the append-only audit log."""
from piccolo.columns import JSON, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class StaffUser(Table):
    email = Varchar(length=254, unique=True)
    password_hash = Varchar(length=200)  # argon2id
    role = Varchar(length=20)  # owner | operations | finance
    active = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())
    last_login_at = Timestamptz(null=True, default=None)


class StaffSession(Table):
    token_hash = Varchar(length=64, unique=True)  # sha256 of the cookie's token
    staff = ForeignKey(references=StaffUser, on_delete=OnDelete.cascade, index=True)
    created_at = Timestamptz(default=TimestamptzNow())
    last_seen_at = Timestamptz(default=TimestamptzNow())
    ended_at = Timestamptz(null=True, default=None)


class LoginThrottle(Table):
    """Failures per key (an email, or an address), counted whether or not the account exists."""

    key = Varchar(length=64, unique=True)  # sha256 of "email:..." or "ip:..."
    failures = Integer(default=0)
    window_started_at = Timestamptz(default=TimestamptzNow())
    locked_until = Timestamptz(null=True, default=None)


class AuditLog(Table):
    """Every staff action: who, what, before/after, why, when. Rows are only ever inserted."""

    staff = ForeignKey(references=StaffUser, on_delete=OnDelete.set_null, null=True, index=True)
    staff_email = Varchar(length=254, default="")
    action = Varchar(length=60, index=True)
    target_type = Varchar(length=40, default="")
    target_id = Varchar(length=64, default="")
    before = JSON(default="{}")
    after = JSON(default="{}")
    reason = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow(), index=True)
