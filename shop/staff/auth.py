"""Staff authentication: argon2id passwords, throttled logins, server-side sessions.

A failed login says the same thing, and costs the same time, whether or not the account
exists. Sessions live in the database so logout and the idle timeout really end them."""
from __future__ import annotations

import asyncio
import hashlib
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from functools import cache
from typing import Any, Callable, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shop.staff.tables import LoginThrottle, StaffSession, StaffUser

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes any length; this only bounds the work per request
IDLE_TIMEOUT = timedelta(minutes=30)
THROTTLE_WINDOW = timedelta(minutes=15)
# Failures per window before a lock: few per account, more per address (offices share one).
THROTTLE_LIMITS = {"email": 5, "ip": 20}
LOCK_FOR = timedelta(minutes=15)

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# A hash or a check takes argon2 about 140 ms of CPU and 64 MiB. In the event loop, every
# sign-in attempt (a password-guessing flood included) stalled the worker's storefront customers
# that long. argon2 lets go of the GIL, so in a thread of its own the loop keeps serving; one
# thread, so attempts wait their turn there and a flood costs one hash's memory at a time.
_password_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")
T = TypeVar("T")


async def _password_work(work: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_password_thread, work, *args)


@cache
def _dummy_hash() -> str:
    """Verified against when the account does not exist, so both cases take as long. Made on
    first use, not at import: a hash takes argon2's 64 MiB, which set every storefront worker's
    peak memory at start-up although most never see a staff sign-in."""
    return _hasher.hash(secrets.token_urlsafe(16))


class Role(StrEnum):
    OWNER = "owner"
    OPERATIONS = "operations"
    FINANCE = "finance"


class PasswordTooWeak(ValueError):
    """The password breaks the policy (length)."""


class LoginRefused(Exception):
    """Wrong email or password, an inactive account, or too many attempts: one message for all."""


@dataclass(frozen=True, slots=True)
class Staff:
    id: int
    email: str
    role: Role
    session_id: int

    def can(self, *roles: Role) -> bool:
        return self.role == Role.OWNER or self.role in roles


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def normalise_email(email: str) -> str:
    return email.strip().lower()[:254]


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordTooWeak(f"use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordTooWeak(f"use at most {MAX_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    check_password_policy(password)
    return _hasher.hash(password)


async def create_staff(email: str, password: str, role: Role) -> dict[str, Any]:
    """Create (or reset the password and role of) a staff account. Raises PasswordTooWeak."""
    email = normalise_email(email)
    if "@" not in email:
        raise ValueError("not an email address")
    password_hash = await _password_work(hash_password, password)
    existing = await StaffUser.select(StaffUser.id).where(StaffUser.email == email).first()
    if existing:
        await StaffUser.update({StaffUser.password_hash: password_hash, StaffUser.role: role.value,
                                StaffUser.active: True}).where(StaffUser.id == existing["id"])
        await StaffSession.update({StaffSession.ended_at: utcnow()}).where(
            (StaffSession.staff == existing["id"]) & StaffSession.ended_at.is_null())
    else:
        await StaffUser.insert(StaffUser(email=email, password_hash=password_hash, role=role.value))
    return await StaffUser.select().where(StaffUser.email == email).first()


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def _throttle_keys(email: str, address: str) -> list[tuple[str, int]]:
    return [(_key("email", email), THROTTLE_LIMITS["email"]), (_key("ip", address), THROTTLE_LIMITS["ip"])]


async def _locked(keys: list[tuple[str, int]], now: datetime) -> bool:
    rows = await LoginThrottle.select(LoginThrottle.locked_until).where(LoginThrottle.key.is_in([k for k, _ in keys]))
    return any(r["locked_until"] and r["locked_until"] > now for r in rows)


async def _count_failure(keys: list[tuple[str, int]], now: datetime) -> None:
    for key, limit in keys:
        await LoginThrottle.insert(LoginThrottle(key=key, failures=0, window_started_at=now)).on_conflict(
            action="DO NOTHING")
        row = await LoginThrottle.select().where(LoginThrottle.key == key).first()
        failures = row["failures"] + 1 if row["window_started_at"] > now - THROTTLE_WINDOW else 1
        values: dict[Any, Any] = {LoginThrottle.failures: failures}
        if failures == 1:
            values[LoginThrottle.window_started_at] = now
        if failures >= limit:
            values[LoginThrottle.locked_until] = now + LOCK_FOR
        await LoginThrottle.update(values).where(LoginThrottle.key == key)


def _verify(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; an unknown account is checked against a dummy hash, so both
    take as long."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password[:MAX_PASSWORD_LENGTH])
    except (VerificationError, InvalidHashError):
        return False


async def log_in(email: str, password: str, client_address: str) -> tuple[Staff, str]:
    """Check the credentials; on success start a new session. Returns (staff, session token).

    Raises LoginRefused, also while the email or the address is locked out."""
    email = normalise_email(email)
    now = utcnow()
    keys = _throttle_keys(email, client_address)
    user = await StaffUser.select().where(StaffUser.email == email).first()
    verified = await _password_work(_verify, user["password_hash"] if user else None, password) and bool(
        user and user["active"])
    if await _locked(keys, now) or not verified:
        await _count_failure(keys, now)
        raise LoginRefused()
    assert user is not None
    await LoginThrottle.delete().where(LoginThrottle.key == keys[0][0])
    if _hasher.check_needs_rehash(user["password_hash"]):
        rehashed = await _password_work(_hasher.hash, password)
        await StaffUser.update({StaffUser.password_hash: rehashed}).where(StaffUser.id == user["id"])
    await StaffUser.update({StaffUser.last_login_at: now}).where(StaffUser.id == user["id"])
    token = secrets.token_urlsafe(32)
    rows = await StaffSession.insert(StaffSession(token_hash=_key("session", token), staff=user["id"],
                                                  created_at=now, last_seen_at=now)).returning(StaffSession.id)
    return Staff(user["id"], user["email"], Role(user["role"]), rows[0]["id"]), token


async def staff_for_token(token: str | None) -> Staff | None:
    """The staff member behind a session token, if the session is live; touches its idle clock."""
    if not token or len(token) > 100:
        return None
    now = utcnow()
    row = await StaffSession.select(
        StaffSession.id, StaffSession.last_seen_at, StaffSession.ended_at,
        StaffSession.staff.id.as_alias("staff_id"), StaffSession.staff.email.as_alias("email"),
        StaffSession.staff.role.as_alias("role"), StaffSession.staff.active.as_alias("active"),
    ).where(StaffSession.token_hash == _key("session", token)).first()
    if row is None or row["ended_at"] is not None or not row["active"]:
        return None
    if row["last_seen_at"] < now - IDLE_TIMEOUT:
        await StaffSession.update({StaffSession.ended_at: now}).where(StaffSession.id == row["id"])
        return None
    # Touch at most once a minute: the idle clock needs no finer grain than that.
    if row["last_seen_at"] < now - timedelta(minutes=1):
        await StaffSession.update({StaffSession.last_seen_at: now}).where(StaffSession.id == row["id"])
    return Staff(row["staff_id"], row["email"], Role(row["role"]), row["id"])


async def log_out(staff: Staff) -> None:
    await StaffSession.update({StaffSession.ended_at: utcnow()}).where(StaffSession.id == staff.session_id)
