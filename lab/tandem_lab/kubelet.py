"""A real kubelet on a lab node: deploy/'s DaemonSet runs there the way Kubernetes runs it.

A kubelet node is a lab machine that also runs Debian's containerd (with runc) and a kubelet
built from its Go module (scripts/build-controlplane.sh). It registers as its Node with a
certificate of its own (`system:node:<name>` in `system:nodes`, so the API server's Node
authorizer and NodeRestriction apply to it as to any kubelet). The control plane gains
kube-controller-manager (the DaemonSet controller and the `kube-root-ca.crt` publisher a pod's
service-account volume needs) and kube-scheduler. tandem's image (`make image`) and a pause
image built here are imported into containerd: no registry is involved.

What a kubelet needs that a systemd-nspawn node on this cgroup-v1 host lacks, and what the lab
does about it (none of it touches tandem's code or deploy/):
- writable cgroup controllers: they are remounted read-write in the node. They are the host's
  hierarchies (seen from the launcher's cgroup), so the pods' cgroups (`kubepods*`) appear in
  the host's; `remove_pod_cgroups` deletes them once the node is off. One kubelet node per
  host, for that reason. The node's systemd manages only its own hierarchy (`name=systemd`):
  the controllers were read-only when it booted.
- containerd's overlayfs snapshots cannot live on the node's overlay root: /var/lib/containerd
  is a plain directory of the host, bound into the node.
- runc creates session keyrings: the node's seccomp filter allows `@keyring`.
- kubelet's OOM watcher reads /dev/kmsg: linked to /dev/console.
- the kernel tunables kubelet sets (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops)
  are read-only in a container: files holding the values it wants are bound over them.
- containerd may not lower OOM scores in the node (`restrict_oom_score_adj`); the kubelet runs
  with `failCgroupV1: false` and the cgroupfs driver.
- there is no kube-proxy: a forwarder in the node's network namespace answers on the
  `kubernetes` Service's ClusterIP, which is where the pod's in-cluster client connects.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from tandem_lab.controlplane import KUBERNETES_SERVICE_IP, ControlPlane, free_port
from tandem_lab.machine import Machine, MachineError, remove_cgroup_tree
from tandem_lab.processes import ManagedProcess, spawn

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("TANDEM_CACHE") or Path.home() / ".cache" / "tandem")
PAUSE_SOURCE = Path(__file__).resolve().parent / "pause"
OVERLAY = Path(__file__).resolve().parent / "daemonset"  # deploy/ as the lab runs it
PAUSE_IMAGE = "localhost/pause:lab"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
NSPAWN_OPTIONS = ("--system-call-filter=@keyring",)
# What kubelet writes to /proc/sys at start and the values it wants there.
KERNEL_TUNABLES = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}
IMAGES_IN_NODE = "/root/images"

CONTAINERD_CONFIG = f"""\
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"""

KUBELET_UNIT = """\
[Unit]
Description=kubelet (the tandem lab's kubelet node)
Requires=containerd.service
After=containerd.service

[Service]
ExecStart=/usr/local/bin/kubelet --config=/etc/kubernetes/kubelet.yaml \\
  --kubeconfig=/etc/kubernetes/kubelet.conf --node-ip={node_ip}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def kubelet_config(node_ip: str) -> dict[str, object]:
    """The KubeletConfiguration: client certificates only, no eviction of the lab's images."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "readOnlyPort": 0,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "resolvConf": "",
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
    }


def nspawn_extras(node_dir: Path, binaries: Path) -> tuple[list[str], list[str]]:
    """The kubelet node's extra binds: a plain directory for containerd, the kubelet binary."""
    containerd = node_dir / "containerd"
    containerd.mkdir(parents=True, exist_ok=True)
    return ([f"{containerd}:/var/lib/containerd"], [f"{binaries / 'kubelet'}:/usr/local/bin/kubelet"])


def prepare(machine: Machine, plane: ControlPlane, server: str, node_ip: str) -> None:
    """Before the node boots: containerd's and kubelet's configuration, the node's own client
    certificate, the kubelet unit (enabled, so a reboot brings it back)."""
    root = machine.root
    name = machine.spec.name
    key, cert = plane.sign_client(f"kubelet-{name}", f"/O=system:nodes/CN=system:node:{name}")
    pki = root / "etc" / "kubernetes" / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    shutil.copy(plane.pki / "ca.crt", pki / "ca.crt")
    shutil.copy(cert, pki / "kubelet.crt")
    shutil.copy(key, pki / "kubelet.key")
    os.chmod(pki / "kubelet.key", 0o600)
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lab",
                "cluster": {
                    "server": server,
                    "certificate-authority": "/etc/kubernetes/pki/ca.crt",
                    "tls-server-name": "kubernetes",
                },
            }
        ],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate": "/etc/kubernetes/pki/kubelet.crt",
                    "client-key": "/etc/kubernetes/pki/kubelet.key",
                },
            }
        ],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": name}}],
        "current-context": "lab",
    }
    (root / "etc" / "kubernetes" / "kubelet.conf").write_text(json.dumps(kubeconfig, indent=2))
    (root / "etc" / "kubernetes" / "kubelet.yaml").write_text(json.dumps(kubelet_config(node_ip), indent=2))
    (root / "etc" / "containerd").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "containerd" / "config.toml").write_text(CONTAINERD_CONFIG)
    tunables = root / "etc" / "tandem-lab" / "kernel"
    for path, value in KERNEL_TUNABLES.items():
        (tunables / path).parent.mkdir(parents=True, exist_ok=True)
        (tunables / path).write_text(value + "\n")
    units = root / "etc" / "systemd" / "system"
    (units / "kubelet.service").write_text(KUBELET_UNIT.format(node_ip=node_ip))


