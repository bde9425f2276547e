"""Evaluate a CRD's schema the way the API server would, offline: CEL rules with cel-python and the
structural schema with jsonschema (OpenAPI 3.0 ≈ draft 4 plus `nullable`; unknown fields rejected as
`kubectl apply --validate=strict` does)."""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema

Schema = dict[str, Any]
_env = celpy.Environment()


def cel_violations(schema: Schema, value: Any, path: str = "") -> list[str]:
    """Messages of every `x-kubernetes-validations` rule that fails anywhere in `value`."""
    if value is None:
        return []
    out = []
    for rule in schema.get("x-kubernetes-validations", []):
        program = _env.program(_env.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(value)})
        if not isinstance(result, celpy.celtypes.BoolType) or not bool(result):
            out.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                out += cel_violations(sub, value[key], f"{path}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                out += cel_violations(extra, item, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += cel_violations(schema["items"], item, f"{path}[{i}]")
    return out


def to_jsonschema(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes dialect) → draft-4 JSON Schema."""
    if isinstance(node, list):
        return [to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"
    }
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def schema_errors(openapi: Schema, doc: Any) -> list[str]:
    validator = jsonschema.Draft4Validator(to_jsonschema(copy.deepcopy(openapi)))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
