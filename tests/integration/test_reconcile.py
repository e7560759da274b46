"""Reconciliation leadership is decided in the database: one holder at a time, taken over on expiry."""
import asyncio

import pytest

from shop.payments.reconcile import acquire_lease
from shop.payments.tables import Lease

pytestmark = pytest.mark.asyncio


async def test_one_leader_among_many_processes() -> None:
    await Lease.delete(force=True)
    results = await asyncio.gather(*[acquire_lease(f"worker-{n}", ttl_s=30) for n in range(10)])
    assert sum(results) == 1
    leader = f"worker-{results.index(True)}"
    assert await acquire_lease(leader, ttl_s=30)  # the leader renews
    assert not await acquire_lease("worker-late", ttl_s=30)


async def test_an_expired_lease_is_taken_over() -> None:
    await Lease.delete(force=True)
    assert await acquire_lease("worker-a", ttl_s=-1)  # already expired when written
    assert await acquire_lease("worker-b", ttl_s=30)
    assert not await acquire_lease("worker-a", ttl_s=30)
