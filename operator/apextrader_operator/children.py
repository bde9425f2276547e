"""The pipeline's children on the server: what holds each planned name, applying them in waves, and
pruning what the operator no longer renders (reconcile.py's steps)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from apextrader.contracts.pipeline import TradingPipeline
from apextrader_operator.apply import apply, object_key, owned_by
from apextrader_operator.builders.labels import Manifest
from apextrader_operator.kube import KubeClient

#: Kinds the operator prunes when it stops rendering them (e.g. canary Deployments after a promote).
PRUNED_KINDS = ("Deployment", "Service")


def ready_replicas(obj: Manifest | None, want: int) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get("readyReplicas") or 0) if want else 0


async def _existing(kube: KubeClient, tp: TradingPipeline, kinds: set[str]) -> dict[str, Manifest]:
    """The pipeline's children per `Kind/name`: one LIST per kind instead of one GET per object."""
    labels = {"app.kubernetes.io/instance": tp.name}
    ordered = sorted(kinds)
    lists = await asyncio.gather(*(kube.list(kind, tp.metadata.namespace, labels) for kind in ordered))
    return {
        f"{kind}/{obj['metadata']['name']}": obj
        for kind, objs in zip(ordered, lists, strict=True)
        for obj in objs
    }


@dataclass
class Children:
    """What the server holds under every child's name (None: absent), and what carried our labels."""

    current: dict[str, Manifest | None]
    listed: dict[str, Manifest]

    def conflicts(self, uid: str | None) -> list[str]:
        return sorted(k for k, obj in self.current.items() if obj is not None and not owned_by(obj, uid))


async def read_children(kube: KubeClient, tp: TradingPipeline, names: list[tuple[str, str]]) -> Children:
    """Every planned child, before anything is written: a LIST per kind (our instance label), then a
    GET by name for the rest, so an object someone else made under a child's name is seen too.
    Secrets are only ever read one by one: the operator may get them, never list them (RBAC)."""
    listed = await _existing(kube, tp, {kind for kind, _ in names} - {"Secret"})
    missing = [(k, n) for k, n in names if f"{k}/{n}" not in listed]
    got = await asyncio.gather(*(kube.get(k, tp.metadata.namespace, n) for k, n in missing))
    current: dict[str, Manifest | None] = {f"{k}/{n}": listed.get(f"{k}/{n}") for k, n in names}
    current.update({f"{k}/{n}": obj for (k, n), obj in zip(missing, got, strict=True)})
    return Children(current, listed)


#: Children are applied in waves, each wave concurrently: what others reference (accounts, Secrets,
#: ConfigMaps) before what routes to pods, before the workloads themselves.
_WAVE = {"ServiceAccount": 0, "Secret": 0, "ConfigMap": 0, "Service": 1, "NetworkPolicy": 1}


async def apply_all(
    kube: KubeClient, objs: list[Manifest], owner: Mapping[str, Any], children: Children
) -> tuple[list[str], dict[str, Manifest]]:
    """Apply in order; returns the changes and the children as now held."""
    kopf.adopt(objs, owner=owner)  # type: ignore[arg-type]  # a Body or its raw mapping
    uid = (owner.get("metadata") or {}).get("uid")
    keys = [object_key(obj) for obj in objs]
    results: dict[str, tuple[str, Manifest]] = {}
    for wave in sorted({_WAVE.get(obj["kind"], 2) for obj in objs}):
        batch = [(k, o) for k, o in zip(keys, objs, strict=True) if _WAVE.get(o["kind"], 2) == wave]
        done = await asyncio.gather(
            *(apply(kube, o, children.current.get(k), owner_uid=uid) for k, o in batch)
        )
        results.update(zip((k for k, _ in batch), done, strict=True))
    changes = [f"{results[k][0]} {k}" for k in keys if results[k][0] != "unchanged"]
    return changes, {k: results[k][1] for k in keys}


async def prune(
    kube: KubeClient, tp: TradingPipeline, uid: str | None, keep: set[str], existing: dict[str, Manifest]
) -> list[str]:
    removed = []
    for key, obj in existing.items():
        kind = key.split("/", 1)[0]
        if kind in PRUNED_KINDS and key not in keep and owned_by(obj, uid):
            await kube.delete(kind, tp.metadata.namespace, obj["metadata"]["name"])
            removed.append(f"deleted {key}")
    return removed