def start(machine: Machine, images: list[Path]) -> None:
    """After boot: the container workarounds, containerd, the images, then the kubelet."""
    mounts = machine.exec(["findmnt", "-rn", "-t", "cgroup", "-o", "TARGET"]).stdout.split()
    for target in mounts:
        machine.exec(["mount", "-o", "remount,bind,rw", target])
    machine.exec(["ln", "-sf", "/dev/console", "/dev/kmsg"])
    for path in KERNEL_TUNABLES:
        machine.exec(["mount", "--bind", f"/etc/tandem-lab/kernel/{path}", f"/proc/sys/{path}"])
    machine.systemctl("start", "containerd.service")
    destination = machine.root / IMAGES_IN_NODE.lstrip("/")
    destination.mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copy(image, destination / image.name)
        machine.exec(
            ["ctr", "--namespace", "k8s.io", "images", "import", f"{IMAGES_IN_NODE}/{image.name}"], timeout=300
        )
    machine.systemctl("enable", "--now", "kubelet.service")


def daemonset_overlay(directory: Path, namespace: str) -> Path:
    """A kustomization of the lab's overlay (deploy/ plus lab/tandem_lab/daemonset) whose agent
    serves `namespace` only."""
    directory.mkdir(parents=True, exist_ok=True)
    patch = [
        {
            "op": "add",
            "path": "/spec/template/spec/containers/0/env/-",
            "value": {"name": "TANDEM_NAMESPACE", "value": namespace},
        }
    ]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(OVERLAY, directory)],
        "patches": [{"target": {"kind": "DaemonSet", "name": "tandem-agent"}, "patch": json.dumps(patch)}],
    }
    (directory / "kustomization.yaml").write_text(json.dumps(kustomization, indent=2))
    return directory


def service_forwarder(netns: str, server_host: str, api_port: int, log: Path) -> ManagedProcess:
    """kube-proxy's part for the one Service a pod here uses: the `kubernetes` Service's
    ClusterIP:443, in the node's network namespace, forwarded to the API server."""
    subprocess.run(
        ["ip", "-n", netns, "addr", "replace", f"{KUBERNETES_SERVICE_IP}/32", "dev", "lo"],
        check=True,
        capture_output=True,
    )
    return spawn(
        "service-forwarder",
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "tandem_lab.forward",
            "--listen",
            KUBERNETES_SERVICE_IP,
            "--port",
            "443",
            "--target",
            server_host,
            "--target-port",
            str(api_port),
        ],
        log,
    )


def controllers(plane: ControlPlane, binaries: Path, work_dir: Path) -> list[ManagedProcess]:
    """kube-controller-manager with the controllers a DaemonSet's pods need, and the
    scheduler that binds them, both as the lab's administrator on loopback."""
    kubeconfig = str(plane.kubeconfig)
    common = [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--v=1",
    ]
    manager = spawn(
        "kube-controller-manager",
        [
            str(binaries / "kube-controller-manager"),
            *common,
            f"--secure-port={free_port()}",
            "--controllers=daemonset,root-ca-cert-publisher",
            f"--root-ca-file={plane.pki / 'ca.crt'}",
        ],
        work_dir / "kube-controller-manager.log",
    )
    scheduler = spawn(
        "kube-scheduler",
        [str(binaries / "kube-scheduler"), *common, f"--secure-port={free_port()}"],
        work_dir / "kube-scheduler.log",
    )
    return [manager, scheduler]


