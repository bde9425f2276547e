"""kopf against kmock over real HTTP, with a real nats-server.

kmock's gaps (it stamps no metadata, filters no label selectors) are closed here: the emulator stamps uid, resourceVersion, generation
(bumped on spec changes only) and creationTimestamp, and filters LISTs by equality label selectors
(the operator filters client-side as well). The operator never relies on PUT, server-side apply or
owner-reference GC. kmock runs no controllers: tests mark Deployments and
StatefulSets ready by patching their status as a controller would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kmock
import kopf
import nats
import yaml
from kmock._internal import enums

from apextrader_operator import handlers
from apextrader_operator.kube import Credentials, KubeClient
from apextrader_operator.settings import OperatorConfig

NAMESPACE = "trading"
#: The kubeconfig's token (the operator under test); the tests' own client sends another.
OPERATOR_TOKEN = "operator"
RESOURCES = {
    "apextrader.io/v1alpha1/tradingpipelines": kmock.ResourceInfo(
        kind="TradingPipeline",
        singular="tradingpipeline",
        namespaced=True,
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "delete"},
        shortnames={"tp"},
        categories={"apextrader"},
    ),
    "v1/events": kmock.ResourceInfo(kind="Event", namespaced=True, verbs={"create", "list"}),
    # kopf's backbone waits for these to be discoverable before it observes anything
    "v1/namespaces": kmock.ResourceInfo(kind="Namespace", namespaced=False, verbs={"list", "watch"}),
    "apiextensions.k8s.io/v1/customresourcedefinitions": kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"list", "watch"}
    ),
    "apps/v1/deployments": kmock.ResourceInfo(kind="Deployment", namespaced=True, subresources={"status"}),
    "apps/v1/statefulsets": kmock.ResourceInfo(kind="StatefulSet", namespaced=True, subresources={"status"}),
    "v1/services": kmock.ResourceInfo(kind="Service", namespaced=True),
    "v1/configmaps": kmock.ResourceInfo(kind="ConfigMap", namespaced=True),
    # the chart grants no list/watch on Secrets: the emulator refuses them (see _serve_list)
    "v1/secrets": kmock.ResourceInfo(kind="Secret", namespaced=True),
    "v1/serviceaccounts": kmock.ResourceInfo(kind="ServiceAccount", namespaced=True),
    "networking.k8s.io/v1/networkpolicies": kmock.ResourceInfo(kind="NetworkPolicy", namespaced=True),
    "policy/v1/poddisruptionbudgets": kmock.ResourceInfo(kind="PodDisruptionBudget", namespaced=True),
}


class StampingEmulator(kmock.KubernetesEmulator):
    """kmock plus what an API server adds to every object."""

    _rv = 0

    def _stamp(self, request: Any) -> None:
        if request.resource is None or not isinstance(request.data, dict):
            return
        type(self)._rv += 1
        meta = request.data.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._rv)
        if request.action == enums.action.CREATE:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            meta.setdefault("generation", 1)
            meta.setdefault("namespace", request.namespace)
        elif (
            request.action == enums.action.UPDATE
            and request.name
            and "spec" in request.data
            and request.subresource != "status"
        ):
            key = (request.resource, request.namespace, request.name)
            if key in self.objects and not self.objects[key].deleted:
                current = self.objects[key].raw
                meta["generation"] = int(current.get("metadata", {}).get("generation", 1)) + 1

    async def _serve_list(self, request: Any) -> Any:
        """kmock ignores label selectors; a real API server filters (equality selectors here). Secrets
        cannot be listed: the chart's RBAC grants get/create/patch on them, never list/watch."""
        if getattr(request.resource, "plural", None) == "secrets":
            raise kmock.KubernetesError(status=403, reason="Forbidden", message="cannot list secrets")
        payload = await super()._serve_list(request)
        selector = (request.params or {}).get("labelSelector")
        if selector and isinstance(payload, dict):
            want = dict(term.split("=", 1) for term in selector.split(",") if "=" in term)
            payload["items"] = [
                i
                for i in payload["items"]
                if want.items() <= (i.get("metadata", {}).get("labels") or {}).items()
            ]
        return payload

    #: Every API call as RBAC sees it: (API group, resource[/subresource], verb); see `rbac_verb`.
    calls: set[tuple[str, str, str]]

    def record(self, request: Any) -> None:
        if (
            request.resource is None
            or request.resource.plural is None
            or request.headers.get("Authorization") != f"Bearer {OPERATOR_TOKEN}"
        ):
            return  # discovery (/api, /apis/...), which every user may read, or the test's own calls
        if not hasattr(self, "calls"):
            self.calls = set()
        plural = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        self.calls.add((request.resource.group or "", plural, rbac_verb(request)))

    async def _handle(self, request: Any) -> Any:
        self.record(request)
        # kmock matches every request against its whole request history (O(n) per request); the
        # operator's tests never assert on that history, so keep only in-flight requests.
        if len(self._requests) > 16:
            del self._requests[:-8]
        self._stamp(request)
        return await super()._handle(request)


