"""A real local control plane: etcd and kube-apiserver built from their Go modules.

`ControlPlane.start()` generates a CA, serving and client certificates and service-account
keys with openssl, starts etcd and kube-apiserver on loopback with RBAC and admission on as
in a real cluster, writes a kubeconfig and returns once `/readyz` answers ok. Everything it
starts is recorded in `state.json` in the lab directory, so `stop()` (from the same or another
process) ends exactly those processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from tandem_lab import fakeclock
from tandem_lab.processes import ManagedProcess, spawn, terminate

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-controlplane.sh"
SERVICE_CIDR = "198.19.240.0/24"
KUBERNETES_SERVICE_IP = "198.19.240.1"  # the `kubernetes` Service: the range's first address
API_SERVER_SANS = ("127.0.0.1", "198.18.0.1", KUBERNETES_SERVICE_IP)
# In production etcd and the API server run on machines of their own. On the lab's shared
# cores they get the CPU weight of about ten ordinary sessions, so that a burst on the lab's
# nodes (a node booting fifty clusters) does not starve them. Linux shares the CPU between
# sessions first (autogroup scheduling), so the session's weight is set, not only a nice value.
CONTROL_PLANE_NICE = -10


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or stopped."""


def build_binaries(node: bool = False) -> Path:
    """Build (or find cached) etcd, kube-apiserver and kubectl, with `node` also kubelet,
    kube-controller-manager and kube-scheduler; returns their directory."""
    argv = ["bash", str(BUILD_SCRIPT), *(["--node"] if node else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"{BUILD_SCRIPT} failed:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _openssl(*args: str) -> None:
    """openssl with its clock a day back (libfaketime), so every certificate is valid from a
    day ago: an agent whose wall clock the lab steps back (tandem_lab.fakeclock) must still
    accept the API server's certificate, as a real cluster's would be days old."""
    env = os.environ | {"LD_PRELOAD": fakeclock.library(), "FAKETIME": "-1d"}
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)}: {proc.stderr.strip()}")


@dataclass
class ControlPlaneState:
    binaries: str
    etcd_port: int
    api_port: int
    processes: list[ManagedProcess]

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"


