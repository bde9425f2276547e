"""Secrets never reach a log line: one redacting filter on the root logger's handlers.

A filter on a *handler* sees every record the handler writes, whichever logger made it (ccxt's,
aiohttp's, nats', ours) and whatever it carries: the message, its arguments, extra fields and the
formatted traceback (ccxt exceptions quote request URLs and headers). Logger-level filters would
see only records made on that very logger. URLs with credentials (`nats://user:pass@host`) are
redacted in every record too, whether or not the password is a registered secret.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<cred>[^/\s@:]*(?::[^/\s@]*)?)@")
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


#: Variable suffixes that hold exchange credentials (`BINANCE_API_KEY`, `EXCHANGE_API_SECRET`, ...).
CREDENTIAL_SUFFIXES = ("_API_KEY", "_API_SECRET", "_API_PASSWORD")


def is_credential(name: str) -> bool:
    return name.upper().endswith(CREDENTIAL_SUFFIXES)


def env_secrets(environ: Mapping[str, str]) -> list[str]:
    """The credential values in an environment (registered before anything can log them)."""
    return [v for k, v in environ.items() if is_credential(k) and len(v) >= 4]


def redact_url(text: str) -> str:
    """`nats://user:secret@host:4222` -> `nats://***@host:4222` (any scheme, anywhere in `text`)."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", text)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every secret value and every URL credential in `text`."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return redact_url(text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, extra fields and traceback when they hold a secret or a URL
    credential. Secrets can be added later (the execution agent registers its keys at start)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: set[str] = {s for s in secrets if s}

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets.update(s for s in secrets if s)

    def _clean(self, text: str) -> str:
        return redact(text, self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = self._clean(text)
        if clean != text:
            record.msg, record.args = clean, None
        for key, value in list(record.__dict__.items()):
            if key not in _RESERVED and not key.startswith("_") and isinstance(value, str | dict | list):
                record.__dict__[key] = self._clean_value(value)
        if record.exc_info and record.exc_info[0] is not None:
            # Format the traceback now, redacted, and drop exc_info so no formatter re-renders it raw.
            formatted = "".join(traceback.format_exception(*record.exc_info))
            record.exc_text = self._clean(formatted).rstrip("\n")
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self._clean(record.stack_info)
        return True

    def _clean_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._clean(value)
        if isinstance(value, dict):
            return {k: self._clean_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._clean_value(v) for v in value]
        return value


#: The process's one filter: secrets registered on it survive a handler reset (`setup_logging`).
FILTER = RedactingFilter()


def root_filter() -> RedactingFilter:
    """Put the process's redacting filter on every handler of the root logger (idempotent)."""
    root = logging.getLogger()
    for h in root.handlers:
        if FILTER not in h.filters:
            h.addFilter(FILTER)
    return FILTER


def install_redaction(secrets: Iterable[str]) -> RedactingFilter:
    """Register `secrets` with the redacting filter and make sure every root handler has it."""
    FILTER.add(secrets)
    return root_filter()
