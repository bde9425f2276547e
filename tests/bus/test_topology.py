from __future__ import annotations

from apextrader.bus import topology as t
from apextrader.contracts import parse_pipeline


def spec(canary: bool):  # type: ignore[no-untyped-def]
    s: dict[str, object] = {"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"]}
    if canary:
        s["canary"] = {"weight": 5}
    return parse_pipeline({"kind": "TradingPipeline", "metadata": {"name": "btc-perp"}, "spec": s}).spec


def test_names_follow_conventions() -> None:
    assert t.subject("btc-perp", "signal.validated", "canary") == "apex.btc-perp.signal.validated.canary"
    assert t.stream_name("btc-perp", "SIGNALS") == "APEX_BTC_PERP_SIGNALS"
    assert t.durable_name("risk-manager", "canary") == "risk-manager-canary"
    assert t.kv_bucket("btc-perp") == "apex-btc-perp"
    assert t.deployment_name("btc-perp", "risk-manager", "stable") == "btc-perp-risk-manager-stable"
    assert t.deployment_name("btc-perp", "market-scanner", "shared") == "btc-perp-market-scanner"
    assert t.nats_service_name("btc-perp") == "btc-perp-nats"
    assert t.config_map_name("btc-perp") == "btc-perp-config"


def test_every_event_subject_falls_in_exactly_one_stream() -> None:
    topo = t.declare(spec(True), "btc-perp")
    for event_type, domain in t.EVENT_DOMAIN.items():
        subj = t.subject("btc-perp", event_type, "stable")
        owners = [s.domain for s in topo.streams if any(t.subject_matches(p, subj) for p in s.subjects)]
        assert owners == [domain], (event_type, owners)


def test_canary_adds_decision_track_consumers_only() -> None:
    without = t.declare(spec(False), "btc-perp")
    with_canary = t.declare(spec(True), "btc-perp")
    extra = {(c.agent, c.track) for c in with_canary.consumers} - {
        (c.agent, c.track) for c in without.consumers
    }
    assert extra == {("strategy-builder", "canary"), ("risk-manager", "canary"), ("execution", "canary")}
    rm = with_canary.consumers_for("risk-manager", "canary")
    validated = next(c for c in rm if c.stream.endswith("_SIGNALS"))
    assert validated.filter_subjects == ["apex.btc-perp.signal.validated.canary"]
    assert all(len(c.backoff_s) < c.max_deliver for c in with_canary.consumers)


def test_subject_matching_follows_nats_wildcards() -> None:
    assert t.subject_matches("apex.p.signal.>", "apex.p.signal.validated.canary")
    assert not t.subject_matches("apex.p.signal.>", "apex.p.signal")
    assert t.subject_matches("apex.p.order.filled.*", "apex.p.order.filled.stable")
    assert not t.subject_matches("apex.p.order.filled.*", "apex.p.order.filled.stable.x")
    assert not t.subject_matches("apex.p.order.*.stable", "apex.p.signal.filled.stable")
