"""A stack on the Vault backend against a local Vault: what README's Vault section asks of an
operator before Flux can make the VaultStaticSecrets sync, done for the e2e cluster.

Shared by tests/e2e/test_flux_vault.py and test_flux_migrate.py (test_vault_flow.py does the
same steps inline):

- :func:`point_at`: the stack file's ``vault.address`` set to the local server (Vault runs outside
  the cluster, not at ``vault.vault.svc``) and, for a TLS server, ``vault.tls.enabled`` (already so
  in production; a stack `migrate --prepare` gave an empty ``vault:`` section has it false);
- :func:`ca_secret`: the ``vault-ca`` Secret README asks for beside the VaultConnection;
- :func:`bootstrap`: the chart's ``authDelegator`` binding (Vault runs outside the cluster, so
  it reviews tokens with a TokenRequest token of ServiceAccount ``vault/vault``), a file audit
  device in the run folder (the chart's /vault/audit does not exist here), then the real
  ``ksecrets vault bootstrap --stack S``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .kube import Cluster
from .sealed_secrets import ksecrets_run
from .vault import DevVault
from .vso import NAMESPACE as VSO_NAMESPACE


def point_at(root: Path, stack: str, vault: DevVault) -> None:
    """``k8s-secrets:vault.address`` of Pulumi.<stack>.yaml := the local Vault."""
    path = root / f"Pulumi.{stack}.yaml"
    doc = yaml.safe_load(path.read_text())
    section = doc["config"].get("k8s-secrets:vault") or {}
    section["address"] = vault.address
    if vault.tls:
        # production's own setting; a stack that `migrate --prepare` gave an empty vault section
        # would otherwise have a VaultConnection without the CA (tls.enabled defaults to false)
        section.setdefault("tls", {})["enabled"] = True
    doc["config"]["k8s-secrets:vault"] = section
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def ca_secret(cluster: Cluster, vault: DevVault) -> None:
    assert vault.ca is not None, "the stacks' VaultConnection verifies TLS: start Vault with tls=True"
    cluster.ensure_namespace(VSO_NAMESPACE)
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "vault-ca", "namespace": VSO_NAMESPACE},
                "stringData": {"ca.crt": vault.ca.read_text()},
            }
        ],
        field_manager="e2e-vault-ca",
    )


def bootstrap(cluster: Cluster, vault: DevVault, root: Path, stack: str, workdir: Path) -> str:
    """README's order: Vault up → `ksecrets vault bootstrap --stack S`. Returns its stdout."""
    workdir.mkdir(parents=True, exist_ok=True)
    cluster.ensure_namespace("vault")
    cluster.ensure_service_account("vault", "vault")
    cluster.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "vault-server-binding"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:auth-delegator",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "vault", "namespace": "vault"}],
            }
        ],
        field_manager="e2e-vault-chart",
    )
    jwt = workdir / "reviewer.jwt"
    jwt.write_text(cluster.token("vault", "vault", seconds=86400))
    jwt.chmod(0o600)
    audits = vault.client().sys.list_enabled_audit_devices()
    if "file/" not in (audits.get("data") or audits):
        vault.client().sys.enable_audit_device("file", path="file", options={"file_path": str(workdir / "audit.log")})
    res = ksecrets_run(
        "vault",
        "bootstrap",
        "--stack",
        stack,
        "--kube-host",
        cluster.server,
        "--kube-ca-file",
        str(cluster.ca.cert_path),
        "--token-reviewer-jwt-file",
        str(jwt),
        cwd=root,
        env=vault.env(),
    )
    return res.stdout


def vault_flux_cluster(cluster_factory, workdir: Path, name: str, bins: dict[str, Path]):
    """A Vault dev server (TLS), a cluster with the Flux and operator CRDs, the real source- and
    kustomize-controller installed, and the Vault Secrets Operator started, trusting Vault's CA.
    Returns (vault, cluster, flux, operator); the caller stops them."""
    from . import module_dir
    from .flux import FluxControllers, cluster_crds
    from .vso import Operator

    vault = DevVault(workdir / "vault", bins["vault"], tls=True).start()
    cluster = cluster_factory(name, crds=cluster_crds())
    flux = FluxControllers(cluster, workdir / "controllers", bins)
    flux.install()
    op = Operator(cluster, bins["vault-secrets-operator"], module_dir("vault-secrets-operator"), workdir / "vso")
    op.install()
    ca_secret(cluster, vault)
    op.start()
    return vault, cluster, flux, op
