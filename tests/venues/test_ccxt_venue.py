"""`CcxtVenue`: live orders through the unmodified ccxt binanceusdm against a local server speaking
Binance's wire format: idempotent by client order id, errors mapped to reasons, only safe retries,
an unknown outcome never called a rejection, no secret leaks."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest

from apextrader.contracts import OrderApproved, utcnow
from apextrader.execution.guard import credentials_for
from apextrader.venues.ccxt_venue import CcxtVenue, build_exchange
from apextrader.venues.orders import OrderState

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


def executor(
    served: Served, timeout_ms: int = 10_000, lookup: str = "by_client_id", grace_s: float = 10.0
) -> CcxtVenue:
    creds = credentials_for("binance", ENV, 1)
    assert creds is not None
    ex = build_exchange("binance", creds, timeout_ms=timeout_ms, session=served.session())
    return CcxtVenue(
        {"binance": ex},
        creds.secrets(),
        max_retries=2,
        backoff_s=0.01,
        grace_s=grace_s,
        lookup={"binance": lookup},  # type: ignore[dict-item]
    )


def now() -> datetime:
    return utcnow()


@pytest.mark.parametrize("lookup", ["by_client_id", "scan"])
async def test_submit_fills_and_redelivery_never_submits_twice(fake_binance: Served, lookup: str) -> None:
    fake = fake_binance.fake
    live = executor(fake_binance, lookup=lookup)
    try:
        first = await live.submit(order(), now(), 0.0)
        assert first.state is OrderState.FILLED and not first.recovered
        assert first.filled == pytest.approx(0.01) and first.avg_price == pytest.approx(50_000.0)
        again = await live.submit(order(), now(), 0.0)  # redelivered event / restarted agent
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
        out = await live.submit(order(), now(), 0.0)
        assert out.state is OrderState.REJECTED and out.reason == reason and out.retryable is retryable
        assert fake.submits == 0
    finally:
        await live.close()


async def test_rate_limit_is_retried_then_succeeds(fake_binance: Served) -> None:
    fake = fake_binance.fake
    fake.script.extend(["ratelimit", "ok"])
    live = executor(fake_binance)
    try:
        out = await live.submit(order(), now(), 0.0)
        assert out.state is OrderState.FILLED and fake.submits == 1
    finally:
        await live.close()


async def test_timeout_after_accept_is_unknown_then_found_never_resubmitted(fake_binance: Served) -> None:
    fake = fake_binance.fake
    fake.script.append("accept_then_hang")
    fake.hang_s = 1.0
    live = executor(fake_binance, timeout_ms=300)
    try:
        first = await live.submit(order(), now(), 0.0)
        # The venue took the order but never answered: unknown, not a rejection.
        assert first.state is OrderState.UNKNOWN and first.reason is None
        again = await live.submit(order(), now(), 0.0)  # the redelivery looks it up
        assert again.recovered and again.state is OrderState.FILLED
        assert fake.submits == 1 and len([r for r in fake.requests if r[0] == "POST"]) == 1
    finally:
        await live.close()


async def test_lookup_lag_never_leads_to_a_second_create(fake_binance: Served) -> None:
    fake = fake_binance.fake
    fake.script.append("accept_then_hang")
    fake.hang_s = 1.0
    fake.lookup_lag_s = 0.8  # the venue's order queries trail its matching engine
    live = executor(fake_binance, timeout_ms=300, grace_s=5.0)
    try:
        outcomes = [await live.submit(order(), now(), 0.0)]
        while outcomes[-1].state is OrderState.UNKNOWN and len(outcomes) < 50:
            outcomes.append(await live.submit(order(), now(), 0.0))
        assert outcomes[0].state is OrderState.UNKNOWN
        assert all(o.state is not OrderState.REJECTED for o in outcomes)
        assert outcomes[-1].state is OrderState.FILLED and outcomes[-1].recovered
        assert len([r for r in fake.requests if r[0] == "POST"]) == 1
    finally:
        await live.close()


async def test_not_found_for_a_grace_period_is_submitted_again(fake_binance: Served) -> None:
    fake = fake_binance.fake
    fake.script.append("drop")  # the request dies before the venue records it
    fake.hang_s = 1.0
    live = executor(fake_binance, timeout_ms=300, grace_s=1.0)
    try:
        first = await live.submit(order(), now(), 0.0)
        assert first.state is OrderState.UNKNOWN
        waiting = await live.submit(order(), now(), 0.0)  # not found, but within the grace period
        assert waiting.state is OrderState.UNKNOWN and fake.submits == 0
        import asyncio

        await asyncio.sleep(1.1)
        done = await live.submit(order(), now(), 0.0)
        assert done.state is OrderState.FILLED and not done.recovered and fake.submits == 1
    finally:
        await live.close()


async def test_order_approved_before_start_waits_a_grace_period(fake_binance: Served) -> None:
    """The previous process may have sent it just before it stopped: "not found" right after a
    start is not proof enough to create it."""
    from datetime import timedelta

    live = executor(fake_binance, grace_s=5.0)
    try:
        out = await live.submit(order(), now() - timedelta(seconds=30), 0.0)
        assert out.state is OrderState.UNKNOWN and fake_binance.fake.submits == 0
    finally:
        await live.close()


async def test_partial_open_and_cancel(fake_binance: Served) -> None:
    fake = fake_binance.fake
    fake.script.extend(["partial", "open"])
    live = executor(fake_binance)
    try:
        part = await live.submit(order("b2" * 16, amount=0.02), now(), 0.0)
        assert part.state is OrderState.PARTIALLY_FILLED and part.filled == pytest.approx(0.01)
        opened = await live.submit(order("c3" * 16, order_type="limit", limit_price=49_000.0), now(), 0.0)
        assert opened.state is OrderState.NEW and opened.exchange_order_id
        listed = await live.open_orders([("binance", "BTC/USDT:USDT")])
        assert sorted(o.client_order_id for o in listed) == ["b2" * 16, "c3" * 16]
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
            await live.submit(order("d4" * 16), now(), 0.0),
            await live.submit(order("e5" * 16), now(), 0.0),
            await live.submit(order(), now(), 0.0),
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
