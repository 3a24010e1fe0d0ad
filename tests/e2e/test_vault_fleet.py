"""Issue 21 §2 (and the Vault side of §5): one Vault serving two clusters of one environment.

Real: a Vault server (tools/vault, dev mode, TLS), two control planes (etcd + kube-apiserver +
kube-controller-manager each, their own service-account signing keys), the real ``ksecrets vault
bootstrap`` of each cluster's stack (two stacks extending environments/production.yaml), Vault's
kubernetes auth logins with TokenRequest tokens that each API server reviews for real
(TokenReview), and Vault's own audit log, which counts the writes of each run.

Simulated or adjusted, and why:
- Vault runs outside both clusters, so it has no pod token to review tokens with: as in
  test_vault_flow.py, each cluster gets the chart's ``authDelegator`` binding (``vault/vault`` →
  ``system:auth-delegator``) and bootstrap a TokenRequest token of that account
  (``--token-reviewer-jwt-file``, harness/vault_stack.bootstrap). Vault never returns that JWT, so
  every run writes its own mount's ``config`` again (README: Configure Vault); a re-run's writes
  are therefore exactly that one path, and nothing else. (Vault's other mode, reviewing a login
  with the login's own token, cannot serve: a token for audience ``vault`` is not one the API
  server accepts as a bearer token, so its TokenReview call is refused.);
- the ``file/`` audit device is enabled before bootstrap with a path in the run folder (the
  chart's /vault/audit does not exist here); bootstrap finds it and leaves it;
- no operator or workload runs: logins are made as the operator would make them (its VaultAuth's
  mount, role, service account and audience), with a TokenRequest token of that account.
"""

from __future__ import annotations

import json
from pathlib import Path

import hvac
import pytest

from tests.e2e.conftest import require
from tests.e2e.harness.kube import Cluster
from tests.e2e.harness import vault_stack
from tests.e2e.harness.vault import DevVault
from tests.vault.test_fleet_bootstrap import STACKS, write_fleet

CLUSTERS = ("prod-a", "prod-b")
ACCOUNTS = (("my-app", "my-app"), ("my-app-rotator", "my-app"), ("billing", "billing"))
VALUES = {"my-app": "shared-path-value", "billing": "billing-a-value", "billing-eu-b": "billing-b-value"}
WRITES = ("create", "update", "delete")


def _prepare(cluster: Cluster) -> None:
    for ns in ("my-app", "billing"):
        cluster.ensure_namespace(ns)
    for sa, ns in ACCOUNTS:
        cluster.ensure_service_account(sa, ns)


def _audit_writes(log: Path) -> list[str]:
    """The paths of every write request in Vault's audit log so far (logins excluded)."""
    out = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        req = entry.get("request") or {}
        if entry.get("type") == "request" and req.get("operation") in WRITES and not req["path"].endswith("/login"):
            out.append(req["path"])
    return out


@pytest.fixture(scope="module")
def fleet(cluster_factory, e2e_dir: Path):
    bins = require("vault")
    work = e2e_dir / "vault-fleet"
    vault = DevVault(work / "vault", bins["vault"], tls=True).start()
    try:
        clusters = {name: cluster_factory(f"vault-{name}") for name in CLUSTERS}
        for c in clusters.values():
            _prepare(c)
        root = work / "repo"
        root.mkdir(parents=True)
        write_fleet(root, STACKS)
        audit = work / "audit.log"
        vault.client().sys.enable_audit_device("file", path="file", options={"file_path": str(audit)})
        yield vault, clusters, root, audit
    finally:
        vault.stop()


def _bootstrap(vault: DevVault, cluster: Cluster, root: Path, stack: str) -> str:
    """README's order for one cluster: the reviewer's binding and token, then the real
    `ksecrets vault bootstrap --stack S --kube-host <its API server> ...`."""
    return vault_stack.bootstrap(cluster, vault, root, stack, root.parent / f"bootstrap-{stack}")


def _login(vault: DevVault, cluster: Cluster, mount: str, role: str, sa: str, ns: str) -> hvac.Client:
    client = vault.client(token=None)
    jwt = cluster.token(sa, ns, audiences=("vault",))
    client.auth.kubernetes.login(role=role, jwt=jwt, mount_point=mount)
    return client


