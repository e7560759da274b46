"""A small HTTP server standing in for the shop's webhook endpoint, for sandbox tests."""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A small HTTP server standing in for the shop's webhook endpoint."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    failures_left: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.failures_left = 0

    def fail_next(self, count: int) -> None:
        with self.lock:
            self.failures_left = count

    # What to answer each notification with (KNET's tranportal wants a `REDIRECT=` line).
    reply: Callable[[Received], bytes] = lambda r: b""
    # How to tell which payment a notification is about; providers shape their bodies differently.
    payment_id_of: Callable[[Received], str | None] = lambda r: r.event.get("data", {}).get("id")

    def for_payment(self, payment_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if self.payment_id_of(r) == payment_id]

    def wait_for(self, payment_id: str, count: int, timeout_s: float = 8.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.for_payment(payment_id)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} webhooks for {payment_id}, got {self.types(payment_id)}")

    def types(self, payment_id: str) -> list[str]:
        return [r.event["type"] for r in self.for_payment(payment_id)]



@contextmanager
def webhook_receiver(path: str = "/webhooks/checkout") -> Iterator[WebhookReceiver]:
    """Serve a receiver on a free loopback port; `state.url` is where to send notifications."""
    state = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            with state.lock:
                failing = state.failures_left > 0
                if failing:
                    state.failures_left -= 1
                else:
                    state.received.append(received)
            answer = b"" if failing else state.reply(received)
            self.send_response(500 if failing else 200)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
