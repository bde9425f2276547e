from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from apextrader.contracts import (
    Bar,
    MarketSnapshot,
    MarketSnapshotEvent,
    OrderApproved,
    OrderApprovedEvent,
    PipelineError,
    SignalProposed,
    SignalProposedEvent,
    decode_event,
    derive_id,
    load_pipeline,
    parse_pipeline,
    track_spec,
    utcnow,
)

ROOT = Path(__file__).resolve().parents[2]


def snapshot_event() -> MarketSnapshotEvent:
    bar = Bar(open_time=utcnow(), open=100.0, high=101.0, low=99.5, close=100.5, volume=12.0)
    data = MarketSnapshot(exchange="binance", symbol="BTC/USDT:USDT", timeframe="1m", bar=bar)
    return MarketSnapshotEvent.new(data, pipeline="btc-perp", source_agent="market-scanner")


def test_roundtrip_preserves_every_field() -> None:
    ev = snapshot_event()
    back = decode_event(ev.to_json())
    assert isinstance(back, MarketSnapshotEvent)
    assert back == ev
    assert ev.correlation_id == ev.id and len(ev.id) == 32


def test_derived_event_keeps_correlation_and_sets_causation_deterministically() -> None:
    ev = snapshot_event()
    sig = SignalProposed(
        strategy="breakout",
        exchange="binance",
        symbol="BTC/USDT:USDT",
        side="long",
        strength=0.5,
        bar_time=ev.data.bar.open_time,
        price=100.5,
    )
    a = ev.derive(SignalProposedEvent, sig, source_agent="strategy-builder", track="canary")
    b = ev.derive(SignalProposedEvent, sig, source_agent="strategy-builder", track="canary")
    c = ev.derive(SignalProposedEvent, sig, source_agent="strategy-builder", track="stable")
    assert a.correlation_id == ev.correlation_id
    assert a.causation_id == ev.id
    assert a.origin_ts == ev.origin_ts
    assert a.id == b.id == derive_id(ev.id, "signal.proposed", "canary", 0)
    assert c.id != a.id


def test_decode_rejects_wrong_payload_for_type() -> None:
    raw = json.loads(snapshot_event().to_json())
    raw["type"] = "order.approved"
    with pytest.raises(ValidationError):
        decode_event(json.dumps(raw))


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(type="market.nope"), "type"),
        (lambda d: d.pop("correlation_id"), "correlation_id"),
        (lambda d: d.update(id="XYZ"), "id"),
        (lambda d: d["data"]["bar"].update(low=200.0), "low"),
        (lambda d: d["data"].update(extra_key=1), "extra_key"),
    ],
)
def test_decode_names_the_problem(mutate, needle: str) -> None:  # type: ignore[no-untyped-def]
    raw = json.loads(snapshot_event().to_json())
    mutate(raw)
    with pytest.raises(ValidationError) as info:
        decode_event(json.dumps(raw))
    assert needle in str(info.value)


def test_order_approved_requires_hex_client_order_id() -> None:
    with pytest.raises(ValidationError):
        OrderApproved(
            client_order_id="not-hex",
            exchange="okx",
            symbol="BTC/USDT:USDT",
            side="buy",
            amount=1,
            mid_at_decision=100,
            notional=100,
            leverage=1,
            weight_applied=5,
        )
    assert OrderApprovedEvent.event_type == "order.approved"


def test_example_pipeline_is_valid_and_canary_track_merges_template() -> None:
    tp = load_pipeline(ROOT / "manifests" / "pipeline.yaml")
    assert tp.name == "btc-perp"
    assert tp.spec.canary is not None and tp.spec.canary.weight == 5
    canary = track_spec(tp.spec, "canary")
    assert canary.strategies.breakout.lookback == 30
    assert canary.strategies.breakout.volume_factor == 1.5
    # untouched keys come from the base spec
    assert canary.strategies.breakout.stop_atr == tp.spec.strategies.breakout.stop_atr
    assert track_spec(tp.spec, "stable").strategies.breakout.lookback == 20


def doc(**spec: object) -> dict[str, object]:
    base: dict[str, object] = {"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"]}
    base.update(spec)
    return {
        "apiVersion": "apextrader.io/v1alpha1",
        "kind": "TradingPipeline",
        "metadata": {"name": "p"},
        "spec": base,
    }


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"canary": {"weight": 150}}, "spec.canary.weight"),
        ({"canary": {"weight": 5, "steps": [{"setWeight": 5}]}}, "spec.canary"),
        ({"canary": {"steps": [{"setWeight": 25}, {"setWeight": 5}]}}, "spec.canary"),
        ({"canary": {"steps": [{"setWeight": 5, "pause": {}}]}}, "spec.canary.steps.0"),
        ({"mode": "live"}, "execution.credentialsSecret"),
        ({"symbols": ["btcusdt"]}, "spec.symbols.0"),
        ({"exchanges": ["kraken"]}, "spec.exchanges.0"),
        ({"agents": {"risk-manager": {"replicas": 2}}}, "agents.risk-manager.replicas"),
        ({"bus": {"url": "nats://x:4222", "managed": {}}}, "spec.bus"),
        ({"typo": 1}, "spec.typo"),
        ({"source": {"kind": "replay"}}, "source.path"),
        ({"canary": {"weight": 5, "analysis": {"interval": "5 minutes"}}}, "spec.canary.analysis.interval"),
    ],
)
def test_bad_specs_are_rejected_naming_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(doc(**spec))
    assert any(field in line for line in info.value.errors), info.value.errors


def test_bad_name_is_rejected() -> None:
    d = doc()
    d["metadata"] = {"name": "1-bad"}
    with pytest.raises(PipelineError, match=r"metadata\.name"):
        parse_pipeline(d)


def test_invalid_canary_template_names_template_path() -> None:
    tp = parse_pipeline(doc(canary={"weight": 5, "template": {"risk": {"maxLeverage": -1}}}))
    with pytest.raises(PipelineError, match=r"spec\.canary\.template\.risk\.maxLeverage"):
        track_spec(tp.spec, "canary")


def test_bus_defaults_to_managed() -> None:
    tp = parse_pipeline(doc())
    assert tp.spec.bus.managed is not None and tp.spec.bus.url is None
    assert tp.spec.canary is None
