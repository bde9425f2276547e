"""Structured JSON logs, one object per line, with the correlation id of the event being handled."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from apextrader.bus.middleware import current_correlation_id
from apextrader.runtime.redaction import env_secrets, install_redaction

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self.static,
        }
        corr = current_correlation_id.get()
        if corr is not None:
            doc["correlation_id"] = corr
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:  # already formatted (and redacted) by the root handlers' filter
            doc["exc"] = record.exc_text
        return orjson.dumps(doc, default=str).decode()


def setup_logging(level: str, **static: Any) -> logging.Logger:
    """JSON logs on stderr for the whole process; returns the agent's logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(static))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Every record of every logger, tracebacks included, passes the redaction; the credentials in
    # the environment are known to it before anything (a crash, a ccxt debug line) can log them.
    install_redaction(env_secrets(os.environ))
    root.setLevel(level.upper())
    logging.getLogger("nats").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return logging.getLogger(f"apextrader.agent.{static.get('agent', 'agent')}")
