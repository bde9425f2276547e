"""A small async Kubernetes client on aiohttp: kubeconfig or in-cluster credentials, JSON merge patch
and server-side apply.

Why not kr8s (docs/operator.md, "Kubernetes client"): kr8s 0.20 has no server-side apply (its patch
sends merge or JSON patches only), retries every 403 three times with re-authentication (an RBAC
refusal costs four requests), and writes kubeconfig keys to temporary files it never removes. The
operator needs six verbs on nine kinds; every write names the field manager `apextrader-operator`
and asks for strict field validation. The same code runs against a real API server and against
kmock over HTTP (no server-side apply, no label selectors, no PUT): merge patch and client-side
label filtering work on both; `apply` (server-side apply) only on a real server.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import yaml

Manifest = dict[str, Any]
SA_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
FIELD_MANAGER: Final = "apextrader-operator"
PARTIAL_METADATA: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
#: Every write: our field manager; unknown or duplicate fields are errors, never dropped silently.
WRITE_PARAMS: Final = {"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"}

#: kind → (API prefix, plural) for every kind the operator and the CLI touch.
KINDS: Final[dict[str, tuple[str, str]]] = {
    "ConfigMap": ("api/v1", "configmaps"),
    "Service": ("api/v1", "services"),
    "ServiceAccount": ("api/v1", "serviceaccounts"),
    "Secret": ("api/v1", "secrets"),
    "Event": ("api/v1", "events"),
    "Deployment": ("apis/apps/v1", "deployments"),
    "StatefulSet": ("apis/apps/v1", "statefulsets"),
    "NetworkPolicy": ("apis/networking.k8s.io/v1", "networkpolicies"),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets"),
    "TradingPipeline": ("apis/apextrader.io/v1alpha1", "tradingpipelines"),
}


class KubeError(Exception):
    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.reason = status, message, reason

    @property
    def field_conflict(self) -> bool:
        """A server-side apply refused because another field manager owns a field we set."""
        return self.status == 409 and self.reason == "Conflict" and "conflict" in self.message.lower()

    @property
    def transient(self) -> bool:
        return not self.field_conflict and (self.status >= 500 or self.status in (409, 429))


@dataclass(frozen=True)
class Credentials:
    server: str
    token: str | None = None
    ssl: ssl.SSLContext | bool = True
    namespace: str = "default"


def _pem(data: str | None, path: str | None) -> bytes | None:
    """kubeconfig `*-data` fields are base64 PEM; the others name a file."""
    if data:
        return base64.b64decode(data)
    return Path(path).expanduser().read_bytes() if path else None


def _client_tls(ca: bytes | None, cert: bytes | None, key: bytes | None) -> ssl.SSLContext:
    """The CA from memory; the client key pair through files in a private temporary directory
    that is removed as soon as they are loaded (ssl reads a key pair only from files)."""
    context = ssl.create_default_context(cadata=ca.decode()) if ca else ssl.create_default_context()
    if cert and key:
        with tempfile.TemporaryDirectory(prefix="apex-kube-") as tmp:
            cert_file, key_file = Path(tmp) / "client.crt", Path(tmp) / "client.key"
            for file, pem in ((cert_file, cert), (key_file, key)):
                file.touch(mode=0o600)
                file.write_bytes(pem)
            context.load_cert_chain(cert_file, key_file)
    return context


def load_credentials(kubeconfig: str | None = None, context: str | None = None) -> Credentials:
    """In-cluster service account in a pod, else the kubeconfig (`KUBECONFIG`, ~/.kube/config)."""
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config"
    config_file = Path(path).expanduser()
    if not kubeconfig and not config_file.exists() and (SA_DIR / "token").exists():
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        return Credentials(
            server=f"https://{host}:{port}",
            token=(SA_DIR / "token").read_text().strip(),
            ssl=ssl.create_default_context(cafile=str(SA_DIR / "ca.crt")),
            namespace=(SA_DIR / "namespace").read_text().strip(),
        )
    if not config_file.exists():
        raise FileNotFoundError(f"no kubeconfig at {config_file} and not running in a cluster")
    doc = yaml.safe_load(config_file.read_text()) or {}
    ctx_name = context or doc.get("current-context")
    ctx: dict[str, Any] | None = next(
        (c["context"] for c in doc.get("contexts", []) if c["name"] == ctx_name), None
    )
    if ctx is None:
        raise ValueError(f"kubeconfig {config_file}: context {ctx_name!r} not found")
    cluster = next(c["cluster"] for c in doc.get("clusters", []) if c["name"] == ctx["cluster"])
    user: dict[str, Any] = (
        next((u["user"] for u in doc.get("users", []) if u["name"] == ctx.get("user")), {}) or {}
    )
    server: str = cluster["server"]
    verify: ssl.SSLContext | bool = True
    if server.startswith("https"):
        if cluster.get("insecure-skip-tls-verify"):
            verify = False
        else:
            verify = _client_tls(
                _pem(cluster.get("certificate-authority-data"), cluster.get("certificate-authority")),
                _pem(user.get("client-certificate-data"), user.get("client-certificate")),
                _pem(user.get("client-key-data"), user.get("client-key")),
            )
    return Credentials(
        server=server.rstrip("/"),
        token=user.get("token"),
        ssl=verify,
        namespace=ctx.get("namespace", "default"),
    )


def object_path(kind: str, namespace: str | None, name: str | None = None, subresource: str = "") -> str:
    prefix, plural = KINDS[kind]
    path = f"/{prefix}/namespaces/{namespace}/{plural}" if namespace else f"/{prefix}/{plural}"
    if name:
        path += f"/{name}"
    return path + (f"/{subresource}" if subresource else "")


class KubeClient:
    """One aiohttp session; open with `async with KubeClient(creds) as kube`.

    `server_side_apply` (the default): children are written with server-side apply as field manager
    apextrader-operator, never forced (apply.py); False uses merge patches instead, which the kmock
    test API needs (it cannot serve apply). The operator takes it from its settings
    (`OperatorConfig.server_side_apply`); the real-cluster suite runs the default."""

    def __init__(self, creds: Credentials, server_side_apply: bool = True) -> None:
        self.creds = creds
        self.server_side_apply = server_side_apply
        headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else {}
        self._session = aiohttp.ClientSession(
            base_url=creds.server,
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=creds.ssl),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    @property
    def closed(self) -> bool:
        return bool(self._session.closed)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Manifest | None:
        async with self._session.request(method, path, **kwargs) as resp:
            if resp.status == 404:
                return None
            body = await resp.json(content_type=None) if resp.content_length != 0 else {}
            if resp.status >= 400:
                fields = body if isinstance(body, dict) else {}
                raise KubeError(
                    resp.status, str(fields.get("message", resp.reason)), str(fields.get("reason", ""))
                )
            return body if isinstance(body, dict) else {}

    async def get(
        self, kind: str, namespace: str | None, name: str, *, metadata_only: bool = False
    ) -> Manifest | None:
        """One object; `metadata_only`: ask for its metadata alone (PartialObjectMetadata), so a
        Secret we only check the labels of never sends its data (a server that cannot answer so
        sends the whole object)."""
        headers = {"Accept": f"{PARTIAL_METADATA},application/json"} if metadata_only else None
        return await self._call("GET", object_path(kind, namespace, name), headers=headers)

    async def list(
        self, kind: str, namespace: str | None, labels: Mapping[str, str] | None = None
    ) -> list[Manifest]:
        """Objects of a kind, filtered by labels here too (kmock ignores label selectors)."""
        params = {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else {}
        body = await self._call("GET", object_path(kind, namespace), params=params) or {}
        items: list[Manifest] = body.get("items", [])
        want = dict(labels or {})
        return [i for i in items if want.items() <= (i.get("metadata", {}).get("labels") or {}).items()]

    async def create(self, obj: Manifest) -> Manifest:
        ns = obj["metadata"].get("namespace")
        created = await self._call("POST", object_path(obj["kind"], ns), json=obj, params=WRITE_PARAMS)
        if created is None:
            raise KubeError(404, f"cannot create {obj['kind']} in namespace {ns}")
        return created

    async def patch(
        self, kind: str, namespace: str | None, name: str, patch: Manifest, subresource: str = ""
    ) -> Manifest | None:
        """RFC 7386 merge patch (`null` deletes a key)."""
        return await self._call(
            "PATCH",
            object_path(kind, namespace, name, subresource),
            json=patch,
            params=WRITE_PARAMS,
            headers={"Content-Type": "application/merge-patch+json"},
        )

    async def apply(self, obj: Manifest, *, force: bool = False) -> Manifest:
        """Server-side apply as `apextrader-operator` (creates the object when absent). `force=False`:
        a field another manager owns with another value is a 409 Conflict (`field_conflict`)."""
        meta = obj["metadata"]
        applied = await self._call(
            "PATCH",
            object_path(obj["kind"], meta.get("namespace"), meta["name"]),
            json=obj,  # JSON is YAML: the apply-patch content type takes it as it is
            params={**WRITE_PARAMS, "force": "true" if force else "false"},
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        if applied is None:
            raise KubeError(
                404, f"cannot apply {obj['kind']}/{meta['name']} in namespace {meta.get('namespace')}"
            )
        return applied

    async def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        return await self._call("DELETE", object_path(kind, namespace, name), json=body) is not None
