"""A real Kubernetes control plane on loopback, without containers, for the test suite.

etcd, kube-apiserver (RBAC + Node authorization, the default admission plugins including PodSecurity,
plus OwnerReferencesPermissionEnforcement), kube-controller-manager (garbage collector, deployment,
replicaset, statefulset, service accounts and their tokens, namespaces, disruption, node lifecycle,
the volume binder over pre-made volumes), kube-scheduler
and kwok with two fake nodes (pods are scheduled, become Running and Ready, Deployments Available).
The binaries come from `make tools` (scripts/k8s/go.mod) in .tools/bin.

    python scripts/k8s/testcluster.py up DIR      # returns once /readyz answers; DIR/kubeconfig is cluster-admin
    python scripts/k8s/testcluster.py down DIR    # stops every process `up` started (pids in DIR/pids.json)

Everything listens on 127.0.0.1 on free ports; logs go to DIR/logs. The components authenticate with
static tokens (DIR/tokens.csv, mode 0600); users of the cluster get ServiceAccount tokens from the
TokenRequest API like on any cluster. The pytest fixture (tests/fixtures/cluster.py) runs this code.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("APEX_K8S_BIN", ROOT / ".tools" / "bin"))
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
CONTROLLERS = (
    "garbagecollector,deployment,replicaset,statefulset,serviceaccount,serviceaccount-token,"
    "namespace,disruption,root-ca-cert-publisher,nodelifecycle,persistentvolume-binder"
)
NODES = ("kwok-node-0", "kwok-node-1")
#: Pre-made volumes for StatefulSet claims (no storage provisioner runs here; the PV binder does bind).
VOLUMES = 8


def missing_binaries() -> list[str]:
    """The control-plane binaries `make tools` has not built (empty when the cluster can start)."""
    return [name for name in BINARIES if not (BIN / name).is_file()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A started control plane: where it listens and how to reach it as cluster-admin."""

    dir: Path
    server: str
    admin_token: str
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


# ---------------------------------------------------------------------------------------- certificates


