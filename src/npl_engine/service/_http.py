"""The HTTP protocol of ``npl serve``: uvicorn's httptools protocol, one write per response.

uvicorn writes a response's status line and headers with one system call and its body with
another. On loopback each write is a trip through the kernel's network stack and a segment
the client must read; the two writes of a small JSON answer were the largest single cost of
the HTTP process (a third of its CPU under the benchmark's load, docs/service.md).
:class:`CoalescingProtocol` gives uvicorn a transport that collects what one turn of the event
loop writes to a connection and sends it with one call on the next turn.

It subclasses uvicorn's ``HttpToolsProtocol``, which is not uvicorn's public API, and relies
on how that class works inside: it keeps ``self.loop``, takes its transport in
``connection_made`` and writes every response through it. So uvicorn is pinned to the minor
versions it was tested with (:data:`TESTED_UVICORN`, and the bound in ``pyproject.toml``);
``tests/service/test_http.py`` fails on any other version and whenever those internals change.
To take a new uvicorn: run those tests and the service benchmark with it, then add it here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["TESTED_UVICORN", "CoalescingProtocol", "server_config"]

#: uvicorn minor versions the protocol was tested with (``pyproject.toml`` allows only these).
TESTED_UVICORN: tuple[str, ...] = ("0.54",)


class CoalescingTransport:
    """A transport that sends what is written to it in one turn of the loop with one call.

    Writing and closing go through it; everything else is the wrapped transport's own.

    Parameters
    ----------
    transport
        The connection's transport.
    loop
        The event loop the connection runs on.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Keep ``data`` to send with whatever else this turn of the loop writes."""
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Send what is kept, in order, with one write (nothing if the connection is closing)."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def writelines(self, chunks: Iterable[bytes]) -> None:
        """As :meth:`write`, for several pieces."""
        self.write(b"".join(chunks))

    def write_eof(self) -> None:
        """Send what is kept, then end the stream."""
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        """Send what is kept, then close (the transport still sends its own buffer first)."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Wrap the connection's transport."""
        wrapped: Any = CoalescingTransport(transport, self.loop)
        super().connection_made(wrapped)


def server_config(app: Any, *, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration of the service: uvloop, :class:`CoalescingProtocol`, no logs.

    The service writes its own access log (:mod:`._app`) and JSON logs (:mod:`._logging`).
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=CoalescingProtocol,
        ws="none",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
