"""Common labels (docs/conventions.md §2) and the small helpers every builder shares."""

from __future__ import annotations

from typing import Any, Final

from apextrader.contracts.names import Track
from apextrader.contracts.pipeline import TradingPipeline

Manifest = dict[str, Any]
HTTP_PORT: Final = 8080
MANAGED_BY: Final = "apextrader-operator"
TRACK_LABEL: Final = "apextrader.io/track"
#: Hash of the parameters a pod runs with; a change rolls the pods, a weight edit does not.
CONFIG_HASH_ANNOTATION: Final = "apextrader.io/config-hash"
CONFIG_MOUNT: Final = "/etc/apextrader"


def selector_labels(pipeline: str, component: str, track: Track | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "apextrader",
        "app.kubernetes.io/instance": pipeline,
        "app.kubernetes.io/component": component,
    }
    if track is not None:
        labels[TRACK_LABEL] = track
    return labels


def common_labels(pipeline: str, component: str, track: Track | None = None) -> dict[str, str]:
    return {
        **selector_labels(pipeline, component, track),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "apextrader",
    }


def metadata(tp: TradingPipeline, name: str, component: str, track: Track | None = None) -> Manifest:
    meta: Manifest = {"name": name, "labels": common_labels(tp.name, component, track)}
    if tp.metadata.namespace:
        meta["namespace"] = tp.metadata.namespace
    return meta


def pod_security_context(uid: int = 10001) -> Manifest:
    """Pod Security Standard "restricted"."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
