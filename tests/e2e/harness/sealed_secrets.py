"""The real sealed-secrets controller (v0.36.6, built from its Go module) as a local process.

The controller has no ``--kubeconfig``: it only reads in-cluster config (``rest.InClusterConfig``:
``KUBERNETES_SERVICE_HOST``/``_PORT`` and ``/var/run/secrets/kubernetes.io/serviceaccount/``).
So it runs in a private mount namespace (``unshare --mount``; the suite runs as root) where
``/run`` (``/var/run`` links to it) is bind-mounted over a folder of this run holding
``secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}``: a TokenRequest token of its own
service account, the API server's CA and ``kube-system``. Nothing on the host changes; the mount
dies with the process. ``sh -c 'mount ... && exec controller'`` keeps the controller's PID the one
the harness started, so it is stopped (and sent SIGUSR1, its "renew the key now" signal) by PID.

Its RBAC is upstream's ``controller.jsonnet`` (tests/e2e/fixtures/sealed-secrets-controller-rbac.yaml),
its flags those the chart (2.18.x templates/deployment.yaml) passes for the stack's HelmRelease
values, with the two listen addresses moved to 127.0.0.1. Its sealing key is a Secret from
``ksecrets keygen --print-secret`` (or ``ksecrets restore``) applied before it starts.

What no process here can be: the Service and its endpoints (no kubelet runs the Pod), so the API
server's service proxy (``kubeseal --fetch-cert``'s path) cannot reach the controller; tests read
``/v1/cert.pem`` and ``/metrics`` from its 127.0.0.1 ports instead.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import requests
import yaml

from . import ROOT
from .kube import Cluster
from .procs import Proc, free_port, wait_for

RBAC = ROOT / "tests" / "e2e" / "fixtures" / "sealed-secrets-controller-rbac.yaml"
KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
SERVICE_ACCOUNT = "sealed-secrets-controller"
SS_API = "/apis/bitnami.com/v1alpha1"

# Mount /run over our folder, then become the controller (same PID).
_ENTER = 'mount --bind "$0" /run && exec "$@"'


def chart_flags(values: Mapping[str, Any] | None = None) -> list[str]:
    """The controller flags the chart's deployment template renders for these HelmRelease values
    (the ones our builders set; chart defaults otherwise: updateStatus true, secretName
    sealed-secrets-key)."""
    values = values or {}
    flags = ["--update-status"]
    period = values.get("keyrenewperiod", "")
    if str(period) != "":
        flags += ["--key-renew-period", str(period)]
    flags += ["--key-prefix", values.get("secretName", "sealed-secrets-key"), "--log-info-stdout"]
    return flags


@dataclass
class SealedSecretsController:
    cluster: Cluster
    workdir: Path
    binary: Path
    namespace: str = "kube-system"
    flags: list[str] = field(default_factory=chart_flags)
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    proc: Proc | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.run_dir = self.workdir / "run"
        self.sa_dir = self.run_dir / "secrets" / "kubernetes.io" / "serviceaccount"

    # ---- setup --------------------------------------------------------------------------------
    def install_rbac(self) -> None:
        self.cluster.apply(RBAC.read_text(), field_manager="e2e-sealed-secrets")

    def install_keys(self, manifests: str) -> None:
        """Apply key Secrets (``ksecrets keygen --print-secret`` / ``ksecrets restore`` output)."""
        res = self.cluster.kubectl("apply", "-f", "-", input=manifests)
        assert "secret/" in res.stdout, res.stdout

    def _write_service_account(self) -> None:
        self.sa_dir.mkdir(parents=True, exist_ok=True)
        token = self.cluster.token(SERVICE_ACCOUNT, self.namespace, seconds=6 * 3600)
        for name, data in (
            ("token", token.encode()),
            ("ca.crt", self.cluster.ca.cert_path.read_bytes()),
            ("namespace", self.namespace.encode()),
        ):
            path = self.sa_dir / name
            path.write_bytes(data)
            path.chmod(0o600)

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> "SealedSecretsController":
        self._write_service_account()
        env = dict(
            os.environ,
            KUBERNETES_SERVICE_HOST="127.0.0.1",
            KUBERNETES_SERVICE_PORT=str(self.cluster.port),
            POD_NAMESPACE=self.namespace,
        )
        argv = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            _ENTER,
            str(self.run_dir),
            str(self.binary),
            *self.flags,
            f"--listen-addr=127.0.0.1:{self.port}",
            f"--listen-metrics-addr=127.0.0.1:{self.metrics_port}",
        ]
        self.proc = Proc("sealed-secrets-controller", argv, self.workdir / "controller.log", env=env).start()
        self.starts += 1
        wait_for("sealed-secrets controller /v1/cert.pem", lambda: self.cert_pem() is not None, timeout, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def kill(self) -> None:
        """SIGKILL by PID: a crash, no shutdown."""
        assert self.proc is not None
        self.proc.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def renew_key(self, timeout: float = 120) -> dict:
        """Make the controller renew its sealing key now (SIGUSR1: the trigger of its renewal job,
        the code path of ``--key-renew-period``); returns the new key Secret once the controller
        serves its certificate."""
        before = {s["metadata"]["name"] for s in self.key_secrets()}
        old_cert = self.cert_pem()
        os.kill(self.pid, signal.SIGUSR1)
        found: list[dict] = []

        def renewed() -> bool:
            found[:] = [s for s in self.key_secrets() if s["metadata"]["name"] not in before]
            return bool(found) and self.cert_pem() not in (None, old_cert)

        wait_for("a renewed sealing key", renewed, timeout, self.proc)
        assert len(found) == 1, [s["metadata"]["name"] for s in found]
        return found[0]

    # ---- what it serves -----------------------------------------------------------------------
    def cert_pem(self) -> bytes | None:
        try:
            r = requests.get(f"{self.url}/v1/cert.pem", timeout=5)
        except requests.ConnectionError:
            return None
        return r.content if r.status_code == 200 else None

    def metrics(self) -> str:
        r = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5)
        r.raise_for_status()
        return r.text

    def metric(self, metric: str, /, **labels: str) -> float | None:
        """The value of one series (all given labels must match), None if absent."""
        total = None
        for line in self.metrics().splitlines():
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)", line)
            if not m or m.group(1) != metric:
                continue
            have = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total = (total or 0.0) + float(m.group(4))
        return total

    def key_secrets(self) -> list[dict]:
        got = self.cluster.get(f"/api/v1/namespaces/{self.namespace}/secrets?labelSelector={KEY_LABEL}")
        return sorted(got["items"], key=lambda s: s["metadata"]["creationTimestamp"])


# ---- the server's state -----------------------------------------------------------------------
def secret_data(cluster: Cluster, namespace: str, name: str) -> dict[str, str] | None:
    s = cluster.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    return None if s is None else (s.get("data") or {})


def sealed_secret(cluster: Cluster, namespace: str, name: str) -> dict | None:
    return cluster.get(f"{SS_API}/namespaces/{namespace}/sealedsecrets/{name}")


def synced(cluster: Cluster, namespace: str, name: str) -> dict | None:
    """The SealedSecret's Synced condition as the controller wrote it (None before it has)."""
    ss = sealed_secret(cluster, namespace, name) or {}
    for c in (ss.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Synced":
            return c
    return None


def wait_secret(
    cluster: Cluster, namespace: str, name: str, data: Mapping[str, str], timeout: float = 60, proc: Proc | None = None
) -> float:
    """Wait until the Secret's data equals ``data``; returns the seconds it took."""
    started = time.monotonic()
    try:
        wait_for(
            f"Secret {namespace}/{name} with the expected data ({len(data)} keys)",
            lambda: secret_data(cluster, namespace, name) == dict(data),
            timeout,
            proc,
        )
    except TimeoutError as exc:
        live = secret_data(cluster, namespace, name)
        if live is None:
            raise AssertionError(
                f"{exc}\nSecret {namespace}/{name} does not exist; SealedSecret Synced: "
                f"{synced(cluster, namespace, name)}"
            ) from None
        wrong = sorted(k for k in set(live) | set(data) if live.get(k) != data.get(k))
        raise AssertionError(f"{exc}\nkeys that differ (values not shown): {wrong}") from None
    return time.monotonic() - started


def kubectl_secret_data(cluster: Cluster, name: str, namespace: str, env_file: Path) -> dict[str, str]:
    """What the real ``kubectl create secret generic --from-env-file`` puts in ``data``."""
    out = cluster.kubectl(
        "create",
        "secret",
        "generic",
        name,
        "-n",
        namespace,
        f"--from-env-file={env_file}",
        "--dry-run=client",
        "-o",
        "json",
    )
    return json.loads(out.stdout).get("data") or {}


def b64(value: str | bytes) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def load_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def ksecrets_run(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    expect_ok: bool = True,
    errors: list[str] | None = None,
) -> subprocess.CompletedProcess:
    """Run the real ``ksecrets`` CLI. A failure must be exactly one line ``ksecrets: ...`` on
    stderr (the project's rule); ``errors`` collects those lines for the caller to report."""
    cmd = [sys.executable, "-m", "ksecrets"]
    res = subprocess.run(
        [*cmd, *args],
        cwd=cwd,
        env=dict(os.environ, **(env or {})),
        input=input,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if res.returncode != 0:
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("ksecrets: "), (
            f"ksecrets {' '.join(args)} failed ({res.returncode}) with not exactly one error line: {res.stderr!r}"
        )
        if errors is not None:
            errors.append(lines[0])
    if expect_ok:
        assert res.returncode == 0, f"ksecrets {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}"
    return res


# ---- a copy of the repository with a stack sealed for this run's key ---------------------------
@dataclass
class StackRepo:
    """The files ``ksecrets seal --stack`` / ``export`` / ``reseal`` work on, copied out of the
    repository into a folder of the run: ``Pulumi.yaml``, ``Pulumi.<stack>.yaml`` (the committed
    stack, unchanged) and ``certs/`` with the stack's certificate replaced by this run's key's."""

    root: Path
    stack: str
    env: dict[str, str]
    errors: list[str] = field(default_factory=list)

    @classmethod
    def copy(cls, src: Path, dest: Path, stack: str, env: Mapping[str, str]) -> "StackRepo":
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("Pulumi.yaml", f"Pulumi.{stack}.yaml"):
            shutil.copy2(src / name, dest / name)
        shutil.copytree(src / "certs", dest / "certs", dirs_exist_ok=True)
        return cls(dest, stack, dict(env))

    @property
    def k8s_dir(self) -> Path:
        return self.root / "k8s" / self.stack

    @property
    def cert_path(self) -> Path:
        return self.root / "certs" / f"{self.stack}.pem"

    def ksecrets(self, *args: str, input: str | None = None, expect_ok: bool = True) -> subprocess.CompletedProcess:
        return ksecrets_run(*args, cwd=self.root, env=self.env, input=input, expect_ok=expect_ok, errors=self.errors)

    def seal(
        self,
        name: str,
        env_file: Path,
        *,
        namespace: str | None = None,
        scope: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess:
        args = ["seal", "--stack", self.stack, "--name", name, f"--from-env-file={env_file}", *extra]
        if namespace:
            args += ["--namespace", namespace]
        if scope:
            args += ["--scope", scope]
        return self.ksecrets(*args)

    def export(self) -> Path:
        self.ksecrets("export", "--stack", self.stack)
        return self.k8s_dir

    def sealed_secret(self, name: str) -> dict:
        """The SealedSecret the exporter wrote for Secret ``name``."""
        for f in (self.k8s_dir / "apps").glob("sealedsecret-*.yaml"):
            doc = yaml.safe_load(f.read_text())
            if doc["metadata"]["name"] == name:
                return doc
        raise AssertionError(f"{self.k8s_dir}/apps: no SealedSecret {name}")


def sealed_stacks() -> list[str]:
    """The repository's stacks on the sealed-secrets backend."""
    from ksecrets.config.load import load_stack

    names = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
    return [n for n in names if load_stack(n, ROOT).backend == "sealed-secrets"]


def stack_flags(stack: str) -> list[str]:
    """The controller flags for the HelmRelease values the stack exports."""
    from ksecrets.config.load import load_stack
    from ksecrets.manifests.sealed_secrets import controller_values

    return chart_flags(controller_values(load_stack(stack, ROOT)))


def keygen(repo: StackRepo, backup: Path) -> str:
    """``ksecrets keygen --stack S --force --print-secret``: the stack's certificate in the copy,
    the private key in an encrypted backup; returns the printed key Secret (YAML)."""
    res = repo.ksecrets("keygen", "--stack", repo.stack, "--backup-file", str(backup), "--force", "--print-secret")
    return res.stdout
