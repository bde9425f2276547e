"""The environment an `apex up` agent process starts with: the user's, minus exchange credentials
for every agent but the execution agent (only it may reach an exchange with keys; the scanner's
public data needs none)."""

from __future__ import annotations

from collections.abc import Mapping

from apextrader.runtime.redaction import is_credential


def agent_env(environ: Mapping[str, str], agent: str) -> dict[str, str]:
    if agent == "execution":
        return dict(environ)
    return {k: v for k, v in environ.items() if not is_credential(k)}
