"""Helpers of the service tests: a service running in a thread, loans as clients send them."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import polars as pl
import uvicorn

from npl_engine.service import ServiceSettings, create_app
from npl_engine.service._http import server_config


@dataclass
class Server:
    """A service running in a thread of the test process."""

    url: str
    key: str
    key_id: str
    settings: ServiceSettings
    app: Any
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client sending this server's key (``headers={}`` sends none)."""
        headers = kwargs.pop("headers", {"X-API-Key": self.key})
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def stop(self) -> None:
        """Shut the server down and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(settings: ServiceSettings, *, key: str = "", key_id: str = "") -> Server:
    """Start uvicorn on a free loopback port in a thread; return once it accepts requests."""
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port))  # as `npl serve`
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            msg = "the service did not start"
            raise RuntimeError(msg)
        time.sleep(0.02)
    return Server(f"http://127.0.0.1:{port}", key, key_id, settings, app, server, thread)


def as_json(loans: pl.DataFrame) -> list[dict[str, Any]]:
    """Loans as a client sends them: JSON objects with ISO dates."""
    rows: list[dict[str, Any]] = json.loads(loans.write_json())
    return rows
