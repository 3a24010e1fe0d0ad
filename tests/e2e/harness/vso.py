"""The Vault Secrets Operator (github.com/hashicorp/vault-secrets-operator, tools/vault-secrets-operator)
as a local process against the test cluster.

What is real: the operator binary of the pinned version, its own CRDs (``chart/crds`` of exactly
that module), and its RBAC: the ServiceAccount ``vault-secrets-operator-controller-manager`` the
chart makes, bound to the chart's manager ClusterRole. The rules are read from the module's
``config/rbac/role.yaml``, which the chart's ``templates/role.yaml`` is generated from; the
harness checks both hold the same rules. The operator authenticates to the API server with a
TokenRequest token of that ServiceAccount, so every call it makes passes the real authorizer.

What differs from the chart's pod: it runs as a process with a kubeconfig (controller-runtime's
``--kubeconfig``), not in a pod; the namespace and pod UID the chart injects come from
OPERATOR_NAMESPACE / OPERATOR_POD_UID; metrics and health listen on 127.0.0.1 ports; leader
election is off (one replica, as the stack's values say); the client cache is not persisted
(the chart's default, ``persistenceModel: ""``). The retry back-off is shortened (initial 1 s,
max 5 s) so fault tests converge in seconds rather than the default minute.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from .kube import Cluster
from .procs import Proc, free_port, wait_for

NAMESPACE = "vault-secrets-operator-system"
SERVICE_ACCOUNT = "vault-secrets-operator-controller-manager"
CLUSTER_ROLE = "vault-secrets-operator-manager-role"


def crd_files(module: Path) -> list[Path]:
    return sorted((module / "chart" / "crds").glob("*.yaml"))


def manager_rules(module: Path) -> list[dict]:
    """The manager ClusterRole's rules; fails if the chart's copy says otherwise."""
    generated = yaml.safe_load((module / "config" / "rbac" / "role.yaml").read_text())["rules"]
    template = (module / "chart" / "templates" / "role.yaml").read_text()
    chart_rules = yaml.safe_load(template[template.index("\nrules:") + 1 :])["rules"]
    if chart_rules != generated:
        raise AssertionError("the chart's manager ClusterRole differs from config/rbac/role.yaml")
    return generated


def rbac_objects(module: Path) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": CLUSTER_ROLE},
            "rules": manager_rules(module),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "vault-secrets-operator-manager-rolebinding"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}],
        },
    ]


@dataclass
class Operator:
    cluster: Cluster
    binary: Path
    module: Path
    workdir: Path
    metrics_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    pod_uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    proc: Proc | None = None

    def install(self) -> None:
        """Its CRDs and RBAC (see the module docstring)."""
        self.cluster.install_crds(crd_files(self.module))
        self.cluster.apply(rbac_objects(self.module), field_manager="e2e-vso")

    def start(self) -> "Operator":
        self.workdir.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.workdir / "vso.kubeconfig"
        from .kube import write_kubeconfig

        write_kubeconfig(
            kubeconfig,
            self.cluster.server,
            self.cluster.ca.cert_path,
            token=self.cluster.token(SERVICE_ACCOUNT, NAMESPACE, seconds=86400),
            namespace=NAMESPACE,
        )
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.workdir),
            "OPERATOR_NAMESPACE": NAMESPACE,
            "OPERATOR_POD_NAME": "vault-secrets-operator-e2e",
            "OPERATOR_POD_UID": self.pod_uid,
        }
        self.proc = Proc(
            "vault-secrets-operator",
            [
                self.binary,
                f"--kubeconfig={kubeconfig}",
                f"--health-probe-bind-address=127.0.0.1:{self.health_port}",
                f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
                "--leader-elect=false",
                "--client-cache-persistence-model=none",
                "--backoff-initial-interval=1s",
                "--backoff-max-interval=5s",
                "--zap-log-level=debug",
            ],
            self.workdir / "vault-secrets-operator.log",
            env=env,
        ).start()
        wait_for(
            "the operator's /readyz",
            lambda: requests.get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2).status_code == 200,
            60,
            self.proc,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
