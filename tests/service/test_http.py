"""The service's HTTP protocol: what one turn of the loop writes leaves in one write."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from npl_engine.service._http import TESTED_UVICORN, CoalescingProtocol, CoalescingTransport
from service._server import Server


@dataclass
class FakeTransport:
    """Records writes and closing."""

    writes: list[bytes] = field(default_factory=list)
    closed: bool = False

    def write(self, data: bytes) -> None:
        """Remember one write."""
        self.writes.append(data)

    def is_closing(self) -> bool:
        """Closing once closed."""
        return self.closed

    def close(self) -> None:
        """Close."""
        self.closed = True

    def write_eof(self) -> None:
        """Mark the end of the stream among the writes."""
        self.writes.append(b"<eof>")

    def get_extra_info(self, name: str) -> Any:
        """Only the peer name."""
        return ("127.0.0.1", 1) if name == "peername" else None


def test_writes_of_one_turn_leave_together_in_order() -> None:
    """Head and body of an answer: one write, on the loop's next turn."""

    async def scenario() -> list[list[bytes]]:
        inner = FakeTransport()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"")
        transport.write(b'{"a": 1}')
        seen = [list(inner.writes)]
        await asyncio.sleep(0)
        seen.append(list(inner.writes))
        transport.write(b"next")
        await asyncio.sleep(0)
        seen.append(list(inner.writes))
        return seen

    before, after, later = asyncio.run(scenario())
    assert before == []
    assert after == [b'HTTP/1.1 200 OK\r\n\r\n{"a": 1}']
    assert later == [*after, b"next"]


def test_several_pieces_and_the_end_of_the_stream_keep_their_order() -> None:
    """Pieces given together join the pending write; the end of the stream comes after them."""

    async def scenario() -> list[bytes]:
        inner = FakeTransport()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"head ")
        transport.writelines([b"body ", b"more"])
        transport.write_eof()
        await asyncio.sleep(0)
        return inner.writes

    assert asyncio.run(scenario()) == [b"head body more", b"<eof>"]


def test_close_sends_what_was_written_first_and_nothing_after() -> None:
    """A connection closed after its answer (``Connection: close``) still gets the answer."""

    async def scenario() -> FakeTransport:
        inner = FakeTransport()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"answer")
        transport.close()
        transport.write(b"too late")
        await asyncio.sleep(0)
        return inner

    inner = asyncio.run(scenario())
    assert inner.writes == [b"answer"]
    assert inner.closed


def test_everything_else_is_the_transport_s_own() -> None:
    """The server asks the transport for addresses and closing state: the wrapped one answers."""
    inner = FakeTransport()
    transport: Any = CoalescingTransport(inner, asyncio.new_event_loop())  # type: ignore[arg-type]
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
    inner.closed = True
    assert transport.is_closing()


def test_the_service_writes_through_it(server: Server) -> None:
    """The server (configured as `npl serve` configures it) answers whole through real HTTP."""
    assert server.server.config.http is CoalescingProtocol
    host, port = server.url.removeprefix("http://").split(":")
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    data = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):  # until the server closes, as it was asked to
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    lengths = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")]
    assert lengths == [f"content-length: {len(body)}".encode()]
    assert json.loads(body)["status"] == "ok"


def test_uvicorn_is_a_tested_version_whose_protocol_writes_through_the_wrapper() -> None:
    """Fails loudly on a uvicorn not tested, or whose private protocol no longer fits.

    CoalescingProtocol subclasses uvicorn's private HttpToolsProtocol: it needs ``self.loop``,
    the transport taken in ``connection_made``, and every response written through it. A
    request fed straight to the protocol must leave as one write of the wrapped transport.
    """
    version = ".".join(uvicorn.__version__.split(".")[:2])
    assert version in TESTED_UVICORN, (
        f"uvicorn {uvicorn.__version__} is not among the versions npl serve's HTTP protocol "
        f"was tested with ({', '.join(TESTED_UVICORN)}): see src/npl_engine/service/_http.py"
    )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"16")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"status": "ok"}'})

    async def scenario() -> tuple[Any, FakeTransport]:
        config = uvicorn.Config(app, http=CoalescingProtocol, lifespan="off", log_config=None)
        config.load()
        protocol = CoalescingProtocol(
            config=config,
            server_state=ServerState(),
            app_state={},
            _loop=asyncio.get_running_loop(),
        )
        inner = FakeTransport()
        protocol.connection_made(inner)  # type: ignore[arg-type]
        protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(20):  # the answer's task, then the flush on the next turn
            await asyncio.sleep(0)
        return protocol, inner

    protocol, inner = asyncio.run(scenario())
    assert isinstance(protocol.transport, CoalescingTransport)
    assert len(inner.writes) == 1, inner.writes
    head, _, body = inner.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b'{"status": "ok"}'
