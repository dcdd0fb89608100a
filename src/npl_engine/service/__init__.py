"""The real-time scoring service: FastAPI on uvicorn (see ``docs/service.md``).

``npl serve`` runs it; :func:`create_app` builds the application for tests or other servers.
"""

from __future__ import annotations

import gc
from typing import Any

import uvicorn

from npl_engine.service._app import ServiceSettings, create_app
from npl_engine.service._http import server_config
from npl_engine.service._keys import (
    API_KEY_ENV,
    KEYS_FILE_ENV,
    ApiKeys,
    create_key,
    default_keys_file,
    read_key_records,
)
from npl_engine.service._logging import configure_logging

__all__ = [
    "API_KEY_ENV",
    "KEYS_FILE_ENV",
    "ApiKeys",
    "ServiceSettings",
    "create_app",
    "create_key",
    "default_keys_file",
    "read_key_records",
    "serve",
]


def serve(settings: ServiceSettings, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the models and serve until interrupted (Ctrl-C or SIGTERM).

    Three processes: this one parses and answers requests on one event loop (uvloop,
    httptools, one write per answer: :mod:`._http`); the engine process it starts scores
    batches, and the recording process it starts commits their decision records.
    """
    configure_logging()
    app: Any = create_app(settings)
    # What is loaded now lives as long as the service: keep it out of every collection, which
    # otherwise stalls a request now and then (p99 82 ms instead of 200 ms in the benchmark).
    gc.collect()
    gc.freeze()
    uvicorn.Server(server_config(app, host=host, port=port)).run()
