"""The managed bus: NATS JetStream as a StatefulSet (file storage on a PVC), a headless Service and
its config. Its NetworkPolicy (who may reach the client and monitoring ports) is rendered with the
other policies by `builders.security.build_nats_network_policy`.

With NATS users on (always, for a managed bus rendered by the operator), nats.conf `include`s the
`authorization {}` block that `builders.security` renders into the Secret `<pipeline>-nats-auth`;
both files are mounted side by side, and a hash of the users rolls the pods when they change
(nats-server reads its config at start; a Secret update alone would not reach it).
"""

from __future__ import annotations

import hashlib
from typing import Final

from apextrader.bus.topology import nats_service_name
from apextrader.contracts.pipeline import TradingPipeline
from apextrader.contracts.spec import ManagedBus, jetstream_store_bytes
from apextrader_operator.builders.labels import (
    Manifest,
    container_security_context,
    metadata,
    pod_security_context,
    selector_labels,
)

CLIENT_PORT: Final = 4222
MONITOR_PORT: Final = 8222
CLUSTER_PORT: Final = 6222
COMPONENT: Final = "nats"
OPERATOR_LABELS: Final = {"app.kubernetes.io/name": "apextrader-operator"}
#: The line the managed nats.conf needs; NATS resolves includes relative to the config file, so
#: auth.conf must sit beside nats.conf (see `nats_config_volume`).
AUTH_INCLUDE: Final = 'include "auth.conf"'
AUTH_FILE: Final = "auth.conf"
#: Hash of the users' block on the NATS pod template: new users or passwords restart the server.
AUTH_HASH_ANNOTATION: Final = "apextrader.io/auth-hash"
#: Where `bus.managed.tls.secretName` (tls.crt, tls.key, ca.crt) is mounted.
TLS_DIR: Final = "/etc/nats/tls"
#: JetStream health: 200 only once this server is current with the meta group and its streams.
JS_HEALTH: Final = "/healthz?js-enabled-only=true"


def auth_secret_name(pipeline: str) -> str:
    return f"{nats_service_name(pipeline)}-auth"


def nats_url(tp: TradingPipeline) -> str:
    """The URL agents and the operator use: the external `bus.url` or the managed Service's DNS name
    (`tls://` when the managed bus has TLS)."""
    if tp.spec.bus.url:
        return tp.spec.bus.url
    ns = tp.metadata.namespace or "default"
    managed = tp.spec.bus.managed
    scheme = "tls" if managed is not None and managed.tls is not None else "nats"
    return f"{scheme}://{nats_service_name(tp.name)}.{ns}.svc:{CLIENT_PORT}"


def _nats_conf(tp: TradingPipeline, bus: ManagedBus, auth: bool) -> str:
    name, ns = nats_service_name(tp.name), tp.metadata.namespace or "default"
    max_file = jetstream_store_bytes(bus.storage)
    lines = [
        f"port: {CLIENT_PORT}",
        f"http_port: {MONITOR_PORT}",
        "server_name: $POD_NAME",
        "lame_duck_duration: 30s",
        "jetstream {",
        "  store_dir: /data/jetstream",
        "  max_memory_store: 64MB",
        f"  max_file_store: {max_file}",
        "}",
    ]
    if bus.replicas > 1:
        routes = ",\n    ".join(
            f"nats://{name}-{i}.{name}.{ns}.svc:{CLUSTER_PORT}" for i in range(bus.replicas)
        )
        lines += [
            "cluster {",
            f"  name: {name}",
            f"  port: {CLUSTER_PORT}",
            f"  routes: [\n    {routes}\n  ]",
            "}",
        ]
    if bus.tls is not None:
        lines += [
            "tls {",
            f'  cert_file: "{TLS_DIR}/tls.crt"',
            f'  key_file: "{TLS_DIR}/tls.key"',
            f'  ca_file: "{TLS_DIR}/ca.crt"',
            "  timeout: 2",
            "}",
        ]
    if auth:
        lines.append(AUTH_INCLUDE)
    return "\n".join(lines) + "\n"


def build_nats_config(tp: TradingPipeline, bus: ManagedBus, auth: bool = False) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(tp, f"{nats_service_name(tp.name)}-config", COMPONENT),
        "data": {"nats.conf": _nats_conf(tp, bus, auth)},
    }


