"""The `TradingPipeline` CRD, generated from the pydantic spec/status models (never hand-edited).

Pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3 subset: no `$ref`,
nullable instead of `anyOf [.., null]`, boolean `exclusiveMinimum`, no `additionalProperties: false`
(unknown fields are pruned), no `propertyNames`/`title`. Cross-field rules the models check in
Python are restated as CEL `x-kubernetes-validations` so `kubectl apply` rejects them up front.
"""

from __future__ import annotations

import copy
from typing import Any, Final

import yaml

from apextrader.contracts.agent_spec import AGENT_MODELS, SINGLE_REPLICA_MESSAGE, SingleReplicaAgent
from apextrader.contracts.canary_spec import MAX_STEPS
from apextrader.contracts.pipeline import API_GROUP, API_VERSION, KIND, NAME_MAX, NAME_PATTERN, PLURAL
from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.contracts.status import TradingPipelineStatus

Schema = dict[str, Any]
_DROP: Final = frozenset({"title", "default", "$defs", "propertyNames"})
_STEP_WEIGHTS: Final = "self.steps.filter(s, has(s.setWeight))"


def _rule(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


#: CEL rules per model (by pydantic title): the models' own cross-field validators, restated.
CEL: Final[dict[str, list[dict[str, str]]]] = {
    "TradingPipelineSpec": [
        _rule(
            "!has(self.mode) || self.mode != 'live' || (has(self.execution) && "
            "has(self.execution.credentialsSecret) && size(self.execution.credentialsSecret) > 0)",
            "execution.credentialsSecret is required when mode is live",
            ".execution.credentialsSecret",
        ),
    ],
    "BusSpec": [
        _rule("!(has(self.managed) && has(self.url))", "bus: give managed or url, not both"),
        _rule(
            "!has(self.streamReplicas) || self.streamReplicas == 1 || has(self.url) || "
            "(has(self.managed) && has(self.managed.replicas) && self.managed.replicas == 3)",
            "bus.streamReplicas: cannot exceed bus.managed.replicas",
            ".streamReplicas",
        ),
        _rule(
            "!has(self.credentialsSecret) || has(self.url)",
            "bus.credentialsSecret: only for an external bus.url",
            ".credentialsSecret",
        ),
        _rule(
            "!has(self.url) || !self.url.matches('^[a-z]+://[^/]*@')",
            "bus.url: no credentials in the URL; use bus.credentialsSecret",
            ".url",
        ),
    ],
    "SourceSpec": [
        _rule(
            "!has(self.kind) || self.kind != 'replay' || has(self.path)",
            "source.path is required when kind is replay",
            ".path",
        ),
        _rule(
            "!has(self.regimes) || (has(self.model) && self.model == 'regimes')",
            "source.regimes needs source.model: regimes",
            ".regimes",
        ),
    ],
    "RegimesSpec": [
        _rule(
            "(has(self.trend) && has(self.trend.share) ? self.trend.share : 1) + "
            "(has(self.meanReversion) && has(self.meanReversion.share) ? self.meanReversion.share : 1) + "
            "(has(self.random) && has(self.random.share) ? self.random.share : 1) > 0",
            "regimes: at least one of trend, meanReversion, random needs share > 0",
        )
    ],
    "CanarySpec": [
        _rule(
            "has(self.weight) != has(self.steps)",
            "canary needs exactly one of weight (manual) or steps (automatic)",
        ),
        _rule(
            f"!has(self.steps) || {list(range(MAX_STEPS - 1))}.all(i, i + 1 >= size({_STEP_WEIGHTS}) || "
            f"{_STEP_WEIGHTS}[i].setWeight <= {_STEP_WEIGHTS}[i + 1].setWeight)",
            "steps: setWeight values must be ascending",
            ".steps",
        ),
        _rule(
            "!(has(self.promote) && self.promote && has(self.abort) && self.abort)",
            "promote and abort cannot both be true",
        ),
    ],
    "CanaryStep": [
        _rule(
            "(has(self.setWeight) ? 1 : 0) + (has(self.pause) ? 1 : 0) + (has(self.analysis) ? 1 : 0) == 1",
            "a step has exactly one of setWeight, pause, analysis",
        )
    ],
}


# Every agent but strategy-builder keeps state: one replica (SingleReplicaAgent's validator).
CEL.update(
    {
        model.__name__: [
            _rule(
                "!has(self.replicas) || self.replicas <= 1",
                f"replicas: {SINGLE_REPLICA_MESSAGE}",
                ".replicas",
            )
        ]
        for model in AGENT_MODELS.values()
        if issubclass(model, SingleReplicaAgent)
    }
)


def _map_key_rules(keys: list[str]) -> list[dict[str, str]]:
    """CEL for a map with a closed key set (the per-exchange maps: fees, ...)."""
    return [_rule(f"self.all(k, k in {keys})", f"keys must be exchange ids ({', '.join(keys)})")]


def _structural(node: Any, defs: dict[str, Schema]) -> Any:
    """Inline refs and rewrite one JSON Schema node into Kubernetes' structural dialect."""
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        nullable = len(options) < len(node["anyOf"])
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:
            single: Schema = _structural({**options[0], **rest}, defs)
            return {**single, "nullable": True} if nullable else single
        node = {**rest, "anyOf": options} | ({"nullable": True} if nullable else {})
    title = node.get("title")
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {k: _structural(v, defs) for k, v in value.items()}
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out[key] = _structural(value, defs)
            # `false` is the structural default: unknown fields are pruned
        elif key == "exclusiveMinimum" or key == "exclusiveMaximum":
            out[key.replace("exclusive", "").lower()] = value
            out[key] = True
        elif key in ("items", "anyOf", "allOf", "oneOf", "not"):
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        kinds = {type(v) for v in out["enum"]}
        out["type"] = "integer" if kinds == {int} else "string"
    if "propertyNames" in node:
        keys = list(node["propertyNames"]["enum"])
        out["x-kubernetes-validations"] = _map_key_rules(keys)
    if title in CEL:
        out["x-kubernetes-validations"] = CEL[title]
    if out.get("type") == "array" and out.get("items", {}).get("type") in ("string", "integer"):
        out["x-kubernetes-list-type"] = "set" if title in ("Exchanges", "Symbols") else "atomic"
    return out


def open_api_schema(model: type[Any]) -> Schema:
    raw = model.model_json_schema(by_alias=True)
    defs = raw.get("$defs", {})
    return dict(_structural(raw, defs))


def _printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        {"name": "Canary%", "type": "integer", "jsonPath": ".status.canary.effectiveWeight"},
        {"name": "Applied%", "type": "integer", "jsonPath": ".status.canary.appliedWeight.canary"},
        {"name": "Step", "type": "integer", "jsonPath": ".status.canary.stepIndex", "priority": 0},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def build_crd() -> Schema:
    """The CustomResourceDefinition as a dict."""
    root: Schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": open_api_schema(TradingPipelineSpec),
            "status": open_api_schema(TradingPipelineStatus),
        },
        "x-kubernetes-validations": [
            _rule(
                f"self.metadata.name.matches('{NAME_PATTERN}') && size(self.metadata.name) <= {NAME_MAX}",
                f"metadata.name must be a DNS-1035 label of at most {NAME_MAX} characters",
            )
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "apextrader", "app.kubernetes.io/part-of": "apextrader"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": KIND.lower(),
                "listKind": f"{KIND}List",
                "shortNames": ["tp"],
                "categories": ["apextrader"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `make crds` (apex crds) from apextrader.contracts. Do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)
