"""The real-cluster suite's cluster: a local control plane (scripts/k8s/testcluster.py, the code
behind `scripts/test-cluster`) or, with APEX_CLUSTER_KUBECONFIG set, an existing cluster such as the
one `make kind-up` creates (the same journey tests, two fixtures).

Without the binaries (`make tools` needs Go) the suite skips with one reason; under CI=true that is
a failure, so a CI run can never pass without having run it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_testcluster() -> ModuleType:
    spec = importlib.util.spec_from_file_location("testcluster", REPO / "scripts" / "k8s" / "testcluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["testcluster"] = module
    spec.loader.exec_module(module)
    return module


testcluster = _load_testcluster()


@dataclass(frozen=True)
class ClusterAccess:
    """What a journey test needs of a cluster: a cluster-admin kubeconfig and whether the harness
    must play what no container runtime runs here (the operator's pod and the NATS pod)."""

    kubeconfig: Path
    local: bool
    dir: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the real-cluster suite must run under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterAccess]:
    missing = testcluster.missing_binaries()
    if missing:
        _unavailable(
            f"control plane not built ({', '.join(missing)} missing in .tools/bin): run `make tools` (needs Go)"
        )
    directory = tmp_path_factory.mktemp("cluster")
    try:
        cluster = testcluster.up(directory)
    except Exception:
        testcluster.down(directory)
        raise
    print(f"\nlocal control plane ready in {(directory / 'up-seconds').read_text()} s at {cluster.server}")
    try:
        yield ClusterAccess(kubeconfig=cluster.kubeconfig, local=True, dir=directory)
    finally:
        testcluster.down(directory)


@pytest.fixture(scope="session")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> ClusterAccess:
    kubeconfig = Path(os.environ["APEX_CLUSTER_KUBECONFIG"])
    return ClusterAccess(kubeconfig=kubeconfig, local=False, dir=tmp_path_factory.mktemp("kind"))


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> ClusterAccess:
    """The local control plane, or the cluster of APEX_CLUSTER_KUBECONFIG (kind)."""
    name = "kind_cluster" if os.environ.get("APEX_CLUSTER_KUBECONFIG") else "local_cluster"
    access: ClusterAccess = request.getfixturevalue(name)
    return access


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The journey is one story (install, apply, edit, restart, delete, uninstall): its tests keep
    the order of the file even when pytest-randomly shuffles the rest of the suite."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if Path(str(item.path)).parent == here]
    ordered = sorted((items[i] for i in slots), key=lambda item: (str(item.path), item.location[1]))
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item
