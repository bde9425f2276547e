"""The pipeline's ConfigMap (the whole CR as `pipeline.yaml`) and the agents' ServiceAccount."""

from __future__ import annotations

import yaml

from apextrader.bus.topology import config_map_name
from apextrader.contracts.pipeline import TradingPipeline
from apextrader_operator.builders.agents import service_account_name
from apextrader_operator.builders.labels import Manifest, metadata


def pipeline_document(tp: TradingPipeline) -> str:
    """The CR as agents load it (`APEX_PIPELINE_FILE`): apiVersion, kind, name, namespace, spec."""
    doc = {
        "apiVersion": tp.api_version,
        "kind": tp.kind,
        "metadata": {k: v for k, v in {"name": tp.name, "namespace": tp.metadata.namespace}.items() if v},
        "spec": tp.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    return yaml.safe_dump(doc, sort_keys=False)


def build_config_map(tp: TradingPipeline) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(tp, config_map_name(tp.name), "config"),
        "data": {"pipeline.yaml": pipeline_document(tp)},
    }


def build_service_account(tp: TradingPipeline) -> Manifest:
    """Agents never call the Kubernetes API: no token is mounted."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(tp, service_account_name(tp.name), "agents"),
        "automountServiceAccountToken": False,
    }
