"""A small async Kubernetes client on aiohttp: kubeconfig or in-cluster credentials, JSON merge patch.

Why not kr8s or the official client: the operator needs five verbs on seven kinds, and the same code
must run against a real API server and against kmock over HTTP (which has no server-side apply, no
label selectors and no PUT). Merge patch and client-side label filtering work on both.
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
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status

    @property
    def transient(self) -> bool:
        return self.status >= 500 or self.status in (409, 429)


@dataclass(frozen=True)
class Credentials:
    server: str
    token: str | None = None
    ssl: ssl.SSLContext | bool = True
    namespace: str = "default"


def _materialise(data: str | None, path: str | None) -> str | None:
    """kubeconfig `*-data` fields are base64 PEM; ssl wants files."""
    if data:
        fd, name = tempfile.mkstemp(prefix="apex-kube-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64decode(data))
        return name
    return path


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
            ca = _materialise(cluster.get("certificate-authority-data"), cluster.get("certificate-authority"))
            verify = ssl.create_default_context(cafile=ca)
            cert = _materialise(user.get("client-certificate-data"), user.get("client-certificate"))
            key = _materialise(user.get("client-key-data"), user.get("client-key"))
            if cert and key:
                verify.load_cert_chain(cert, key)
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
    """One aiohttp session; open with `async with KubeClient(creds) as kube`."""

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds
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
                message = body.get("message", resp.reason) if isinstance(body, dict) else resp.reason
                raise KubeError(resp.status, str(message))
            return body if isinstance(body, dict) else {}

    async def get(self, kind: str, namespace: str | None, name: str) -> Manifest | None:
        return await self._call("GET", object_path(kind, namespace, name))

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
        created = await self._call("POST", object_path(obj["kind"], ns), json=obj)
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
            headers={"Content-Type": "application/merge-patch+json"},
        )

    async def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        return await self._call("DELETE", object_path(kind, namespace, name), json=body) is not None
