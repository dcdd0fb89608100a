"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections, a bounded request count.

Why not httpx: a general client spends about half a millisecond of Python per request, so on a
two-core machine the load generator took as much CPU as the server it measured, and latency
figures measured the generator. Here each connection is an ``asyncio.Protocol`` that writes
pre-encoded request bytes and parses only the status line, ``content-length`` and the body's
end: a few microseconds per request. ``wrk`` (C) gave the same latencies within noise on this
machine (docs/service.md), so the figures are the server's.

Only what the benchmark needs: HTTP/1.1, ``content-length`` bodies (no chunked responses), one
request in flight per connection, 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["LoadResult", "request_bytes", "run_load"]


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a load run measured.

    Parameters
    ----------
    latencies
        Seconds from writing each measured request to reading its whole response, in order of
        the request counter (NaN where the connection failed before an answer).
    statuses
        HTTP status per measured request (0 where the connection failed).
    wall
        Seconds from releasing the clients to the last response.
    """

    latencies: npt.NDArray[np.float64]
    statuses: npt.NDArray[np.int32]
    wall: float

    @property
    def errors(self) -> int:
        """Requests not answered with 200."""
        return int((self.statuses != 200).sum())

    @property
    def throughput(self) -> float:
        """Requests per second over the measured run."""
        return len(self.statuses) / self.wall

    def percentile_ms(self, q: float) -> float:
        """A latency percentile in milliseconds."""
        return float(np.nanpercentile(self.latencies, q) * 1000)


def request_bytes(
    method: str, path: str, *, host: str, headers: dict[str, str], body: bytes | None = None
) -> bytes:
    """One HTTP/1.1 keep-alive request, encoded."""
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(0)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"content-length:")
        length = 0
        if start >= 0:
            stop = head.find(b"\r\n", start)
            length = int(head[start + 15 : stop if stop >= 0 else None])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        del self.buffer[: end + 4 + length]
        if not self.waiter.done():
            self.waiter.set_result(status)

    async def send(self, request: bytes) -> int:
        """Write a request and wait for its status (0 if the connection is lost)."""
        if self.closed or self.transport is None:
            return 0
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


async def _run(
    host: str, port: int, requests: list[bytes], *, n: int, clients: int, warmup: int
) -> LoadResult:
    loop = asyncio.get_running_loop()
    latencies = np.full(n, np.nan)
    statuses = np.zeros(n, dtype=np.int32)
    warm = iter(range(warmup))
    counter = iter(range(n))
    ready = asyncio.Barrier(clients + 1)
    go = asyncio.Event()

    async def client() -> None:
        _, conn = await loop.create_connection(_Connection, host, port)
        try:
            for i in warm:
                await conn.send(requests[i % len(requests)])
            await ready.wait()
            await go.wait()
            for i in counter:
                start = time.perf_counter()
                status = await conn.send(requests[i % len(requests)])
                statuses[i] = status
                if status:
                    latencies[i] = time.perf_counter() - start
                if conn.closed:  # reconnect after the server closed the connection
                    _, conn = await loop.create_connection(_Connection, host, port)
        finally:
            if conn.transport is not None:
                conn.transport.close()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await ready.wait()
    start = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return LoadResult(latencies, statuses, time.perf_counter() - start)


def run_load(
    host: str,
    port: int,
    requests: list[bytes],
    *,
    n: int,
    clients: int = 50,
    warmup: int = 200,
) -> LoadResult:
    """Send ``n`` requests (cycling through ``requests``) from ``clients`` connections.

    Each client opens its connection and the clients share ``warmup`` unmeasured requests
    before the clock starts; then they share one counter of the ``n`` measured requests, each
    client sending its next request as soon as it has the answer to the last.
    """
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency of the service
        runner = asyncio.run
    return runner(_run(host, port, requests, n=n, clients=clients, warmup=warmup))
