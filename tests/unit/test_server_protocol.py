"""The HTTP protocol `shop serve` runs under uvicorn: a response's head leaves with its body in
one write, nothing is held past the loop pass it was written in, and responses stay whole over
a real socket (keep-alive, HEAD, streamed bodies, a closing connection)."""
from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest
import uvicorn

from shop.web.server import HOLD_AT_MOST, HeadWithBodyTransport, ShopHttpProtocol


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def write_eof(self) -> None:
        self.writes.append(b"<eof>")

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


async def test_head_and_body_leave_in_one_write() -> None:
    real = RecordingTransport()
    transport = HeadWithBodyTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
    assert real.writes == []
    transport.write(b"body")
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"]
    await asyncio.sleep(0)
    assert len(real.writes) == 1  # the scheduled flush finds nothing left to send


async def test_a_held_write_goes_out_by_the_end_of_the_loop_pass() -> None:
    real = RecordingTransport()
    transport = HeadWithBodyTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # a response without a body, or HEAD
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]


async def test_large_writes_are_not_held_and_order_is_kept() -> None:
    real = RecordingTransport()
    transport = HeadWithBodyTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    big = b"x" * (HOLD_AT_MOST + 1)
    transport.write(big)
    assert real.writes == [big]
    transport.write(b"a")
    transport.write(b"b")
    transport.write(b"c")
    await asyncio.sleep(0)
    assert b"".join(real.writes) == big + b"abc"


async def test_close_and_eof_send_what_is_held_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    real = RecordingTransport()
    transport = HeadWithBodyTransport(real, loop)  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    transport.close()
    assert real.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"] and real.closed
    await asyncio.sleep(0)  # the scheduled flush must not write to the closed transport

    real = RecordingTransport()
    transport = HeadWithBodyTransport(real, loop)  # type: ignore[arg-type]
    transport.write(b"last")
    transport.write_eof()
    assert real.writes == [b"last", b"<eof>"]

    real = RecordingTransport()
    transport = HeadWithBodyTransport(real, loop)  # type: ignore[arg-type]
    transport.write(b"never")
    transport.abort()
    await asyncio.sleep(0)
    assert real.writes == [] and real.aborted
    assert transport.get_extra_info("peername") == ("127.0.0.1", 5)  # the rest is the real transport's


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/stream":  # chunked: no content-length
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one,", b"two,", b"x" * 100_000, b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body = f"page {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture()
async def server() -> Any:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_app, http=ShopHttpProtocol, log_level="warning", lifespan="on")
    served = uvicorn.Server(config)
    task = asyncio.create_task(served.serve(sockets=[sock]))
    while not served.started:
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    served.should_exit = True
    await task


async def test_responses_stay_whole_through_a_real_server(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:  # one kept-alive connection
        pages = [await client.get(f"/p{n}") for n in range(20)]
        assert [page.text for page in pages] == [f"page /p{n}" for n in range(20)]
        head = await client.head("/p1")
        assert head.status_code == 200 and head.content == b""
        streamed = await client.get("/stream")
        assert streamed.text == "one,two," + "x" * 100_000 + "three"
        closing = await client.get("/last", headers={"connection": "close"})
        assert closing.text == "page /last"
