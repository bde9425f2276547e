"""Write what the operator renders for the example pipelines as YAML, one file per case, for
checkov (`make lint` via scripts/checkov). Pure builders: no cluster, no bus.

Usage: python scripts/render_operator_objects.py OUT_DIR
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from apextrader.contracts import parse_pipeline
from apextrader_operator.builders import NetworkScope, Telemetry, build_children
from apextrader_operator.builders.agents import DEFAULT_IMAGE

REPO = Path(__file__).resolve().parents[1]
#: Stands for the random pipeline key the reconciler creates (passwords derive from it).
KEY = bytes(range(32))
SCOPE = NetworkScope(operator_namespace="apextrader", monitoring_namespace="monitoring")


def _cases() -> dict[str, dict[str, Any]]:
    demo = yaml.safe_load((REPO / "manifests" / "pipeline.yaml").read_text())
    demo["metadata"]["namespace"] = "trading"
    live = copy.deepcopy(demo)
    live["spec"].update(mode="live", execution={"credentialsSecret": "exchange-keys"}, source={"kind": "ccxt"})
    clustered = copy.deepcopy(demo)
    clustered["spec"]["bus"] = {"managed": {"replicas": 3, "storage": "4Gi"}}
    return {"demo": demo, "live-ccxt": live, "clustered-bus": clustered}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    telemetry = Telemetry(endpoint="http://otel-collector.observability:4318")
    for name, doc in _cases().items():
        objs = build_children(parse_pipeline(doc), DEFAULT_IMAGE, telemetry, key=KEY, scope=SCOPE)
        (out / f"operator-{name}.yaml").write_text(yaml.safe_dump_all(objs, sort_keys=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
