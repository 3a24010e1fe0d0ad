"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager.

Built from their Go modules (tools/kubernetes, tools/etcd). What runs:
- etcd 3.6 (one member, no fsync: a test cluster);
- kube-apiserver with RBAC, client-certificate auth, service-account tokens signed by a key made
  for the run (TokenRequest and TokenReview work), and its default admission plugins, so Pod
  Security admission enforces each namespace's labels;
- kube-controller-manager (garbage collector, namespace deletion, Deployments → ReplicaSets →
  Pods, service accounts and the kube-root-ca.crt ConfigMap).
What does not run: no scheduler and no kubelet, so Pods are created but never scheduled or
started. Tests assert what controllers and clients do to the API server, never a running Pod.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import requests
import yaml

from .pki import CA, Issued, service_account_keys
from .procs import Proc, free_port, wait_for

ISSUER = "https://kubernetes.default.svc.cluster.local"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    *,
    cert: Issued | None = None,
    token: str | None = None,
    namespace: str = "default",
) -> Path:
    user: dict[str, Any] = {}
    if cert is not None:
        user = {"client-certificate-data": _b64(cert.cert), "client-key-data": _b64(cert.key)}
    if token is not None:
        user = {"token": token}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "e2e",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}],
        "users": [{"name": "e2e", "user": user}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e", "namespace": namespace}}],
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


@dataclass
class Cluster:
    workdir: Path
    bins: dict[str, Path]
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = self.workdir / "pki"
        self.logs = self.workdir / "logs"
        self.ca = CA(self.pki)
        self.serving = self.ca.issue(
            "apiserver",
            "kube-apiserver",
            server=True,
            dns=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ips=("127.0.0.1",),
        )
        self.admin_cert = self.ca.issue("admin", "e2e-admin", organizations=("system:masters",), client=True)
        self.kcm_cert = self.ca.issue("kcm", "system:kube-controller-manager", client=True)
        self.sa_key, self.sa_pub = service_account_keys(self.pki)
        self.kubeconfig = write_kubeconfig(
            self.workdir / "admin.kubeconfig", self.server, self.ca.cert_path, cert=self.admin_cert
        )
        self.kcm_kubeconfig = write_kubeconfig(
            self.workdir / "kcm.kubeconfig", self.server, self.ca.cert_path, cert=self.kcm_cert
        )
        self.etcd: Proc | None = None
        self.apiserver: Proc | None = None
        self.kcm: Proc | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> "Cluster":
        self.start_etcd()
        self.start_apiserver()
        self.start_controller_manager()
        return self

    def start_etcd(self) -> None:
        client, peer = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{self.etcd_peer_port}"
        self.etcd = Proc(
            "etcd",
            [
                self.bins["etcd"],
                "--name=e2e",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=e2e={peer}",
                "--listen-metrics-urls=",
                "--log-level=warn",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=4294967296",
            ],
            self.logs / "etcd.log",
        ).start()
        wait_for(
            "etcd health",
            lambda: requests.get(f"{client}/health", timeout=2).json().get("health") == "true",
            60,
            self.etcd,
        )

    def start_apiserver(self) -> None:
        self.apiserver = Proc(
            "kube-apiserver",
            [
                self.bins["kube-apiserver"],
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--tls-cert-file={self.serving.cert}",
                f"--tls-private-key-file={self.serving.key}",
                f"--client-ca-file={self.ca.cert_path}",
                f"--service-account-issuer={ISSUER}",
                f"--api-audiences={ISSUER}",
                f"--service-account-key-file={self.sa_pub}",
                f"--service-account-signing-key-file={self.sa_key}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                "--profiling=false",
                "--v=1",
                "--endpoint-reconciler-type=none",
            ],
            self.logs / "kube-apiserver.log",
        ).start()
        wait_for("kube-apiserver /readyz", lambda: self.raw("GET", "/readyz").status_code == 200, 120, self.apiserver)
        wait_for(
            "RBAC bootstrap roles",
            lambda: (
                self.raw("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:auth-delegator").status_code
                == 200
            ),
            60,
            self.apiserver,
        )

    def start_controller_manager(self) -> None:
        self.kcm = Proc(
            "kube-controller-manager",
            [
                self.bins["kube-controller-manager"],
                f"--kubeconfig={self.kcm_kubeconfig}",
                f"--authentication-kubeconfig={self.kcm_kubeconfig}",
                f"--authorization-kubeconfig={self.kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                f"--service-account-private-key-file={self.sa_key}",
                f"--root-ca-file={self.ca.cert_path}",
                "--use-service-account-credentials=true",
                "--controllers=*,-nodeipam,-nodelifecycle,-route,-service,-cloud-node-lifecycle",
                "--concurrent-gc-syncs=5",
                "--v=1",
            ],
            self.logs / "kube-controller-manager.log",
        ).start()
        wait_for(
            "the default service account (kube-controller-manager)",
            lambda: self.raw("GET", "/api/v1/namespaces/default/serviceaccounts/default").status_code == 200,
            90,
            self.kcm,
        )

    def stop(self) -> None:
        for p in (self.kcm, self.apiserver, self.etcd):
            if p is not None:
                p.stop()

    def restart_apiserver(self) -> None:
        assert self.apiserver is not None
        self.apiserver.stop()
        self.start_apiserver()

    # ---- clients ---------------------------------------------------------------------------
    def raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: dict | None = None,
        timeout: float = 30,
    ) -> requests.Response:
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        return requests.request(
            method,
            self.server + path,
            data=data,
            params=params,
            timeout=timeout,
            headers={"Content-Type": content_type},
            cert=(str(self.admin_cert.cert), str(self.admin_cert.key)),
            verify=str(self.ca.cert_path),
        )

    def get(self, path: str) -> dict | None:
        r = self.raw("GET", path)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        cmd = [str(self.bins["kubectl"]), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def apply(
        self,
        docs: Iterable[dict] | str,
        *,
        field_manager: str = "e2e",
        kubeconfig: Path | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        text = docs if isinstance(docs, str) else yaml.safe_dump_all(list(docs))
        return self.kubectl(
            "apply",
            "--server-side",
            f"--field-manager={field_manager}",
            "--force-conflicts",
            "-f",
            "-",
            input=text,
            kubeconfig=kubeconfig,
            check=check,
        )

    def token(
        self, service_account: str, namespace: str, *, audiences: tuple[str, ...] = (), seconds: int = 3600
    ) -> str:
        spec: dict[str, Any] = {"expirationSeconds": seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        r = self.raw(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        r.raise_for_status()
        return r.json()["status"]["token"]

    def kubeconfig_for(self, service_account: str, namespace: str, path: Path) -> Path:
        """A kubeconfig that authenticates as a service account (a TokenRequest token)."""
        return write_kubeconfig(
            path, self.server, self.ca.cert_path, token=self.token(service_account, namespace), namespace=namespace
        )

    def ensure_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}])

    def ensure_service_account(self, name: str, namespace: str) -> None:
        self.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}])

    def install_crds(self, files: Iterable[Path]) -> list[str]:
        """Apply CustomResourceDefinitions and wait until each is Established."""
        names: list[str] = []
        docs: list[dict] = []
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    docs.append(doc)
                    names.append(doc["metadata"]["name"])
        self.apply(docs, field_manager="e2e-crds")
        for name in names:
            wait_for(
                f"CRD {name} Established",
                lambda n=name: any(
                    c["type"] == "Established" and c["status"] == "True"
                    for c in (self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}") or {})
                    .get("status", {})
                    .get("conditions", [])
                ),
                60,
                self.apiserver,
            )
        return names

    def wait(self, what: str, check, timeout: float = 60) -> None:
        wait_for(what, check, timeout)

    def can_i(
        self, verb: str, resource: str, namespace: str, *, user: str, name: str | None = None, group: str = ""
    ) -> bool:
        """Ask the real authorizer (a SubjectAccessReview) whether ``user`` may do this."""
        attrs: dict[str, Any] = {"verb": verb, "resource": resource, "namespace": namespace, "group": group}
        if name:
            attrs["name"] = name
        r = self.raw(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user,
                    "groups": ["system:serviceaccounts", "system:authenticated"],
                    "resourceAttributes": attrs,
                },
            },
        )
        r.raise_for_status()
        return bool(r.json()["status"].get("allowed"))


def sa_user(name: str, namespace: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def now_ms() -> float:
    return time.monotonic() * 1000
