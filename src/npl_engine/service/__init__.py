"""The real-time scoring service: FastAPI on uvicorn (see ``docs/service.md``).

``npl serve`` runs it; :func:`create_app` builds the application for tests or other servers.
"""

from __future__ import annotations

from typing import Any

import uvicorn

from npl_engine.service._app import ServiceSettings, create_app
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

    One process: the event loop parses and answers requests, one worker thread computes
    batches and writes decision records.
    """
    configure_logging()
    app: Any = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
