"""The generated CRD: committed file is current, structural, CEL rules behave like the models."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from apextrader.contracts import AGENT_IDS, PipelineError, parse_pipeline, track_spec
from apextrader_operator.crd import build_crd, crd_yaml
from tests.operator.crd_tools import cel_violations, schema_errors

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "tradingpipelines.apextrader.io.yaml"
CRD = build_crd()
ROOT_SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
EXAMPLES = sorted((ROOT / "manifests").glob("*.yaml"))


def pipelines_in(path: Path) -> list[dict[str, Any]]:
    return [
        d
        for d in yaml.safe_load_all(path.read_text())
        if isinstance(d, dict) and d.get("kind") == "TradingPipeline"
    ]


def test_committed_crd_is_current() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), "crds/ is stale: run `make crds` and commit the result"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for k, v in node.items():
            found += _walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _walk(v, f"{path}/{i}")
    return found


def test_schema_is_structural() -> None:
    for path, node in _walk(ROOT_SCHEMA):
        if "/x-kubernetes-validations" in path:
            continue
        assert "$ref" not in node and "$defs" not in node, path
        assert "propertyNames" not in node and "title" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert not any(o.get("type") == "null" for o in node.get("anyOf", [])), path
        if "properties" in node or "items" in node:
            assert node.get("type") in ("object", "array"), path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_identity_columns_and_weights() -> None:
    spec = CRD["spec"]
    assert spec["names"]["shortNames"] == ["tp"] and spec["names"]["categories"] == ["apextrader"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    cols = [c["name"] for c in version["additionalPrinterColumns"]]
    assert cols == ["Phase", "Mode", "Canary%", "Applied%", "Step", "Ready", "Age"]
    canary = ROOT_SCHEMA["properties"]["spec"]["properties"]["canary"]["properties"]
    for node in (canary["weight"], canary["steps"]["items"]["properties"]["setWeight"]):
        assert (node["type"], node["minimum"], node["maximum"]) == ("integer", 0, 100)
    agents = ROOT_SCHEMA["properties"]["spec"]["properties"]["agents"]
    assert set(agents["properties"]) == set(AGENT_IDS)  # one typed entry per agent, nothing free-form
    assert not any("x-kubernetes-preserve-unknown-fields" in node for _, node in _walk(agents))
    status = ROOT_SCHEMA["properties"]["status"]["properties"]
    assert status["observedGeneration"]["type"] == "integer"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_crd(path: Path) -> None:
    docs = pipelines_in(path)
    for doc in docs:
        track_spec(parse_pipeline(doc).spec, "canary")  # what `apex validate` checks
        assert schema_errors(ROOT_SCHEMA, doc) == []
        assert cel_violations(ROOT_SCHEMA, doc) == []


def base_doc(**spec: Any) -> dict[str, Any]:
    doc = {
        "apiVersion": "apextrader.io/v1alpha1",
        "kind": "TradingPipeline",
        "metadata": {"name": "btc-perp"},
        "spec": {"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"], **spec},
    }
    return copy.deepcopy(doc)


GOOD = [
    {},
    {"canary": {"weight": 5}},
    {
        "canary": {
            "steps": [{"setWeight": 5}, {"pause": {"duration": "1h"}}, {"analysis": {}}, {"setWeight": 5}]
        }
    },
    {"mode": "live", "execution": {"credentialsSecret": "keys"}},
    {"agents": {"strategy-builder": {"replicas": 3}, "risk-manager": {"replicas": 1}}},
    {"bus": {"url": "nats://nats.infra:4222"}},
    {"source": {"model": "regimes"}},
    {"source": {"kind": "replay", "path": "x.parquet", "model": "regimes"}},  # ignored off synthetic
    {
        "source": {
            "model": "regimes",
            "regimes": {
                "meanBars": 300,
                "trend": {"share": 1, "drift": 0.3},
                "meanReversion": {"share": 0},
                "random": {"share": 0},
            },
        }
    },
]
BAD = [
    ({"canary": {"weight": 5, "steps": [{"setWeight": 5}]}}, "exactly one of weight"),
    ({"canary": {}}, "exactly one of weight"),
    ({"canary": {"steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 5}]}}, "ascending"),
    ({"canary": {"steps": [{"setWeight": 5, "pause": {}}]}}, "exactly one of setWeight"),
    ({"canary": {"weight": 5, "promote": True, "abort": True}}, "promote and abort"),
    ({"mode": "live"}, "credentialsSecret"),
    ({"mode": "live", "execution": {"credentialsSecret": ""}}, "credentialsSecret"),
    ({"agents": {"risk-manager": {"replicas": 2}}}, "only strategy-builder"),
    ({"bus": {"url": "nats://x:4222", "managed": {}}}, "not both"),
    ({"source": {"kind": "replay"}}, "source.path"),
    ({"source": {"regimes": {"meanBars": 100}}}, "needs source.model: regimes"),
    (
        {
            "source": {
                "model": "regimes",
                "regimes": {"trend": {"share": 0}, "meanReversion": {"share": 0}, "random": {"share": 0}},
            }
        },
        "share > 0",
    ),
]


@pytest.mark.parametrize("spec", GOOD)
def test_cel_accepts_what_the_models_accept(spec: dict[str, Any]) -> None:
    doc = base_doc(**spec)
    parse_pipeline(doc)  # the models agree
    assert cel_violations(ROOT_SCHEMA, doc) == []
    assert schema_errors(ROOT_SCHEMA, doc) == []


@pytest.mark.parametrize(("spec", "needle"), BAD)
def test_cel_rejects_what_the_models_reject(spec: dict[str, Any], needle: str) -> None:
    doc = base_doc(**spec)
    with pytest.raises(PipelineError):
        parse_pipeline(doc)
    violations = cel_violations(ROOT_SCHEMA, doc)
    assert any(needle in v for v in violations), violations


def test_schema_rejects_out_of_range_and_unknown_fields() -> None:
    assert schema_errors(ROOT_SCHEMA, base_doc(canary={"weight": 150}))
    assert schema_errors(ROOT_SCHEMA, base_doc(typo=1))
    bad_name = base_doc()
    bad_name["metadata"]["name"] = "x" * 40
    assert any("DNS-1035" in v for v in cel_violations(ROOT_SCHEMA, bad_name))


#: Per agent: a setting it has (valid), and the same key misspelt.
AGENT_SETTINGS = [
    ("market-scanner", {"pace": "max"}, "paec"),
    ("feature-engineer", {"intrabar": True, "historyEvents": 1000}, "intrabr"),
    ("strategy-builder", {"replicas": 3}, "replica"),
    ("backtester", {"replicas": 1}, "config"),
    ("event-watcher", {"replicas": 0}, "config"),
    ("risk-manager", {"maxBookParticipation": 0.1}, "maxBookParticipaton"),
    ("execution", {"resources": {"requests": {"memory": "256Mi"}}}, "config"),
]


def test_every_agent_has_a_case() -> None:
    assert {a for a, _, _ in AGENT_SETTINGS} == set(AGENT_IDS)


@pytest.mark.parametrize(("agent", "settings", "typo"), AGENT_SETTINGS, ids=[a for a, _, _ in AGENT_SETTINGS])
def test_agent_settings_are_typed_and_unknown_keys_refused(
    agent: str, settings: dict[str, Any], typo: str
) -> None:
    good = base_doc(agents={agent: settings})
    parse_pipeline(good)
    assert schema_errors(ROOT_SCHEMA, good) == [] and cel_violations(ROOT_SCHEMA, good) == []
    bad = base_doc(agents={agent: {**settings, typo: 1}})
    with pytest.raises(PipelineError) as refused:
        parse_pipeline(bad)
    assert any(f"agents.{agent}.{typo}" in e for e in refused.value.errors), refused.value.errors
    assert any(typo in e for e in schema_errors(ROOT_SCHEMA, bad))  # kubectl apply --validate=strict


def test_unknown_agent_refused() -> None:
    bad = base_doc(agents={"trader": {}})
    with pytest.raises(PipelineError, match="trader"):
        parse_pipeline(bad)
    assert any("trader" in e for e in schema_errors(ROOT_SCHEMA, bad))


def test_agent_setting_values_checked() -> None:
    for agent, settings in [
        ("market-scanner", {"pace": "fast"}),
        ("feature-engineer", {"intrabar": "sometimes"}),
        ("risk-manager", {"maxBookParticipation": 1.5}),
    ]:
        bad = base_doc(agents={agent: settings})
        with pytest.raises(PipelineError):
            parse_pipeline(bad)
        assert schema_errors(ROOT_SCHEMA, bad), (agent, settings)


def test_canary_template_agents_are_typed_too() -> None:
    base = {"risk-manager": {"maxBookParticipation": 0.3}, "strategy-builder": {"replicas": 2}}
    template = {"agents": {"risk-manager": {"maxBookParticipation": 0.1}}}
    good = base_doc(agents=base, canary={"weight": 5, "template": template})
    spec = parse_pipeline(good).spec
    canary = track_spec(spec, "canary")
    assert canary.agent("risk-manager").max_book_participation == 0.1  # the template's key
    assert canary.agent("strategy-builder").replicas == 2  # the base's, not the model default
    assert spec.agent("risk-manager").max_book_participation == 0.3
    assert schema_errors(ROOT_SCHEMA, good) == []
    bad = base_doc(
        canary={"weight": 5, "template": {"agents": {"risk-manager": {"maxBookParticipaton": 0.1}}}}
    )
    with pytest.raises(PipelineError, match="maxBookParticipaton"):
        parse_pipeline(bad)
    assert any("maxBookParticipaton" in e for e in schema_errors(ROOT_SCHEMA, bad))
