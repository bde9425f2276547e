"""Live orders through the unmodified ccxt binanceusdm against a local server speaking Binance's wire
format: idempotent by client order id, errors mapped to reasons, only safe retries, no secret leaks."""

from __future__ import annotations

import logging

import pytest

from apextrader.contracts import OrderApproved
from apextrader.execution.guard import credentials_for
from apextrader.execution.live import LiveExecutor, build_exchange
from apextrader.execution.orders import OrderState

from .conftest import Served

KEY, SECRET = "live-key-7f3a9c1e5b", "live-secret-0d8e2b4f6a"
ENV = {"BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET}


def order(coid: str = "a1" * 16, amount: float = 0.01, **kw: object) -> OrderApproved:
    return OrderApproved.model_validate(
        {
            "client_order_id": coid,
            "exchange": "binance",
            "symbol": "BTC/USDT:USDT",
            "side": "buy",
            "amount": amount,
            "mid_at_decision": 50_000.0,
            "notional": amount * 50_000,
            "leverage": 1.0,
            "weight_applied": 100,
            **kw,
        }
    )


def executor(served: Served, timeout_ms: int = 10_000, lookup: str = "by_client_id") -> LiveExecutor:
    creds = credentials_for("binance", ENV, 1)
    assert creds is not None
    ex = build_exchange("binance", creds, timeout_ms=timeout_ms, session=served.session())
    return LiveExecutor(
        {"binance": ex},
        creds.secrets(),
        max_retries=2,
        backoff_s=0.01,
        lookup={"binance": lookup},  # type: ignore[dict-item]
    )


@pytest.mark.parametrize("lookup", ["by_client_id", "scan"])
async def test_submit_fills_and_redelivery_never_submits_twice(fake_binance: Served, lookup: str) -> None:
    fake = fake_binance.fake
    live = executor(fake_binance, lookup=lookup)
    try:
        first = await live.submit(order())
        assert first.state is OrderState.FILLED and not first.recovered
        assert first.filled == pytest.approx(0.01) and first.avg_price == pytest.approx(50_000.0)
        again = await live.submit(order())  # redelivered event / restarted agent
        assert again.recovered and again.state is OrderState.FILLED
        assert again.exchange_order_id == first.exchange_order_id
        assert fake.submits == 1
        posted = [r for r in fake.requests if r[0] == "POST"]
        assert len(posted) == 1 and '"newClientOrderId": "' + "a1" * 16 + '"' in posted[0][3]
        assert posted[0][2]["X-MBX-APIKEY"] == KEY  # the key reached the exchange, signed request
    finally:
        await live.close()


@pytest.mark.parametrize(
    ("script", "reason", "retryable"),
    [
        (["insufficient"], "insufficient_funds", False),
        (["reject"], "exchange_rejected", False),
        (["ratelimit", "ratelimit", "ratelimit"], "rate_limit", True),
    ],
)
async def test_errors_map_to_reasons(
    fake_binance: Served, script: list[str], reason: str, retryable: bool
) -> None:
    fake = fake_binance.fake
    fake.script.extend(script)
    live = executor(fake_binance)
    try:
        out = await live.submit(order())
        assert out.state is OrderState.REJECTED and out.reason == reason and out.retryable is retryable
        assert fake.submits == 0
    finally:
        await live.close()


async def test_rate_limit_is_retried_then_succeeds(fake_binance: Served) -> None:
    fake = fake_binance.fake
    fake.script.extend(["ratelimit", "ok"])
    live = executor(fake_binance)
    try:
        out = await live.submit(order())
        assert out.state is OrderState.FILLED and fake.submits == 1
    finally:
        await live.close()


async def test_unknown_outcome_is_looked_up_not_resubmitted(fake_binance: Served) -> None:
    fake = fake_binance.fake
    fake.script.append("accept_then_hang")
    fake.hang_s = 1.0
    live = executor(fake_binance, timeout_ms=300)
    try:
        out = await live.submit(order())
        assert out.recovered and out.state is OrderState.FILLED
        assert fake.submits == 1
        assert len([r for r in fake.requests if r[0] == "POST"]) == 1
    finally:
        await live.close()


async def test_partial_open_and_cancel(fake_binance: Served) -> None:
    fake = fake_binance.fake
    fake.script.extend(["partial", "open"])
    live = executor(fake_binance)
    try:
        part = await live.submit(order("b2" * 16, amount=0.02))
        assert part.state is OrderState.PARTIALLY_FILLED and part.filled == pytest.approx(0.01)
        opened = await live.submit(order("c3" * 16, order_type="limit", limit_price=49_000.0))
        assert opened.state is OrderState.NEW and opened.exchange_order_id
        cancelled = await live.cancel(order("c3" * 16), opened.exchange_order_id)
        assert cancelled.state is OrderState.CANCELLED
    finally:
        await live.close()


async def test_secrets_never_in_logs_or_outcomes(
    fake_binance: Served, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fake_binance.fake
    fake.script.extend(["insufficient", "reject"])
    caplog.set_level(logging.DEBUG)
    live = executor(fake_binance)
    try:
        outs = [
            await live.submit(order("d4" * 16)),
            await live.submit(order("e5" * 16)),
            await live.submit(order()),
        ]
    finally:
        await live.close()
    text = caplog.text + "".join(repr(o) for o in outs) + repr(live.exchanges)
    assert outs[0].message and outs[1].message
    assert KEY not in text and SECRET not in text
    # ccxt did log the request headers at DEBUG: the key is there, redacted.
    assert "'X-MBX-APIKEY': '***'" in caplog.text


@pytest.mark.parametrize(
    ("exchange", "cls"), [("binance", "binanceusdm"), ("bybit", "bybit"), ("okx", "okx")]
)
def test_exchanges_build_for_linear_perpetuals_with_their_credentials(exchange: str, cls: str) -> None:
    env = {f"{exchange.upper()}_API_KEY": "k", f"{exchange.upper()}_API_SECRET": "s", "OKX_API_PASSWORD": "p"}
    creds = credentials_for(exchange, env, 3)
    assert creds is not None
    ex = build_exchange(exchange, creds)
    assert ex.id == cls and ex.apiKey == "k" and ex.secret == "s"
    assert (ex.password == "p") == (exchange == "okx")
    assert ex.options.get("defaultType") in ("swap", "future")
