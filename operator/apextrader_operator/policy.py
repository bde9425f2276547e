"""What a TradingPipeline may make the operator do beyond its own objects (docs/security.md).

- **Images**: agent and NATS images only from the operator's allow-list (`APEX_ALLOWED_IMAGES`,
  comma-separated repository prefixes; default: the operator's own agent image repository and the
  official `nats` image). An entry `repo` allows `repo:any-tag`, `repo@sha256:...` and repositories
  below `repo/`; an entry `repo:tag` allows that tag and any `repo@sha256:` digest. Anything else is
  `InvalidSpec` naming the field, and no child changes.
- **Exchange credentials**: `execution.credentialsSecret` (base spec and canary template) is mounted
  only when the track trades live, and only from a Secret labelled
  `apextrader.io/exchange-credentials: "true"`. The operator reads it with one GET by name (never a
  LIST) for its metadata only (PartialObjectMetadata): the keys themselves never reach the
  operator, only the agent's environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from apextrader.contracts.names import DECISION_TRACKS
from apextrader.contracts.pipeline import TradingPipeline, track_spec
from apextrader_operator.kube import KubeClient

CREDENTIALS_LABEL: Final = "apextrader.io/exchange-credentials"
DEFAULT_REGISTRY: Final = "docker.io"
#: The official NATS image (docker.io/library/nats), always allowed for the managed bus by default.
NATS_IMAGE: Final = "nats"


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference: normalised repository, optional tag, optional digest."""

    repository: str
    tag: str | None = None
    digest: str | None = None


def parse_image(ref: str) -> ImageRef:
    """`nats:2.10-alpine` → docker.io/library/nats, tag 2.10-alpine (Docker's normalisation)."""
    rest, _, digest = ref.strip().partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag = None
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    first, sep, remainder = rest.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        remainder, first = rest, DEFAULT_REGISTRY
    if first == DEFAULT_REGISTRY and "/" not in remainder:
        remainder = f"library/{remainder}"
    return ImageRef(f"{first}/{remainder}".lower(), tag or None, digest or None)


def _entry_allows(entry: str, image: ImageRef) -> bool:
    if entry.endswith("/"):  # a registry or organisation prefix
        allowed = parse_image(entry.rstrip("/") + "/x")
        return image.repository.startswith(allowed.repository.removesuffix("x"))
    allowed = parse_image(entry)
    if image.repository != allowed.repository and not image.repository.startswith(allowed.repository + "/"):
        return False
    if allowed.tag is None or image.digest is not None:
        return True  # any tag of an allowed repository; a digest of it is always allowed
    return image.tag == allowed.tag


def image_allowed(ref: str, allowed: Iterable[str]) -> bool:
    image = parse_image(ref)
    if image.digest is not None and not image.digest.startswith("sha256:"):
        return False
    return any(_entry_allows(entry, image) for entry in allowed)


def default_allowed_images(agent_image: str) -> tuple[str, ...]:
    """The operator's own agent image repository (any tag) and the official `nats` image."""
    return (parse_image(agent_image).repository, NATS_IMAGE)


def allowed_images_from_env(env: Mapping[str, str], agent_image: str) -> tuple[str, ...]:
    entries = tuple(e.strip() for e in env.get("APEX_ALLOWED_IMAGES", "").split(",") if e.strip())
    return entries or default_allowed_images(agent_image)


def image_violations(tp: TradingPipeline, allowed: tuple[str, ...]) -> list[str]:
    """One message per field whose image the allow-list refuses (empty: all allowed)."""
    spec = tp.spec
    images: list[tuple[str, str]] = []
    if spec.image is not None:
        images.append(("spec.image", f"{spec.image.repository}:{spec.image.tag}"))
    if spec.canary is not None and spec.canary.template.image:
        canary = track_spec(spec, "canary").image
        if canary is not None:
            images.append(("spec.canary.template.image", f"{canary.repository}:{canary.tag}"))
    if spec.bus.managed is not None:
        images.append(("spec.bus.managed.image", spec.bus.managed.image))
    return [
        f"{field}: image {ref!r} is not allowed by this operator (APEX_ALLOWED_IMAGES: {', '.join(allowed)})"
        for field, ref in images
        if not image_allowed(ref, allowed)
    ]


def live_credentials(tp: TradingPipeline) -> dict[str, str]:
    """Field → Secret name, for every track that trades live and names credentials."""
    out: dict[str, str] = {}
    tracks = DECISION_TRACKS if tp.spec.canary is not None else ("stable",)
    for track in tracks:
        spec = track_spec(tp.spec, track)
        if spec.mode == "live" and spec.execution.credentials_secret:
            field = "spec.execution.credentialsSecret"
            if (
                track == "canary"
                and spec.execution.credentials_secret != tp.spec.execution.credentials_secret
            ):
                field = "spec.canary.template.execution.credentialsSecret"
            out.setdefault(field, spec.execution.credentials_secret)
    return out


async def credentials_violations(kube: KubeClient, tp: TradingPipeline) -> list[str]:
    """The live tracks' credentials Secrets must exist and carry the credentials label."""
    problems = []
    for field, name in live_credentials(tp).items():
        secret = await kube.get("Secret", tp.metadata.namespace, name, metadata_only=True)
        if secret is None:
            problems.append(f"{field}: Secret/{name} does not exist")
            continue
        labels = (secret.get("metadata") or {}).get("labels") or {}
        if labels.get(CREDENTIALS_LABEL) != "true":
            problems.append(f'{field}: Secret/{name} is not labelled {CREDENTIALS_LABEL}: "true"')
    return problems