def _write_pki(pki: Path) -> None:
    """A CA, the API server's serving certificate, and the service-account signing key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pki.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def save(name: str, data: bytes, mode: int = 0o644) -> None:
        path = pki / name
        path.write_bytes(data)
        path.chmod(mode)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "apextrader-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(*([False] * 5), True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "10.96.0.1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    save("ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    save("apiserver.crt", cert.public_bytes(serialization.Encoding.PEM))
    save("apiserver.key", pem_key(key), 0o600)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    save("sa.key", pem_key(sa_key), 0o600)
    save(
        "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def _kubeconfig(path: Path, server: str, ca: Path, user: str, token: str) -> None:
    import base64

    ca_data = base64.b64encode(ca.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "apex-test", "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "apex-test", "context": {"cluster": "apex-test", "user": user}}],
        "current-context": "apex-test",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


# ------------------------------------------------------------------------------------------- processes


def _start(cluster: Cluster, name: str, args: list[str]) -> None:
    logs = cluster.dir / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # `down` and a crashed test run cannot leave orphans in our group
        )
    cluster.pids[name] = proc.pid
    (cluster.dir / "pids.json").write_text(json.dumps(cluster.pids))


def _get(url: str, token: str, ca: Path, timeout: float = 2.0) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def _wait(what: str, check: object, timeout: float, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        for name, pid in cluster.pids.items():
            if not _alive(pid):
                tail = (cluster.dir / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited while waiting for {what}:\n{tail}")
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s (logs in {cluster.dir / 'logs'})")


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass  # not our child (down from another process): fall back to signal 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kubectl(cluster: Cluster, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def _volume(index: int, directory: Path) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"test-pv-{index}"},
        "spec": {
            "capacity": {"storage": "100Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": str(directory / "volumes" / str(index))},
        },
    }


def _node(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "type": "kwok",
                "topology.kubernetes.io/zone": f"zone-{name[-1]}",
            },
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }


# ------------------------------------------------------------------------------------------- up / down


def up(directory: Path, timeout: float = 60.0) -> Cluster:
    """Start the control plane in DIRECTORY; return once /readyz answers and both nodes are Ready."""
    missing = missing_binaries()
    if missing:
        raise FileNotFoundError(f"missing in {BIN}: {', '.join(missing)} (run `make tools`)")
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    pki = directory / "pki"
    _write_pki(pki)
    tokens = {
        user: secrets.token_hex(16)
        for user in ("admin", "system:kube-controller-manager", "system:kube-scheduler", "kwok")
    }
    # Components join system:masters: a test cluster, not kubeadm's per-controller service accounts.
    token_csv = directory / "tokens.csv"
    token_csv.write_text("".join(f'{t},{u},{u},"system:masters"\n' for u, t in tokens.items()))
    token_csv.chmod(0o600)
    api_port, etcd_port, peer_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"
    cluster = Cluster(dir=directory, server=server, admin_token=tokens["admin"])
    (directory / "server").write_text(server)
    for user, token in tokens.items():
        name = "kubeconfig" if user == "admin" else f"kubeconfig-{user.split(':')[-1]}"
        _kubeconfig(directory / name, server, pki / "ca.crt", user, token)

    started = time.monotonic()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    _start(cluster, "etcd", [
        "etcd", "--data-dir", str(directory / "etcd"), "--name", "apex-test",
        "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"apex-test={peer_url}", "--unsafe-no-fsync", "--log-level", "warn",
        "--quota-backend-bytes", str(2 * 1024**3),
    ])  # fmt: skip
    _start(cluster, "kube-apiserver", [
        "kube-apiserver", "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1",
        "--advertise-address", "127.0.0.1", "--secure-port", str(api_port),
        "--cert-dir", str(directory / "apiserver-certs"),
        "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
        "--client-ca-file", str(pki / "ca.crt"), "--token-auth-file", str(token_csv),
        "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file", str(pki / "sa.pub"),
        "--service-account-signing-key-file", str(pki / "sa.key"),
        "--api-audiences", "https://kubernetes.default.svc.cluster.local",
        "--authorization-mode", "Node,RBAC",
        "--enable-admission-plugins", "NodeRestriction,OwnerReferencesPermissionEnforcement",
        "--service-cluster-ip-range", "10.96.0.0/16", "--allow-privileged=false",
        "--profiling=false", "--enable-priority-and-fairness=false", "--v=1",
    ])  # fmt: skip
    ca = pki / "ca.crt"
    _wait("kube-apiserver /readyz", lambda: _get(f"{server}/readyz", cluster.admin_token, ca)[0] == 200,
          timeout, cluster)  # fmt: skip
    for component in ("kube-controller-manager", "kube-scheduler"):
        kubeconfig = str(directory / f"kubeconfig-{component}")
        extra = (
            ["--controllers", CONTROLLERS, "--service-account-private-key-file", str(pki / "sa.key"),
             "--root-ca-file", str(ca), "--concurrent-gc-syncs", "5"]
            if component == "kube-controller-manager" else []
        )  # fmt: skip
        _start(cluster, component, [
            component, "--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
            "--authorization-kubeconfig", kubeconfig, "--leader-elect=false",
            "--bind-address", "127.0.0.1", "--secure-port", str(free_port()),
            "--cert-dir", str(directory / f"{component}-certs"), "--v=1", *extra,
        ])  # fmt: skip
    _kubectl(cluster, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
             "items": [_node(n) for n in NODES] + [_volume(i, directory) for i in range(VOLUMES)]}))  # fmt: skip
    _start(cluster, "kwok", [
        "kwok", "--kubeconfig", str(directory / "kubeconfig-kwok"), "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
        "--cidr", "10.244.0.0/16", "--node-ip", "10.0.0.1", "--node-lease-duration-seconds", "40",
        "--server-address", f"127.0.0.1:{free_port()}",
    ])  # fmt: skip

    def nodes_ready() -> bool:
        """Ready, and untainted (the node lifecycle controller lifts `not-ready` a moment later)."""
        try:
            nodes = json.loads(_kubectl(cluster, "get", "nodes", "-o", "json"))["items"]
        except RuntimeError:
            return False
        ready = [
            any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
            and not n["spec"].get("taints")
            for n in nodes
        ]
        return len(ready) == len(NODES) and all(ready)

    _wait("kwok nodes Ready", nodes_ready, timeout, cluster)
    (directory / "up-seconds").write_text(f"{time.monotonic() - started:.2f}")
    return cluster


def down(directory: Path, grace: float = 10.0) -> list[str]:
    """Stop every process `up` started in DIRECTORY (SIGTERM, then SIGKILL); return their names."""
    pids_file = Path(directory) / "pids.json"
    if not pids_file.exists():
        return []
    pids: dict[str, int] = json.loads(pids_file.read_text())
    for pid in reversed(list(pids.values())):  # kwok and controllers before the API server and etcd
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.1)
    for pid in pids.values():
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
    for pid in pids.values():
        _reap(pid)
    pids_file.unlink()
    return list(pids)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print("usage: scripts/test-cluster up|down DIR", file=sys.stderr)
        return 2
    action, directory = argv[0], Path(argv[1])
    if action == "down":
        stopped = down(directory)
        print(f"stopped {', '.join(stopped) or 'nothing'}")
        return 0
    try:
        cluster = up(directory)
    except (FileNotFoundError, TimeoutError, RuntimeError) as exc:
        down(directory)
        print(f"test-cluster: {exc}", file=sys.stderr)
        return 1
    seconds = (directory / "up-seconds").read_text()
    print(f"cluster ready in {seconds} s at {cluster.server}; export KUBECONFIG={cluster.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
