"""The live guard: every combination of the three locks (mode, DRY_RUN, credentials)."""

from __future__ import annotations

import itertools

import pytest

from apextrader.execution.guard import LiveModeRefused, credentials_for, dry_run, execution_mode, redact

KEYS = {"BINANCE_API_KEY": "k-123456", "BINANCE_API_SECRET": "s-abcdef"}


@pytest.mark.parametrize(
    ("mode", "dry", "creds"),
    list(itertools.product(["paper", "live"], ["true", "false", None], [True, False])),
)
def test_every_combination_of_the_three_locks(mode: str, dry: str | None, creds: bool) -> None:
    env: dict[str, str] = dict(KEYS) if creds else {}
    if dry is not None:
        env["DRY_RUN"] = dry
    live_asked = mode == "live" and dry == "false"
    if live_asked and not creds:
        with pytest.raises(LiveModeRefused) as exc:
            execution_mode(mode, ["binance"], env)
        msg = str(exc.value)
        assert "BINANCE_API_KEY" in msg and "DRY_RUN" in msg
        assert "k-123456" not in msg
        return
    got = execution_mode(mode, ["binance"], env)
    assert got.mode == ("live" if live_asked and creds else "paper")
    if got.mode == "live":
        assert got.credentials["binance"].api_key.get_secret_value() == "k-123456"
    else:
        assert got.credentials == {}
        assert ("DRY_RUN" in got.why) == (mode == "live")


def test_dry_run_defaults_true_and_unknown_values_are_safe() -> None:
    assert dry_run({}) and dry_run({"DRY_RUN": "True"}) and dry_run({"DRY_RUN": "maybe"})
    assert not dry_run({"DRY_RUN": "FALSE"}) and not dry_run({"DRY_RUN": "0"})


def test_seed_keys_only_with_one_exchange_and_okx_needs_a_passphrase() -> None:
    seed = {"EXCHANGE_API_KEY": "k", "EXCHANGE_API_SECRET": "s", "DRY_RUN": "false"}
    assert credentials_for("bybit", seed, 1) is not None
    assert credentials_for("bybit", seed, 2) is None
    with pytest.raises(LiveModeRefused, match="BYBIT_API_KEY"):
        execution_mode("live", ["binance", "bybit"], seed)
    okx = {"OKX_API_KEY": "k", "OKX_API_SECRET": "s"}
    assert credentials_for("okx", okx, 1) is None
    assert credentials_for("okx", {**okx, "OKX_API_PASSWORD": "p"}, 1) is not None
    both = {**KEYS, "OKX_API_KEY": "k", "OKX_API_SECRET": "s", "OKX_API_PASSWORD": "p", "DRY_RUN": "false"}
    assert set(execution_mode("live", ["binance", "okx"], both).credentials) == {"binance", "okx"}


def test_credentials_never_print() -> None:
    c = credentials_for("binance", KEYS, 1)
    assert c is not None
    assert "k-123456" not in repr(c) and "s-abcdef" not in str(c)
    assert redact("sent k-123456 and s-abcdef", c.secrets()) == "sent *** and ***"
