"""values.schema.json refuses bad values with a message naming the field; the rendered pipeline and
CRD agree with `crds/` (the operator's generated CRD)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.charts.charts import (
    CRDS,
    OPERATOR_CHART,
    PIPELINE_CHART,
    by_kind,
    documents,
    example_values,
    helm_template,
    helm_template_error,
)

BAD = Path(__file__).parent / "bad-values"


@pytest.mark.parametrize(
    ("chart", "values", "message"),
    [
        (PIPELINE_CHART, "unknown-key.yaml", "additional properties 'simbols' not allowed"),
        (PIPELINE_CHART, "weight-150.yaml", "maximum: got 150, want 100"),
        (PIPELINE_CHART, "live-without-secret.yaml", "missing property 'credentialsSecret'"),
        (PIPELINE_CHART, "bus-managed-and-url.yaml", "at '/spec/bus': 'not' failed"),
        (PIPELINE_CHART, "replicas-of-stateful-agent.yaml", "maximum: got 2, want 1"),
        (OPERATOR_CHART, "operator-unknown-key.yaml", "additional properties 'replicaCount' not allowed"),
        (OPERATOR_CHART, "operator-bad-scope.yaml", "at '/rbac/scope'"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    helm: str, chart: Path, values: str, message: str
) -> None:
    err = helm_template_error(helm, chart, BAD / values)
    assert "values don't meet the specifications of the schema" in err
    assert message in err, err


def _crd() -> dict[str, Any]:
    docs = [d for p in sorted(CRDS.glob("*.y*ml")) for d in yaml.safe_load_all(p.read_text()) if d]
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    if not crds:
        pytest.skip("crds/ holds no CRD yet: the operator's `make crds` generates it")
    (crd,) = [c for c in crds if c["spec"]["names"]["kind"] == "TradingPipeline"]
    return crd


def test_rendered_crd_equals_crds_dir_apart_from_keep(helm: str) -> None:
    crd = _crd()
    (rendered,) = by_kind(documents(helm_template(helm, OPERATOR_CHART)), "CustomResourceDefinition")
    annotations = rendered["metadata"].get("annotations", {})
    assert annotations.pop("helm.sh/resource-policy") == "keep"
    if not annotations:
        rendered["metadata"].pop("annotations")
    assert rendered == crd


def test_crd_can_be_left_out(helm: str) -> None:
    _crd()  # meaningful only once the chart has a CRD to leave out
    docs = documents(helm_template(helm, OPERATOR_CHART, None, "--set", "crd.install=false"))
    assert by_kind(docs, "CustomResourceDefinition") == []


def _crd_validator() -> jsonschema.Draft4Validator:
    crd = _crd()
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    # OpenAPI v3.0, as in a CRD, is JSON Schema draft 4 (boolean exclusiveMinimum) plus extensions
    # (x-kubernetes-*, nullable) that a validator ignores; CEL rules are tested by the operator.
    return jsonschema.Draft4Validator(schema)


@pytest.mark.parametrize("values", [None, *example_values(PIPELINE_CHART)], ids=lambda v: v and v.name)
def test_rendered_pipeline_validates_against_the_crd_schema(helm: str, values: Path | None) -> None:
    validator = _crd_validator()
    (tp,) = by_kind(documents(helm_template(helm, PIPELINE_CHART, values)), "TradingPipeline")
    errors = sorted(validator.iter_errors(tp), key=str)
    assert errors == [], "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_crd_schema_refuses_a_canary_weight_of_150(helm: str) -> None:
    validator = _crd_validator()
    (tp,) = by_kind(documents(helm_template(helm, PIPELINE_CHART)), "TradingPipeline")
    tp["spec"]["canary"] = {"weight": 150, "template": {}}
    assert any("150" in e.message for e in validator.iter_errors(tp))


def _leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        return [p for k, v in node.items() for p in _leaf_paths(v, (*prefix, k))]
    return [prefix]


def _schema_at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for key in path:
        props = (node or {}).get("properties", {})
        if key in props:
            node = props[key]
        elif isinstance((node or {}).get("additionalProperties"), dict):
            node = node["additionalProperties"]  # type: ignore[index]
        else:
            return None
    return node


def test_operator_values_and_schema_describe_the_same_keys() -> None:
    import json

    values = yaml.safe_load((OPERATOR_CHART / "values.yaml").read_text())
    schema = json.loads((OPERATOR_CHART / "values.schema.json").read_text())
    missing = [".".join(p) for p in _leaf_paths(values) if _schema_at(schema, p) is None]
    assert missing == [], f"values.yaml keys the schema does not describe: {missing}"
    undocumented = [k for k in schema["properties"] if k != "global" and k not in values]
    assert undocumented == [], f"schema keys missing from values.yaml: {undocumented}"


def test_every_operator_value_is_commented() -> None:
    lines = (OPERATOR_CHART / "values.yaml").read_text().splitlines()
    uncommented = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        previous = lines[i - 1].strip() if i else ""
        # a block header (`image:`) is described by the comments of its keys
        if stripped.endswith(":") or previous.startswith("#"):
            continue
        uncommented.append(f"{i + 1}: {stripped}")
    assert uncommented == []
