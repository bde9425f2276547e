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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

from apextrader.runtime.redaction import redact
from apextrader.venues.credentials import Credentials
from apextrader.venues.profiles import PROFILES

__all__ = ["Credentials", "ExecutionMode", "LiveModeRefused", "credentials_for", "execution_mode", "redact"]

_FALSE = frozenset({"false", "0", "no", "off"})
_NEEDS_PASSWORD = frozenset(ex for ex, p in PROFILES.items() if p.needs_password)


class LiveModeRefused(RuntimeError):
    """Live mode was asked for but a lock is closed; the agent must not start."""


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
