"""uvicorn's HTTP protocol, with each response's head sent in the same packet as its body.

uvicorn writes the status line and headers when the app starts its response, and the body when
the app sends it: two send() calls, and with TCP_NODELAY two packets (and an extra ACK) for every
page. Here a small write is held until the next write on the connection or the end of the
current event-loop pass, whichever comes first, so a page leaves in one send(). Nothing waits
longer than that pass, and writes keep their order.
"""
from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A response head is well under this; larger writes are bodies and go out at once.
HOLD_AT_MOST = 8 * 1024


class HeadWithBodyTransport:
    """A transport that holds one small write back until the next write or the end of the
    loop pass. Everything other than writing and closing goes to the real transport."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif len(data) <= HOLD_AT_MOST and not self._transport.is_closing():
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ShopHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeadWithBodyTransport(transport, self.loop))  # type: ignore[arg-type]