class ControlPlane:
    """etcd + kube-apiserver in one lab directory."""

    def __init__(self, lab_dir: Path) -> None:
        self.lab_dir = lab_dir.resolve()
        self.pki = self.lab_dir / "pki"
        self.kubeconfig = self.lab_dir / "kubeconfig"
        self.state_file = self.lab_dir / "state.json"

    # --- state -------------------------------------------------------------
    def state(self) -> ControlPlaneState | None:
        if not self.state_file.exists():
            return None
        raw = json.loads(self.state_file.read_text())
        raw["processes"] = [ManagedProcess(**p) for p in raw["processes"]]
        return ControlPlaneState(**raw)

    def _save(self, state: ControlPlaneState) -> None:
        self.state_file.write_text(json.dumps(asdict(state), indent=2))

    def running(self) -> bool:
        state = self.state()
        return bool(state and state.processes and all(p.alive() for p in state.processes))

    # --- start -------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> ControlPlaneState:
        """Start etcd and kube-apiserver and wait for /readyz; a running lab is reused."""
        existing = self.state()
        if existing and self.running():
            return existing
        if existing:
            self.stop()
        binaries = build_binaries()
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        self._certificates()
        state = ControlPlaneState(str(binaries), free_port(), free_port(), [])
        try:
            state.processes.append(self._start_etcd(binaries, state))
            self._save(state)
            state.processes.append(self._start_apiserver(binaries, state))
            self._save(state)
            self._write_kubeconfig(state)
            self._wait_ready(state, timeout)
        except BaseException:
            self.stop()
            raise
        return state

    def stop_apiserver(self) -> None:
        """An API server outage: kill kube-apiserver at once (a graceful stop would keep
        answering for a while); etcd keeps the data."""
        state = self.state()
        if state is None:
            raise ControlPlaneError(f"no lab in {self.lab_dir}")
        for proc in [p for p in state.processes if p.name == "kube-apiserver"]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            terminate(proc, 5.0)  # reaps it
            state.processes.remove(proc)
        self._save(state)

    def start_apiserver(self, timeout: float = 120.0) -> None:
        """Bring kube-apiserver back on the same port after `stop_apiserver`; returns once it
        is ready (clients may reach it earlier)."""
        state = self.state()
        if state is None:
            raise ControlPlaneError(f"no lab in {self.lab_dir}")
        if any(p.name == "kube-apiserver" and p.alive() for p in state.processes):
            return
        state.processes.append(self._start_apiserver(Path(state.binaries), state))
        self._save(state)
        self._wait_ready(state, timeout)

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        return spawn(name, argv, self.lab_dir / f"{name}.log", cwd=self.lab_dir, before_exec=_favoured)

    def _start_etcd(self, binaries: Path, state: ControlPlaneState) -> ManagedProcess:
        peer = f"http://127.0.0.1:{free_port()}"
        client = f"http://127.0.0.1:{state.etcd_port}"
        return self._spawn(
            "etcd",
            [
                str(binaries / "etcd"),
                "--name=lab",
                f"--data-dir={self.lab_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=lab={peer}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

    def _start_apiserver(self, binaries: Path, state: ControlPlaneState) -> ManagedProcess:
        pki = self.pki
        return self._spawn(
            "kube-apiserver",
            [
                str(binaries / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{state.etcd_port}",
                "--bind-address=127.0.0.1",
                f"--secure-port={state.api_port}",
                "--advertise-address=198.18.0.1",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )

    def _wait_ready(self, state: ControlPlaneState, timeout: float) -> None:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            for proc in state.processes:
                if not proc.alive():
                    raise ControlPlaneError(f"{proc.name} exited while starting; see {self.lab_dir / proc.name}.log")
            try:
                url = f"{state.server}/readyz"
                with urllib.request.urlopen(url, context=context, timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise ControlPlaneError(f"/readyz not ok after {timeout:.0f}s ({last})")

    # --- certificates ------------------------------------------------------
    def _certificates(self) -> None:
        """CA, API server serving cert, admin client cert, service-account key pair (once)."""
        pki = self.pki
        pki.mkdir(parents=True, exist_ok=True)
        if (pki / "admin.crt").exists():
            return
        ca_key, ca_crt = pki / "ca.key", pki / "ca.crt"
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=tandem-lab-ca",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca_crt),
        )
        sans = ",".join(
            [f"IP:{ip}" for ip in API_SERVER_SANS]
            + [f"DNS:{d}" for d in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")]
        )
        self._signed("apiserver", "/CN=kube-apiserver", f"subjectAltName={sans}")
        self._signed("admin", "/O=system:masters/CN=tandem-admin", None)
        _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))

    def sign_client(self, name: str, subject: str) -> tuple[Path, Path]:
        """A client key and certificate signed by the lab's CA (e.g. a kubelet's
        `/O=system:nodes/CN=system:node:<name>`); returns (key, certificate)."""
        self._signed(name, subject, None)
        return self.pki / f"{name}.key", self.pki / f"{name}.crt"

    def _signed(self, name: str, subject: str, extension: str | None) -> None:
        pki = self.pki
        key, csr, crt = pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.crt"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", str(key), "-out", str(csr))
        args = [
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(pki / "ca.crt"),
            "-CAkey",
            str(pki / "ca.key"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-out",
            str(crt),
        ]
        if extension:
            ext_file = pki / f"{name}.ext"
            ext_file.write_text(extension + "\n")
            args += ["-extfile", str(ext_file)]
        _openssl(*args)

    def _write_kubeconfig(self, state: ControlPlaneState) -> None:
        self.write_kubeconfig(self.kubeconfig, state.server)

    def write_kubeconfig(self, path: Path, server: str) -> Path:
        """A kubeconfig for the admin user that reaches the API server at `server` (e.g. the
        management bridge address through the lab's forwarder), verifying the serving
        certificate by the name `kubernetes` whatever address is used."""
        cluster: dict[str, str] = {"server": server, "certificate-authority": str(self.pki / "ca.crt")}
        if not server.startswith("https://127.0.0.1:"):
            cluster["tls-server-name"] = "kubernetes"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "tandem-lab", "cluster": cluster}],
            "users": [
                {
                    "name": "tandem-admin",
                    "user": {
                        "client-certificate": str(self.pki / "admin.crt"),
                        "client-key": str(self.pki / "admin.key"),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "tandem-lab",
                    "context": {"cluster": "tandem-lab", "user": "tandem-admin", "namespace": "default"},
                }
            ],
            "current-context": "tandem-lab",
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    def kubectl(self) -> Path:
        """The kubectl built with the control plane (matches its version)."""
        state = self.state()
        if state is None:
            raise ControlPlaneError(f"no lab in {self.lab_dir}: run `tandem lab up` first")
        return Path(state.binaries) / "kubectl"

    # --- stop --------------------------------------------------------------
    def stop(self, timeout: float = 15.0) -> list[str]:
        """Stop every process this lab started (API server first); returns their names."""
        state = self.state()
        if state is None:
            return []
        stopped = []
        for proc in reversed(state.processes):
            if proc.alive():
                terminate(proc, timeout)
                stopped.append(proc.name)
        state.processes = []
        self._save(state)
        return stopped


def _favoured() -> None:
    """In the child, in its new session, before exec: CONTROL_PLANE_NICE for the session's
    autogroup and for the process, whose threads inherit it. Without autogroup scheduling
    (no /proc/self/autogroup) the nice value alone does it."""
    os.nice(CONTROL_PLANE_NICE)
    with contextlib.suppress(FileNotFoundError):
        Path("/proc/self/autogroup").write_text(str(CONTROL_PLANE_NICE))
