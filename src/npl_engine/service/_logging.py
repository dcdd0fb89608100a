"""Structured logs: one JSON object per line on stderr, from the standard library's logging."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["ACCESS_LOGGER", "ERROR_LOGGER", "JsonFormatter", "configure_logging"]

ACCESS_LOGGER = "npl_engine.service.access"
ERROR_LOGGER = "npl_engine.service.error"


class JsonFormatter(logging.Formatter):
    """Format a record as JSON: time (UTC), level, logger, message and its ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line; a traceback, if any, goes in ``exception`` (logs only, never clients)."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "info") -> None:
    """Send the service's and uvicorn's logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("npl_engine.service", "npl_engine.audit", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    # The service writes its own access log (with request id and key id); uvicorn's is off.
    logging.getLogger("uvicorn.access").disabled = True
