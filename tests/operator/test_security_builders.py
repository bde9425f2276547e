"""The pure security builders: NATS permissions per agent (publish only what it emits), the NATS
auth and credentials Secrets, and the agents' NetworkPolicies (valid Kubernetes 1.34 objects)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from apextrader.bus.topology import subject
from apextrader.bus.topology import subject_matches as matches
from apextrader.contracts import TradingPipeline, load_pipeline, parse_pipeline
from apextrader.contracts.names import AGENT_IDS, EVENT_TYPES, AgentId, agent_tracks
from apextrader_operator.builders import build_children
from apextrader_operator.builders.security import (
    EMITS,
    OPERATOR_USER,
    NetworkScope,
    agent_user,
    build_agent_nats_secret,
    build_agent_network_policy,
    nats_authorization,
    nats_users,
    secret_values,
    user_password,
)
from tests.fixtures.tools import REPO

KEY = b"k"


@pytest.fixture
def demo() -> TradingPipeline:
    return load_pipeline(REPO / "manifests" / "pipeline.yaml")


def _variant(demo: TradingPipeline, **spec: Any) -> TradingPipeline:
    doc = demo.model_dump(by_alias=True, exclude_none=True, mode="json")
    doc["spec"].update(spec)
    return parse_pipeline(doc)


def test_matcher() -> None:
    assert matches("apex.p.>", "apex.p.a.b") and matches("a.*.c", "a.b.c")
    assert not matches("a.*", "a.b.c") and not matches("apex.p.>", "apex.p")


@pytest.mark.parametrize("agent", AGENT_IDS)
def test_each_agent_publishes_exactly_the_events_it_emits(demo: TradingPipeline, agent: AgentId) -> None:
    every_event = {
        subject(demo.name, t, tr): (t, tr) for t in EVENT_TYPES for tr in ("shared", "stable", "canary")
    }
    for track in agent_tracks(agent, has_canary=True):
        user = agent_user(demo, agent, track)
        allowed = {
            (t, tr) for subj, (t, tr) in every_event.items() if any(matches(p, subj) for p in user.publish)
        }
        forwarded = ("stable", "canary") if agent == "backtester" else (track,)
        assert allowed == {(t, tr) for t in EMITS[agent] for tr in forwarded}
        dlqs = {a: f"apex.{demo.name}.dlq.{a}.{track}" for a in AGENT_IDS}
        assert {a for a, s in dlqs.items() if any(matches(p, s) for p in user.publish)} == {agent}


def test_every_event_type_has_an_emitter() -> None:
    assert {t for types in EMITS.values() for t in types} == set(EVENT_TYPES)


def test_agents_cannot_administer_the_bus(demo: TradingPipeline) -> None:
    forbidden = [
        "$JS.API.STREAM.CREATE.APEX_BTC_PERP_ORDERS",
        "$JS.API.STREAM.DELETE.APEX_BTC_PERP_ORDERS",
        "$JS.API.STREAM.PURGE.APEX_BTC_PERP_DLQ",
        "$JS.API.STREAM.UPDATE.APEX_BTC_PERP_SIGNALS",
        "$JS.API.CONSUMER.DELETE.APEX_BTC_PERP_ORDERS.execution-stable",
        "$KV.apex-btc-perp.canary.weight",
        "$KV.apex-btc-perp.halt",
    ]
    for user in nats_users(demo):
        if user.name == OPERATOR_USER:
            continue
        for subj in forbidden:
            assert not any(matches(p, subj) for p in user.publish), (user.name, subj)
        # its inbox, and the max-deliveries advisories of its own durables (to dead-letter them)
        assert user.subscribe[0] == f"_INBOX_{user.name}.>"
        for advisory in user.subscribe[1:]:
            assert advisory.startswith("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.APEX_BTC_PERP_")
            assert advisory.endswith(f".{user.name}"), (user.name, advisory)


def test_auth_conf_lists_every_agent_track_and_the_operator(demo: TradingPipeline) -> None:
    conf = nats_authorization(demo, KEY)
    names = [u.name for u in nats_users(demo)]
    assert len(names) == len(set(names)) == 4 + 3 * 2 + 1
    for name in names:
        assert f'user: "{name}"' in conf
        assert f'password: "{user_password(KEY, demo.name, name)}"' in conf


def test_passwords_are_per_user_and_per_key(demo: TradingPipeline) -> None:
    a = user_password(KEY, demo.name, "execution-stable")
    assert a == user_password(KEY, demo.name, "execution-stable")  # a re-render changes nothing
    assert a != user_password(KEY, demo.name, "execution-canary")
    assert a != user_password(b"other", demo.name, "execution-stable")
    assert a != user_password(KEY, "eth-perp", "execution-stable")


def test_agent_credentials_secret(demo: TradingPipeline) -> None:
    secret = build_agent_nats_secret(demo, "execution", "canary", KEY)
    assert secret["metadata"]["name"] == "btc-perp-execution-canary-nats"
    data = secret_values(secret)
    password = user_password(KEY, demo.name, "execution-canary")
    assert data["APEX_NATS_USER"] == "execution-canary" and data["APEX_NATS_PASSWORD"] == password
    assert data["APEX_NATS_URL"] == f"nats://execution-canary:{password}@btc-perp-nats.default.svc:4222"


def _egress_ports(policy: dict[str, Any]) -> set[int]:
    return {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}


def _validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, "1.34.0", strict=True)


def test_network_policies_reach_only_dns_and_the_bus_in_paper_mode(demo: TradingPipeline) -> None:
    for agent in AGENT_IDS:
        policy = build_agent_network_policy(demo, agent)
        _validate(policy)
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert _egress_ports(policy) == {53, 4222}, agent
        nats_rule = next(r for r in policy["spec"]["egress"] if r["ports"][0]["port"] == 4222)
        assert nats_rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "nats"
        assert policy["spec"]["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]


def test_exchange_egress_only_for_the_scanner_on_ccxt_and_execution_live(demo: TradingPipeline) -> None:
    live = _variant(
        demo,
        mode="live",
        source={"kind": "ccxt"},
        execution={"credentialsSecret": "exchange-keys"},
    )
    with_443 = {a for a in AGENT_IDS if 443 in _egress_ports(build_agent_network_policy(live, a))}
    assert with_443 == {"market-scanner", "execution"}
    rule = next(
        r
        for r in build_agent_network_policy(live, "execution")["spec"]["egress"]
        if r["ports"][0]["port"] == 443
    )
    assert "10.0.0.0/8" in rule["to"][0]["ipBlock"]["except"]  # never into the cluster network
    _validate(build_agent_network_policy(live, "execution"))


def test_external_bus_and_otlp_ports(demo: TradingPipeline) -> None:
    external = _variant(demo, bus={"url": "nats://nats.infra:4333"})
    policy = build_agent_network_policy(external, "risk-manager", "http://otel-collector.observability:4318")
    _validate(policy)
    assert _egress_ports(policy) == {53, 4333, 4318}
    # an external NATS manages its own accounts: no auth/credential Secrets then
    assert [d for d in build_children(external) if d["kind"] == "Secret"] == []


def test_security_children_of_a_managed_bus(demo: TradingPipeline) -> None:
    children = [d for d in build_children(demo, key=KEY) if d["kind"] in ("Secret", "NetworkPolicy")]
    for doc in children:
        _validate(doc)
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == demo.name
    names = [d["metadata"]["name"] for d in children if d["kind"] == "Secret"]
    assert "btc-perp-nats-auth" in names and "btc-perp-risk-manager-canary-nats" in names
    assert len(names) == 1 + 4 + 3 * 2


def test_dns_egress_goes_only_to_the_cluster_dns_pods(demo: TradingPipeline) -> None:
    for agent in AGENT_IDS:
        egress = build_agent_network_policy(demo, agent)["spec"]["egress"]
        dns = [r for r in egress if any(p["port"] == 53 for p in r["ports"])]
        assert dns == [
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
            }
        ], agent


def _nats_policy(demo: TradingPipeline, scope: NetworkScope) -> dict[str, Any]:
    (policy,) = [
        d
        for d in build_children(demo, key=KEY, scope=scope)
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "btc-perp-nats"
    ]
    _validate(policy)
    return policy


def _peers(policy: dict[str, Any], port: int) -> list[dict[str, Any]]:
    return [peer for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == port for peer in r["from"]]


def test_the_bus_admits_its_pipeline_and_the_operators_namespace_only(demo: TradingPipeline) -> None:
    scope = NetworkScope(operator_namespace="apextrader", monitoring_namespace="monitoring")
    policy = _nats_policy(demo, scope)
    operator = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apextrader"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "apextrader-operator"}},
    }
    pipeline = {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "btc-perp"}}}
    assert _peers(policy, 4222) == [pipeline, operator]
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert _peers(policy, 8222) == [operator, monitoring]
    # no rule admits a port from everyone, nor pods of every namespace
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from"), rule
        assert all(peer.get("namespaceSelector") != {} for peer in rule["from"]), rule


def test_without_namespaces_the_monitoring_port_is_closed(demo: TradingPipeline) -> None:
    policy = _nats_policy(demo, NetworkScope())
    assert [r["ports"][0]["port"] for r in policy["spec"]["ingress"]] == [4222]
    assert _peers(policy, 4222) == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "btc-perp"}}}
    ]