def _read(client: hvac.Client, path: str) -> str:
    data = client.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
    return data["data"]["data"]["API_KEY"]


def test_two_clusters_one_vault_bootstrap_is_idempotent_and_logins_stay_in_their_cluster(fleet):
    vault, clusters, root, audit = fleet
    a, b = clusters["prod-a"], clusters["prod-b"]

    # A, then B: B writes only its own mount, roles and its own billing policy.
    first = _bootstrap(vault, a, root, "prod-a")
    assert "changed: auth method kubernetes-prod-a/ (kubernetes)" in first
    n = len(_audit_writes(audit))
    second = _bootstrap(vault, b, root, "prod-b")
    b_writes = _audit_writes(audit)[n:]
    print(f"\nbootstrap prod-a: {n} writes; prod-b after it: {len(b_writes)} writes")
    assert b_writes and not [p for p in b_writes if "kubernetes-prod-a" in p], b_writes
    assert "changed: secrets engine" not in second and "changed: audit device" not in second  # shared, found
    root_client = vault.client()
    auth = root_client.sys.list_auth_methods()["data"]
    for stack in CLUSTERS:
        assert auth[f"kubernetes-{stack}/"]["type"] == "kubernetes"
        assert auth[f"kubernetes-{stack}/"]["description"] == f"ksecrets: cluster {stack}"
    assert "kubernetes/" not in auth

    # A, B, A, B again: nothing written, by Vault's own audit log.
    for stack in ("prod-a", "prod-b", "prod-a", "prod-b"):
        before = len(_audit_writes(audit))
        out = _bootstrap(vault, clusters[stack], root, stack)
        # the write-only reviewer JWT of its own mount, re-sent; nothing else
        assert _audit_writes(audit)[before:] == [f"auth/kubernetes-{stack}/config"], _audit_writes(audit)[before:]
        changed = [line for line in out.splitlines() if line.startswith("changed: ")]
        assert changed == [
            f"changed: auth kubernetes-{stack}/config (host {clusters[stack].server}, "
            "token reviewer JWT: write-only, written on every run)"
        ], out

    # Roles per cluster; policies shared where the path is the same, separate where it differs.
    def policies(stack: str, role: str) -> list[str]:
        return root_client.read(f"auth/kubernetes-{stack}/role/{role}")["data"]["token_policies"]

    assert policies("prod-a", "my-app") == policies("prod-b", "my-app")
    assert policies("prod-a", "billing") != policies("prod-b", "billing")
    for stack, path in (("prod-a", "billing"), ("prod-b", "billing-eu-b")):
        (name,) = policies(stack, "billing")
        text = root_client.sys.read_acl_policy(name)["data"]["policy"]
        assert f'path "secret/data/{path}"' in text and text.count("path ") == 1

    for path, value in VALUES.items():
        root_client.secrets.kv.v2.create_or_update_secret(path=path, secret={"API_KEY": value}, mount_point="secret")

    # Each cluster's accounts log in at their own mount and read their own paths.
    for stack, billing_path in (("prod-a", "billing"), ("prod-b", "billing-eu-b")):
        c = clusters[stack]
        app = _login(vault, c, f"kubernetes-{stack}", "my-app", "my-app", "my-app")
        assert _read(app, "my-app") == VALUES["my-app"]
        billing = _login(vault, c, f"kubernetes-{stack}", "billing", "billing", "billing")
        assert _read(billing, billing_path) == VALUES[billing_path]
        other = "billing-eu-b" if stack == "prod-a" else "billing"
        with pytest.raises(hvac.exceptions.Forbidden):  # the other cluster's differing path
            _read(billing, other)
        with pytest.raises(hvac.exceptions.Forbidden):  # another app's path
            _read(billing, "my-app")

    # A token of one cluster at the other cluster's mount: that API server's TokenReview refuses it.
    refused = 0
    for mine, theirs in (("prod-a", "prod-b"), ("prod-b", "prod-a")):
        for role, sa, ns in (("my-app", "my-app", "my-app"), ("billing", "billing", "billing")):
            with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)) as err:
                _login(vault, clusters[mine], f"kubernetes-{theirs}", role, sa, ns)
            assert "permission denied" in str(err.value) or "invalid" in str(err.value).lower(), err.value
            refused += 1
    print(f"cross-cluster logins refused: {refused} of 4")
