"""The pipeline key and the operator's own login to a managed bus.

Every NATS password of a pipeline is an HMAC of one random key (`builders.security`), which the
operator creates once in the Secret `<pipeline>-nats-key` and from then on only reads: it never
rewrites or rotates it. Deleting that Secret is how a user rotates every password (the NATS server
and the agents roll onto the new ones through their pod-template hashes). Neither the key nor a
password is ever put in a log line, status, event or exception message.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import kopf

from apextrader.contracts.pipeline import TradingPipeline
from apextrader_operator.apply import ForeignObject, owned_by
from apextrader_operator.builders.nats import nats_url
from apextrader_operator.builders.security import (
    KEY_BYTES,
    OPERATOR_USER,
    build_pipeline_key_secret,
    key_secret_name,
    operator_password,
    pipeline_key_of,
)
from apextrader_operator.kube import KubeClient, KubeError


class PipelineKeyInvalid(Exception):
    """The key Secret exists but holds no usable key (its message names the Secret, not a value)."""


def _key_of(secret: Mapping[str, Any]) -> bytes:
    try:
        return pipeline_key_of(dict(secret))
    except ValueError as exc:
        raise PipelineKeyInvalid(str(exc)) from None


async def ensure_pipeline_key(kube: KubeClient, tp: TradingPipeline, owner: Mapping[str, Any]) -> bytes:
    """The pipeline key: read it, or create it once when the Secret does not exist yet. A Secret of
    that name this pipeline did not create is never read for a key: ForeignObject."""
    ns, name = tp.metadata.namespace, key_secret_name(tp.name)
    uid = (owner.get("metadata") or {}).get("uid")
    current = await kube.get("Secret", ns, name)
    if current is not None and not owned_by(current, uid):
        raise ForeignObject(f"Secret/{name}")
    if current is None:
        obj = build_pipeline_key_secret(tp, secrets.token_bytes(KEY_BYTES))
        kopf.adopt(obj, owner=owner)  # type: ignore[arg-type]  # removed with the pipeline
        try:
            current = await kube.create(obj)
        except KubeError as exc:
            if exc.status != 409:
                raise
            current = await kube.get("Secret", ns, name)  # another writer won: use its key
            if current is None:
                raise
            if not owned_by(current, uid):
                raise ForeignObject(f"Secret/{name}") from None
    return _key_of(current)


async def read_pipeline_key(kube: KubeClient, tp: TradingPipeline) -> bytes | None:
    """The key if its Secret exists and is usable (deletion: never create one then)."""
    current = await kube.get("Secret", tp.metadata.namespace, key_secret_name(tp.name))
    if current is None:
        return None
    try:
        return _key_of(current)
    except PipelineKeyInvalid:
        return None


@dataclass(frozen=True)
class BusLogin:
    """Where and as whom the operator connects; the password stays out of repr and of the URL."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def pool_key(self) -> str:
        """One pooled connection per URL and credentials (a new key means a new connection)."""
        secret = hashlib.sha256((self.password or "").encode()).hexdigest()[:16]
        return f"{self.url}|{self.user or ''}|{secret}"

    def options(self) -> dict[str, str]:
        return {"user": self.user, "password": self.password or ""} if self.user else {}


def operator_login(tp: TradingPipeline, key: bytes | None, url_override: str | None = None) -> BusLogin:
    """The managed bus with the operator's user; an external bus without credentials (with
    `bus.credentialsSecret`, use `bus_login`)."""
    url = url_override or nats_url(tp)
    if tp.spec.bus.managed is None or key is None:
        return BusLogin(url)
    return BusLogin(url, OPERATOR_USER, operator_password(tp, key))


#: Keys of the Secret named by `bus.credentialsSecret`.
CREDENTIALS_USER: Final = "user"
CREDENTIALS_PASSWORD: Final = "password"


async def bus_login(
    kube: KubeClient, tp: TradingPipeline, key: bytes | None, url_override: str | None = None
) -> BusLogin:
    """`operator_login`, and for an external bus with `bus.credentialsSecret` the login from that
    Secret (`user`, `password`); a missing Secret or key raises KubeError 404 naming the Secret only."""
    login = operator_login(tp, key, url_override)
    name = tp.spec.bus.credentials_secret
    if tp.spec.bus.managed is not None or name is None:
        return login
    secret = await kube.get("Secret", tp.metadata.namespace, name)
    data = (secret or {}).get("data") or {}
    if CREDENTIALS_USER not in data:
        raise KubeError(
            404,
            f"Secret {name}: needs `{CREDENTIALS_USER}` and `{CREDENTIALS_PASSWORD}` (bus.credentialsSecret)",
        )
    user = base64.b64decode(data[CREDENTIALS_USER]).decode()
    password = base64.b64decode(data.get(CREDENTIALS_PASSWORD, "")).decode()
    return BusLogin(login.url, user, password)
