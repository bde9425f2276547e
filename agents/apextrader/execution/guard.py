"""The live-trading guard: real orders only when all three locks are open.

1. the spec says `mode: live`,
2. `DRY_RUN` is explicitly false (it defaults to true; anything unrecognised counts as true),
3. credentials are present for every configured exchange: `<EXCHANGE>_API_KEY`/`_API_SECRET`
   (`_API_PASSWORD` for OKX's passphrase), or the seed's `EXCHANGE_API_KEY`/`EXCHANGE_API_SECRET`
   when exactly one exchange is configured.

`mode: paper` always paper-trades. `mode: live` with `DRY_RUN` not false paper-trades and says why (a
dry run of a live spec). `mode: live` with `DRY_RUN=false` but missing credentials refuses to start:
the user asked for real orders and must not silently get paper ones. Messages name variables, never
their values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

_FALSE = frozenset({"false", "0", "no", "off"})
_NEEDS_PASSWORD = frozenset({"okx"})


class LiveModeRefused(RuntimeError):
    """Live mode was asked for but a lock is closed; the agent must not start."""


@dataclass(frozen=True)
class Credentials:
    api_key: SecretStr
    secret: SecretStr
    password: SecretStr | None = None

    def secrets(self) -> list[str]:
        """The raw values, for redaction only."""
        vals = [self.api_key.get_secret_value(), self.secret.get_secret_value()]
        if self.password is not None:
            vals.append(self.password.get_secret_value())
        return [v for v in vals if v]


@dataclass(frozen=True)
class ExecutionMode:
    mode: Literal["paper", "live"]
    why: str
    credentials: dict[str, Credentials] = field(default_factory=dict)


def dry_run(env: Mapping[str, str]) -> bool:
    return env.get("DRY_RUN", "true").strip().lower() not in _FALSE


def credentials_for(exchange: str, env: Mapping[str, str], n_exchanges: int) -> Credentials | None:
    prefixes = [exchange.upper()] + (["EXCHANGE"] if n_exchanges == 1 else [])
    for prefix in prefixes:
        key, secret = env.get(f"{prefix}_API_KEY", ""), env.get(f"{prefix}_API_SECRET", "")
        password = env.get(f"{prefix}_API_PASSWORD", "")
        if key and secret and (password or exchange not in _NEEDS_PASSWORD):
            return Credentials(SecretStr(key), SecretStr(secret), SecretStr(password) if password else None)
    return None


def _missing(exchange: str, n_exchanges: int) -> str:
    names = f"{exchange.upper()}_API_KEY/_API_SECRET" + (
        "/_API_PASSWORD" if exchange in _NEEDS_PASSWORD else ""
    )
    return names + (" (or EXCHANGE_API_KEY/EXCHANGE_API_SECRET)" if n_exchanges == 1 else "")


def execution_mode(spec_mode: str, exchanges: Sequence[str], env: Mapping[str, str]) -> ExecutionMode:
    """Decide paper or live; raises LiveModeRefused when live is asked for but cannot be had."""
    if spec_mode != "live":
        return ExecutionMode("paper", "spec mode is paper")
    if dry_run(env):
        return ExecutionMode("paper", "spec mode is live but DRY_RUN is not false: dry run, paper fills only")
    creds: dict[str, Credentials] = {}
    missing: list[str] = []
    for ex in exchanges:
        c = credentials_for(ex, env, len(exchanges))
        if c is None:
            missing.append(_missing(ex, len(exchanges)))
        else:
            creds[ex] = c
    if missing:
        raise LiveModeRefused(
            "refusing to start in live mode: spec mode is live and DRY_RUN=false, but credentials are "
            f"missing: {'; '.join(missing)}. Put them in the Secret named by "
            "spec.execution.credentialsSecret (or the environment), or set DRY_RUN=true to paper-trade."
        )
    return ExecutionMode("live", "spec mode is live, DRY_RUN=false and credentials are present", creds)


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret value in `text` (exception messages can echo request data)."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


class RedactingFilter(logging.Filter):
    """Rewrites any log record whose text contains a secret (ccxt logs request headers, including
    the API key, at DEBUG)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(s in text for s in self.secrets):
            record.msg, record.args = redact(text, self.secrets), None
        return True


#: Loggers that can see request data: ccxt's own, and ours.
SENSITIVE_LOGGERS = ("ccxt", "ccxt.base.exchange", "apextrader")


def install_redaction(secrets: Sequence[str]) -> RedactingFilter:
    """Attach a redacting filter to every logger that can see credentials (idempotent per secret set)."""
    filt = RedactingFilter(secrets)
    for name in SENSITIVE_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RedactingFilter)]:
            logger.removeFilter(old)
        logger.addFilter(filt)
    return filt