def nats_config_volume(tp: TradingPipeline, auth: bool = True) -> Manifest:
    """nats.conf (the ConfigMap) and, with users on, auth.conf (the Secret) side by side."""
    name = nats_service_name(tp.name)
    config = {"configMap": {"name": f"{name}-config"}}
    if not auth:
        return {"name": "config", **config}
    auth_file = {
        "secret": {"name": auth_secret_name(tp.name), "items": [{"key": AUTH_FILE, "path": AUTH_FILE}]}
    }
    return {"name": "config", "projected": {"sources": [config, auth_file]}}


def _ports(bus: ManagedBus) -> list[tuple[str, int]]:
    ports = [("client", CLIENT_PORT), ("monitor", MONITOR_PORT)]
    return [*ports, ("cluster", CLUSTER_PORT)] if bus.replicas > 1 else ports


def build_nats_service(tp: TradingPipeline, bus: ManagedBus) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(tp, nats_service_name(tp.name), COMPONENT),
        "spec": {
            "clusterIP": "None",
            # cluster routes must resolve before the peers are ready
            "publishNotReadyAddresses": True,
            "selector": selector_labels(tp.name, COMPONENT),
            "ports": [{"name": n, "port": p, "targetPort": n, "protocol": "TCP"} for n, p in _ports(bus)],
        },
    }


def build_nats_statefulset(tp: TradingPipeline, bus: ManagedBus, auth_conf: str | None = None) -> Manifest:
    name = nats_service_name(tp.name)
    template_meta: Manifest = {"labels": metadata(tp, name, COMPONENT)["labels"]}
    if auth_conf is not None:
        digest = hashlib.sha256(auth_conf.encode()).hexdigest()[:16]
        template_meta["annotations"] = {AUTH_HASH_ANNOTATION: digest}
    probe = {"httpGet": {"path": JS_HEALTH, "port": "monitor"}, "periodSeconds": 10}
    mounts: list[Manifest] = [
        {"name": "config", "mountPath": "/etc/nats", "readOnly": True},
        {"name": "data", "mountPath": "/data"},
    ]
    volumes = [nats_config_volume(tp, auth=auth_conf is not None)]
    if bus.tls is not None:
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
        volumes.append({"name": "tls", "secret": {"secretName": bus.tls.secret_name}})
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(tp, name, COMPONENT),
        "spec": {
            "serviceName": name,
            "replicas": bus.replicas,
            # Parallel start (a cluster needs its peers to elect a meta leader before any is
            # JetStream-ready); updates still roll one pod at a time, each ready before the next.
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "selector": {"matchLabels": selector_labels(tp.name, COMPONENT)},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(10001),
                    "terminationGracePeriodSeconds": 60,
                    **_spread(tp, bus),
                    "containers": [
                        {
                            "name": "nats",
                            "image": bus.image,
                            "args": ["--config", "/etc/nats/nats.conf"],
                            "env": [
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                }
                            ],
                            "ports": [
                                {"name": n, "containerPort": p, "protocol": "TCP"} for n, p in _ports(bus)
                            ],
                            "livenessProbe": {**probe, "initialDelaySeconds": 10},
                            "readinessProbe": {
                                "httpGet": {"path": JS_HEALTH, "port": "monitor"},
                                "periodSeconds": 5,
                            },
                            "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                            "securityContext": container_security_context(),
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": bus.storage}},
                    },
                }
            ],
        },
    }


def _spread(tp: TradingPipeline, bus: ManagedBus) -> Manifest:
    """With 3 replicas: one server per node where possible (a lost node costs one vote of three),
    and spread over zones; soft rules, so a small cluster still schedules all three."""
    if bus.replicas == 1:
        return {}
    selector = {"matchLabels": selector_labels(tp.name, COMPONENT)}
    return {
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": selector,
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": selector,
            }
        ],
    }


def build_nats_pdb(tp: TradingPipeline, bus: ManagedBus) -> Manifest:
    """A voluntary eviction (drain, upgrade) takes at most one server of three: R3 keeps quorum."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(tp, nats_service_name(tp.name), COMPONENT),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(tp.name, COMPONENT)},
        },
    }


def build_bus(tp: TradingPipeline, auth_conf: str | None = None) -> list[Manifest]:
    """Every object of the managed bus but its NetworkPolicy (`builders.security`), or nothing for an
    external `bus.url`. `auth_conf`: the users' `authorization {}` block (its Secret is applied
    before these), None for no users."""
    bus = tp.spec.bus.managed
    if bus is None:
        return []
    objs = [
        build_nats_config(tp, bus, auth=auth_conf is not None),
        build_nats_service(tp, bus),
        build_nats_statefulset(tp, bus, auth_conf),
    ]
    return [*objs, build_nats_pdb(tp, bus)] if bus.replicas > 1 else objs