def remove_pod_cgroups() -> None:
    """Delete the kubelet's cgroups (`kubepods*`) from the host's hierarchies, deepest first,
    once the kubelet node is off and they are empty. The node sees a v1 hierarchy from the
    cgroup its launcher ran in (this process's), so they sit below that cgroup."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            own[controller] = path.lstrip("/")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields, post_fields = pre.split(), post.split()
        if len(post_fields) < 3 or post_fields[0] != "cgroup":
            continue
        hierarchy = Path(fields[4])
        paths = {own[c] for c in post_fields[2].split(",") if c in own} | {""}
        for path in paths:
            for top in (hierarchy / path).glob("kubepods*"):
                remove_cgroup_tree(top)


def wait_registered(machine: Machine, kubectl: list[str], timeout: float = 120.0) -> None:
    """Wait until the kubelet has registered its Node and reports its status. The Node stays
    NotReady: the lab installs no pod network (CNI), which the DaemonSet's pod, on the host's
    network, does not need."""
    deadline = time.monotonic() + timeout
    reported = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(
            [*kubectl, "get", "node", machine.spec.name, "-o", "jsonpath={.status.nodeInfo.kubeletVersion}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        reported = proc.stdout.strip() or proc.stderr.strip()
        if reported.startswith("v"):
            return
        time.sleep(1)
    journal = machine.exec(["journalctl", "-u", "kubelet", "-n", "40", "--no-pager"], check=False).stdout
    raise MachineError(
        f"{machine.spec.name}: the kubelet did not report its Node within {timeout:.0f}s ({reported}):\n{journal}"
    )


# --- the pause image -----------------------------------------------------------------------
def tandem_image() -> Path:
    """The lab's image as `make lab-image` builds it (an OCI archive in dist/): tandem's image
    plus tandem-lab, whose agent plugin the lab's DaemonSet flags need; made with the Python
    running this."""
    proc = subprocess.run(
        ["make", "--no-print-directory", "lab-image", f"VENV={sys.prefix}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    if proc.returncode != 0:
        raise MachineError(f"make lab-image failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    archives = sorted((REPO / "dist").glob("tandem-lab-*.oci.tar"), key=lambda p: p.stat().st_mtime)
    return archives[-1]


def pause_image() -> Path:
    """An OCI archive of the pause image (lab/tandem_lab/pause, a static Go program), built once
    per source."""
    source = (PAUSE_SOURCE / "main.go").read_bytes() + (PAUSE_SOURCE / "go.mod").read_bytes()
    out = CACHE / "pause" / hashlib.sha256(source).hexdigest()[:16]
    archive = out / "pause.oci.tar"
    if archive.exists():
        return archive
    out.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    proc = subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "pause"), "."],
        cwd=PAUSE_SOURCE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if proc.returncode != 0:
        raise MachineError(f"building the pause program: {proc.stderr.strip()}")
    partial = archive.with_suffix(".partial")
    write_oci_archive(partial, PAUSE_IMAGE, "/pause", (out / "pause").read_bytes())
    partial.rename(archive)
    return archive


def write_oci_archive(path: Path, reference: str, entrypoint: str, program: bytes) -> None:
    """A one-layer OCI image archive whose only file is `entrypoint` (image-spec 1.0)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(entrypoint.lstrip("/"))
        info.size, info.mode = len(program), 0o755
        tar.addfile(info, io.BytesIO(program))
    layer_bytes = layer.getvalue()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Entrypoint": [entrypoint]},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer_bytes)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar", layer_bytes)],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **_descriptor("application/vnd.oci.image.manifest.v1+json", manifest),
                "annotations": {
                    "io.containerd.image.name": reference,
                    "org.opencontainers.image.ref.name": reference.rsplit(":", 1)[1],
                },
            }
        ],
    }
    with tarfile.open(path, mode="w") as tar:
        for name, data in [
            ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
            ("index.json", json.dumps(index).encode()),
            *[(f"blobs/sha256/{_digest(b).split(':')[1]}", b) for b in (layer_bytes, config, manifest)],
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}