def rbac_verb(request: Any) -> str:
    """The verb the API server authorizes an HTTP request as (kube-apiserver's RequestInfo)."""
    method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
    if method == "GET":
        if (request.params or {}).get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]


def write_kubeconfig(path: Path, server: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": server}}],
                # the operator's own token: `StampingEmulator.calls` records only its requests
                "users": [{"name": "kmock", "user": {"token": OPERATOR_TOKEN}}],
                "contexts": [
                    {
                        "name": "kmock",
                        "context": {"cluster": "kmock", "user": "kmock", "namespace": NAMESPACE},
                    }
                ],
                "current-context": "kmock",
            }
        )
    )


@contextlib.asynccontextmanager
async def kube_api(tmp: Path) -> AsyncIterator[tuple[StampingEmulator, KubeClient]]:
    async with StampingEmulator() as emulator, kmock.Server(emulator):
        for key, info in RESOURCES.items():
            emulator.resources[key] = info
        url = str(emulator.url).rstrip("/")
        config = tmp / "kubeconfig"
        write_kubeconfig(config, url)
        os.environ["KUBECONFIG"] = str(config)
        async with KubeClient(
            Credentials(server=url, token="test", ssl=False, namespace=NAMESPACE), server_side_apply=False
        ) as client:
            yield emulator, client


def fast_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.watching.reconnect_backoff = 0.05
    settings.watching.server_timeout = 600
    settings.networking.error_backoffs = [0.1, 0.2, 0.5]
    settings.queueing.idle_timeout = 0.5
    settings.background.instant_exit_timeout = 0.5
    settings.execution.max_workers = 4
    return settings


def kmock_config(**settings: Any) -> OperatorConfig:
    """An operator config for kmock: a fast timer, and merge patches (kmock cannot serve
    server-side apply, the operator's default write path; the real-cluster journey runs that)."""
    return OperatorConfig(**{"interval_s": 0.25, "server_side_apply": False, **settings})


@contextlib.asynccontextmanager
async def running_operator(config: OperatorConfig) -> AsyncIterator[None]:
    """The real handlers, registered with `config` and given it in the memo, in this event loop
    (kopf.spawn_tasks/run_tasks, no KopfRunner)."""
    stop = asyncio.Event()
    ready = asyncio.Event()
    existing = asyncio.all_tasks()  # the test's own tasks: not the operator's to stop
    tasks = await kopf.spawn_tasks(
        clusterwide=True,
        settings=fast_settings(),
        registry=handlers.registry(config),
        memo=handlers.memo(config),
        stop_flag=stop,
        ready_flag=ready,
        standalone=True,
    )
    runner = asyncio.create_task(kopf.run_tasks(tasks, ignored=existing))
    existing.add(runner)
    try:
        await asyncio.wait_for(ready.wait(), 10)
        yield
    finally:
        # kopf waits 5 s for "hung" tasks, i.e. every task born after it started, including the
        # test's own (kmock's connections, this teardown): declare them not the operator's.
        existing.update(asyncio.all_tasks())
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(runner, 10)


async def eventually(
    check: Callable[[], Awaitable[Any]], within: float = 10.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll until `check()` returns a truthy value; fail with the last value seen."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or check.__name__}; last value: {last!r}")


async def mark_ready(client: KubeClient, kind: str, name: str, replicas: int = 1) -> None:
    """What the Deployment/StatefulSet controller would write."""
    status = {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
    await client.patch(kind, NAMESPACE, name, {"status": status}, subresource="status")


async def kv_get(url: str, bucket: str, key: str) -> Any:
    import json

    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(bucket)
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        return json.loads(entry.value) if entry.value else None
    finally:
        await nc.close()


async def kv_put(url: str, bucket: str, key: str, value: Any) -> None:
    import json

    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(bucket)
        await kv.put(key, json.dumps(value).encode())
    finally:
        await nc.close()
