"""Create-or-patch with a last-applied annotation (kubectl's three-way merge, without server-side apply).

A child is patched only when what we want differs from what we last applied or from what the server
holds (drift), so re-running a reconcile sends no writes. Keys we stop rendering are removed
(`null` in the merge patch) because the last-applied copy remembers them. A Secret's annotation holds
only a digest (a copy of its data would spread the secret to every reader of the annotation): a
changed Secret is patched whole, and keys we stop rendering stay (we render fixed key sets).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final, Literal

from apextrader_operator.builders.labels import MANAGED_BY
from apextrader_operator.kube import KubeClient, KubeError, Manifest

LAST_APPLIED: Final = "apextrader.io/last-applied"
#: Server-side apply: a digest of what we last applied (the server tracks the fields themselves).
APPLIED_DIGEST: Final = "apextrader.io/applied-digest"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
Outcome = Literal["created", "patched", "unchanged"]


class FieldConflict(Exception):
    """Server-side apply refused: another field manager owns fields we set (never forced)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class ForeignObject(Exception):
    """An object with a child's name that this pipeline did not create: it is never changed."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} exists and is not managed by this TradingPipeline")
        self.key = key


def owned_by(obj: Manifest, uid: str | None) -> bool:
    """Ours: the operator's managed-by label AND this CR's UID among the owner references."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    owners = {o.get("uid") for o in meta.get("ownerReferences") or []}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY and uid is not None and uid in owners


def object_key(obj: Manifest) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def is_subset(want: Any, have: Any) -> bool:
    """Whether everything in `want` is present and equal in `have` (server-side defaults ignored)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and is_subset(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(is_subset(a, b) for a, b in zip(want, have, strict=True))
        )
    return bool(want == have)


def three_way_patch(last: Any, desired: Any) -> Any:
    """A merge patch that turns the last-applied object into `desired` (lists are replaced whole)."""
    if not isinstance(desired, dict) or not isinstance(last, dict):
        return desired
    patch: dict[str, Any] = {k: None for k in last if k not in desired}
    for key, value in desired.items():
        patch[key] = three_way_patch(last.get(key), value)
    return patch


def merge_diff(before: Any, after: Any) -> Any:
    """The smallest merge patch from `before` to `after` (unchanged keys left out)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return after
    patch: dict[str, Any] = {k: None for k in before if k not in after}
    for key, value in after.items():
        if key not in before:
            patch[key] = value
        elif before[key] != value:
            patch[key] = merge_diff(before[key], value)
    return patch


def _annotated(obj: Manifest) -> tuple[Manifest, str]:
    record = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    if obj["kind"] == "Secret":
        record = "sha256:" + hashlib.sha256(record.encode()).hexdigest()
    meta = obj["metadata"]
    body = {**obj, "metadata": {**meta, "annotations": {**meta.get("annotations", {}), LAST_APPLIED: record}}}
    return body, record


_FETCH: Final = object()


async def apply(
    kube: KubeClient, obj: Manifest, current: Any = _FETCH, *, owner_uid: str | None
) -> tuple[Outcome, Manifest]:
    """Create or patch one object; returns what happened and the object as the server holds it.

    `current` may be passed from an earlier LIST/GET (None: absent) to save a GET per object. An
    existing object is patched only when `owned_by(current, owner_uid)`; otherwise ForeignObject.
    With `kube.server_side_apply`, written by server-side apply (`_server_side`).
    """
    kind, meta = obj["kind"], obj["metadata"]
    if current is _FETCH:
        current = await kube.get(kind, meta.get("namespace"), meta["name"])
    if current is not None and not owned_by(current, owner_uid):
        raise ForeignObject(object_key(obj))
    if kube.server_side_apply:
        return await _server_side(kube, obj, current)
    body, record = _annotated(obj)
    if current is None:
        try:
            return "created", await kube.create(body)
        except KubeError as exc:
            if exc.status != 409:  # created meanwhile: patch it below, if it is ours
                raise
            current = await kube.get(kind, meta.get("namespace"), meta["name"]) or {}
            if not owned_by(current, owner_uid):
                raise ForeignObject(object_key(obj)) from None
    last_text = (current.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
    if last_text == record and is_subset(obj, current):
        return "unchanged", current
    last = json.loads(last_text) if last_text and not last_text.startswith("sha256:") else {}
    patched = await kube.patch(kind, meta.get("namespace"), meta["name"], three_way_patch(last, body))
    return "patched", patched or current


async def _server_side(kube: KubeClient, obj: Manifest, current: Manifest | None) -> tuple[Outcome, Manifest]:
    """Server-side apply, force=False: fields we stop sending are removed by the server, fields
    another manager owns with another value are a FieldConflict (reported, never overwritten).
    Unchanged (same digest, nothing drifted) sends nothing. The UID of the object we checked is a
    precondition: a different object under the name since then is refused by the server."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
    held = (current or {}).get("metadata", {})
    if (
        current is not None
        and (held.get("annotations") or {}).get(APPLIED_DIGEST) == digest
        and is_subset(obj, current)
    ):
        return "unchanged", current
    meta = {
        **obj["metadata"],
        "annotations": {**obj["metadata"].get("annotations", {}), APPLIED_DIGEST: digest},
    }
    if current is not None:
        meta["uid"] = held.get("uid")
    try:
        applied = await kube.apply({**obj, "metadata": meta}, force=False)
    except KubeError as exc:
        if exc.field_conflict:
            raise FieldConflict(object_key(obj), exc.message) from None
        raise
    return ("created" if current is None else "patched"), applied
