"""`apex up` hands exchange credentials only to the execution agent."""

from __future__ import annotations

from apextrader.local.agent_env import agent_env

ENV = {
    "BINANCE_API_KEY": "k",
    "OKX_API_PASSWORD": "p",
    "EXCHANGE_API_SECRET": "s",
    "PATH": "/bin",
    "DRY_RUN": "true",
}


def test_only_execution_gets_the_keys() -> None:
    assert agent_env(ENV, "execution") == ENV
    for agent in (
        "market-scanner",
        "feature-engineer",
        "strategy-builder",
        "backtester",
        "event-watcher",
        "risk-manager",
    ):
        assert agent_env(ENV, agent) == {"PATH": "/bin", "DRY_RUN": "true"}
