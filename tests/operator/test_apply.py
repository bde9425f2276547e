"""The create-or-patch rules: subset (server defaults ignored), three-way removal, minimal status diff."""

from __future__ import annotations

from apextrader_operator.apply import is_subset, merge_diff, three_way_patch


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
