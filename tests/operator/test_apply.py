"""The create-or-patch rules: subset (server defaults ignored), three-way removal, minimal status diff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from apextrader_operator.apply import FieldConflict, apply, is_subset, merge_diff, three_way_patch
from apextrader_operator.builders.labels import MANAGED_BY
from apextrader_operator.kube import Credentials, KubeClient, KubeError
from tests.operator.harness import NAMESPACE, kube_api


def test_subset_ignores_server_defaults_but_not_changes() -> None:
    want = {"spec": {"replicas": 1, "template": {"containers": [{"name": "a", "image": "x"}]}}}
    have = {
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": 600,
            "template": {
                "containers": [{"name": "a", "image": "x", "terminationMessagePath": "/dev/termination-log"}]
            },
        }
    }
    assert is_subset(want, have)
    assert not is_subset({"spec": {"replicas": 2}}, have)
    assert not is_subset({"spec": {"template": {"containers": []}}}, have)


def test_three_way_patch_removes_what_we_stopped_rendering() -> None:
    last = {
        "spec": {"template": {"containers": [{"envFrom": [{"secretRef": {"name": "k"}}]}]}, "paused": True}
    }
    desired = {"spec": {"template": {"containers": [{"name": "execution"}]}}}
    patch = three_way_patch(last, desired)
    assert patch["spec"]["paused"] is None  # a key only in last-applied is deleted
    assert patch["spec"]["template"]["containers"] == [{"name": "execution"}]  # lists replaced whole


def test_merge_diff_is_minimal() -> None:
    before = {"phase": "Running", "agents": {"a": {"ready": 1}, "b": {"ready": 1}}, "message": ""}
    after = {"phase": "Running", "agents": {"a": {"ready": 0}}, "message": ""}
    assert merge_diff(before, after) == {"agents": {"a": {"ready": 0}, "b": None}}
    assert merge_diff(after, after) == {}


async def test_server_side_apply_on_the_wire(tmp_path: Path) -> None:
    """What a real API server receives: an apply patch as `apextrader-operator`, never forced, with
    the checked object's UID as precondition; an unchanged object gets no request. (kmock itself
    merges an apply body like a merge patch and 404s on an absent object: docs/operator.md.)"""
    async with kube_api(tmp_path) as (emulator, kube):
        seen: list[tuple[str, str, dict[str, str], Any]] = []
        handle = emulator._handle

        async def spy(request: Any) -> Any:
            seen.append(
                (
                    str(request.method.value),
                    request.headers.get("Content-Type", ""),
                    dict(request.params),
                    request.data,
                )
            )
            return await handle(request)

        emulator._handle = spy  # type: ignore[method-assign]
        ssa = KubeClient(kube.creds, server_side_apply=True)
        try:
            obj = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "c",
                    "namespace": NAMESPACE,
                    "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
                    "ownerReferences": [
                        {
                            "uid": "u1",
                            "kind": "TradingPipeline",
                            "name": "p",
                            "apiVersion": "apextrader.io/v1alpha1",
                        }
                    ],
                },
                "data": {"a": "1"},
            }
            current = await kube.create({**obj, "metadata": {**obj["metadata"]}})
            seen.clear()
            outcome, _ = await apply(ssa, obj, current, owner_uid="u1")
            assert outcome == "patched"
            ((method, ctype, params, data),) = seen
            assert (method, ctype) == ("PATCH", "application/apply-patch+yaml")
            assert params == {
                "fieldManager": "apextrader-operator",
                "fieldValidation": "Strict",
                "force": "false",
            }
            assert data["metadata"]["uid"] == current["metadata"]["uid"]
            held = await kube.get("ConfigMap", NAMESPACE, "c")
            seen.clear()
            assert (await apply(ssa, obj, held, owner_uid="u1"))[0] == "unchanged" and seen == []
        finally:
            await ssa.close()


class _Refusing(KubeClient):
    async def apply(self, obj: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
        message = 'Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.a'
        raise KubeError(409, message, "Conflict")


async def test_a_field_owned_by_another_manager_is_reported_not_forced() -> None:
    kube = _Refusing(Credentials(server="http://127.0.0.1:9"), server_side_apply=True)
    try:
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "2"}}
        with pytest.raises(FieldConflict, match=r"ConfigMap/c: .*kubectl-edit.*\.data\.a"):
            await apply(kube, obj, None, owner_uid="u1")
        assert not KubeError(409, "Apply failed with 1 conflict: x", "Conflict").transient
        assert KubeError(409, "the object has been modified", "Conflict").transient  # a plain race: retried
    finally:
        await kube.close()
