"""The sandbox's notifications reach the merchant without reloading TLS certificates each time."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shop.sandbox import engine
from tests.support import counting_ca_bundle_loads
from tests.webhook_receiver import webhook_receiver

CONTROLS = {"webhooks": "normal", "duplicate_count": 1, "webhook_delay_ms": 0, "webhook_timeout_ms": 2000,
            "webhook_retries": 0, "webhook_backoff_ms": 0}


def test_deliveries_share_one_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each delivery client had httpx build its own TLS context, loading the CA bundle: 40 ms of
    the sandbox's event loop for every payment's notifications, in the demo and the tests."""
    recorded: list[tuple[str, int | None]] = []

    async def record(store: Any, webhook: engine.Webhook, url: str, copy: int, attempt: int,
                     status_code: int | None, error: str | None) -> None:
        recorded.append((webhook.event_id, status_code))

    monkeypatch.setattr(engine, "_record_delivery", record)
    webhooks = [engine.Webhook(f"evt_{n}", "payment_captured", b'{"id": "evt_%d"}' % n,
                               {"Content-Type": "application/json"}) for n in range(3)]
    with webhook_receiver() as receiver, counting_ca_bundle_loads() as loads:
        async def send_all() -> None:
            for webhook in webhooks:
                await engine.deliver(None, receiver.url, [webhook], CONTROLS)  # type: ignore[arg-type]
                await engine.post_once(None, receiver.url, webhook, CONTROLS)  # type: ignore[arg-type]

        asyncio.run(send_all())
        assert len(receiver.received) == 6
    assert recorded == [(w.event_id, 200) for w in webhooks for _ in range(2)]
    assert len(loads) <= 1  # at most the first client's, whichever test made it
