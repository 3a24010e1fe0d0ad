"""Issue 21 §5, first bullet: a fleet of two clusters end to end, on both backends.

Two API servers, A and B, each with its own real sealed-secrets controller (its own key, made by
the controller itself at its first start) and its own real Vault Secrets Operator, and one real
Vault serving both. The workspace is a copy of the repository's ``staging`` stack plus what
`ksecrets` writes:

- sealed-secrets, environment ``staging``: ``staging`` (cluster A, the repository's stack) and
  ``stg-b`` (cluster B), made by ``ksecrets stack new stg-b --env staging``, which also writes
  environments/staging.yaml from Pulumi.staging.yaml (README: Fleets). Each stack's certificate is
  its own controller's; a ``seal --env staging`` whose env file lacks a key staging's committed
  entry holds (sealed for the repository's certificate) is refused with one line and changes
  neither file; then ONE ``ksecrets seal --env staging`` seals the env file into both stacks,
  ``ksecrets export --env staging`` writes each cluster's SealedSecret, and each controller
  unseals its own into a Secret byte-equal to what ``kubectl create secret --from-env-file``
  makes of the file, while the other cluster's copy is refused by the controller itself
  (``Synced=False``, its own message), no Secret made;
- Vault, environment ``production``: ``prod-a`` (A) and ``prod-b`` (B), made by ``ksecrets stack
  new ... --env production`` from an environment file written here with one app, ``billing``,
  whose Vault path differs per cluster (prod-b's own app list reads ``billing-eu-b``).
  ``ksecrets vault bootstrap`` of each makes its auth mount ``kubernetes-<stack>``; ``ksecrets
  vault push`` writes each cluster's values; the exported ``k8s/<stack>/`` is applied to its
  cluster, and each cluster's operator syncs its own VaultStaticSecret into Secret
  ``billing/billing-secrets``. Across clusters: the other cluster's service-account token is
  refused by the API server (401: its signing key is not this cluster's), the stack's RBAC gives
  the app's account ``get`` on its one Secret only (SubjectAccessReviews), and the other cluster's
  exported VaultStaticSecret, then its VaultAuth, applied to a cluster are refused by Vault when
  that cluster's operator acts on them (403 on the other path; the other mount's login refused
  by the other API server's TokenReview), by the operator's events and Vault's audit log.
  What test_vault_fleet.py proves (bootstrap's writes, direct logins) is not repeated.

Simulated or adjusted, and why:
- two API servers stand for two clusters, each holding one stack of each environment (``staging``
  and ``prod-a`` on A, ``stg-b`` and ``prod-b`` on B): a stack has one backend, and four control
  planes would double the run time and prove nothing more. The stacks' ``kubernetes:context``
  names no kubeconfig here: the test addresses each API server itself;
- environments/production.yaml is written here rather than made from Pulumi.production.yaml:
  production's app ``my-app`` would write Secret my-app/my-app-secrets beside staging's on the
  same API server, and it reads the same path on every cluster (one shared policy, so nothing
  for Vault to refuse across clusters);
- no kubelet: no Pod runs. The controllers run as local processes (harness/sealed_secrets.py,
  harness/vso.py), the environments' apps have no Deployment here, and no workload reads a Secret;
- ``kubeseal --fetch-cert > certs/<stack>.pem`` goes through the API server's service proxy to
  the controller's Pod, which does not exist: each certificate is read from the same handler,
  the controller's ``/v1/cert.pem``, on its 127.0.0.1 port;
- only the SealedSecret of each exported sealed stack is applied (server-side, kustomize-
  controller's field manager), not its whole ``k8s/<stack>/``; the Vault stacks are applied
  whole in Flux's order by harness/gitops.py (kustomize-controller simulated; helm-controller's
  part: each HelmRelease marked Ready, no chart installed);
- Vault runs outside both clusters: as in test_vault_fleet.py, each cluster gets the chart's
  ``authDelegator`` binding and bootstrap a TokenRequest token of ``vault/vault``
  (harness/vault_stack.bootstrap); the ``file/`` audit device writes into the run folder;
  the stack files' ``vault.address`` is the local server (vault_stack.point_at).
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.e2e.conftest import require
from tests.e2e.harness import ROOT, module_dir
from tests.e2e.harness import vault_stack
from tests.e2e.harness.gitops import FIELD_MANAGER, apply_stack
from tests.e2e.harness.kube import Cluster, sa_user
from tests.e2e.harness.procs import wait_for
from tests.e2e.harness.sealed_secrets import (
    SealedSecretsController,
    chart_flags,
    kubectl_secret_data,
    ksecrets_run,
    secret_data,
    synced,
)
from tests.e2e.harness.vault import DevVault
from tests.e2e.harness.vso import Operator

SEALED = {"a": "staging", "b": "stg-b"}  # environment staging, sealed-secrets
VAULTS = {"a": "prod-a", "b": "prod-b"}  # environment production, Vault
OTHER = {"a": "b", "b": "a"}
SECRET, APP_NS = "my-app-secrets", "my-app"
PATHS = {"a": "billing", "b": "billing-eu-b"}
BILLING_NS, BILLING_SECRET = "billing", "billing-secrets"

# kubectl's env-file rules: `=` inside a value, UTF-8, quotes and inner spaces kept, an empty value.
ENV_FILE = (
    "API_KEY=ak-fleet-0123456789\n"
    "DATABASE_URL=postgres://app:p4ss=w0rd@db.example:5432/app?sslmode=require\n"
    "GREETING=grüße aus A und B ✓\n"
    'QUOTED="kept as written"\n'
    "FEATURE_FLAGS=\n"
)
ENV_VALUES = {
    "API_KEY": "ak-fleet-0123456789",
    "DATABASE_URL": "postgres://app:p4ss=w0rd@db.example:5432/app?sslmode=require",
    "GREETING": "grüße aus A und B ✓",
    "QUOTED": '"kept as written"',
    "FEATURE_FLAGS": "",
}
VAULT_VALUES = {"a": {"API_KEY": "billing-a-0123456789"}, "b": {"API_KEY": "billing-b-9876543210"}}

ENVIRONMENT = {
    "backend": "vault",
    "vault": {"tls": {"enabled": True}, "kvMount": "secret", "audience": "vault"},
    "monitoring": {"enabled": False},
    "apps": [
        {
            "name": "billing",
            "namespace": BILLING_NS,
            "serviceAccount": "billing",
            "secretName": BILLING_SECRET,
            "keys": ["API_KEY"],
            "vault": {"path": PATHS["a"]},
        }
    ],
}


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _one(folder: Path, pattern: str) -> dict:
    (path,) = sorted(folder.glob(pattern))
    (doc,) = _docs(path)
    return doc


def _events(cluster: Cluster, namespace: str, kind: str, name: str) -> list[dict]:
    sel = f"involvedObject.kind={kind},involvedObject.name={name}"
    got = cluster.get(f"/api/v1/namespaces/{namespace}/events?fieldSelector={sel}") or {}
    return list(got.get("items") or [])


def _vss_events(cluster: Cluster) -> dict[str, int]:
    """The operator's events on VaultStaticSecret billing/billing so far: uid → count."""
    return {
        e["metadata"]["uid"]: e.get("count") or 1 for e in _events(cluster, BILLING_NS, "VaultStaticSecret", "billing")
    }


def _vss_events_since(cluster: Cluster, before: dict[str, int]) -> list[dict]:
    """Events new since ``before``, or repeated since (the recorder counts a repeated message)."""
    return [
        e
        for e in _events(cluster, BILLING_NS, "VaultStaticSecret", "billing")
        if (e.get("count") or 1) > before.get(e["metadata"]["uid"], 0)
    ]


def _audit(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _vault_requests(log: Path, path: str, *, denied: bool, since: int = 0) -> list[dict]:
    """Vault's audit entries for ``path``: refused (its error says permission denied) or served
    (a response without error); ``since``: skip the first entries of the log."""
    out = []
    for e in _audit(log)[since:]:
        if e["request"]["path"] != path:
            continue
        error = e.get("error") or ""
        if denied and "permission denied" in error:
            out.append(e)
        elif not denied and e["type"] == "response" and not error:
            out.append(e)
    return out


def _display_name(entry: dict) -> str:
    """The token's display name: Vault prefixes it with the auth mount that issued the token."""
    return (entry.get("auth") or {}).get("display_name") or ""


def _vso_values(cluster: Cluster) -> dict[str, str] | None:
    """Secret billing/billing-secrets as the operator wrote it, without its ``_raw`` copy."""
    data = secret_data(cluster, BILLING_NS, BILLING_SECRET)
    if data is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in data.items() if k != "_raw"}


def _as(cluster: Cluster, token: str, path: str) -> requests.Response:
    """A GET with a bearer token, as a Pod's client would make it."""
    return requests.get(
        cluster.server + path,
        headers={"Authorization": f"Bearer {token}"},
        verify=str(cluster.ca.cert_path),
        timeout=10,
    )


# --- the fleet ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(cluster_factory, e2e_dir: Path, sealed_run_env):
    """The two API servers and the workspace (a copy of the repository's staging stack)."""
    work = e2e_dir / "fleet-two"
    root = work / "repo"
    (root / "certs").mkdir(parents=True)
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml"):
        shutil.copy2(ROOT / name, root / name)
    shutil.copy2(ROOT / "certs" / "staging.pem", root / "certs" / "staging.pem")  # replaced by A's below
    started = time.monotonic()
    clusters: dict[str, Cluster] = {}
    try:
        for c in ("a", "b"):
            clusters[c] = cluster_factory(f"fleet-{c}")
        print(f"\nfleet: 2 API servers up in {time.monotonic() - started:.1f} s")
        yield {"root": root, "work": work, "clusters": clusters, "env": dict(sealed_run_env)}
    finally:
        for cluster in clusters.values():  # by PID, now rather than at the session's end
            cluster.stop()


@pytest.fixture(scope="module")
def controllers(fleet):
    """The real sealed-secrets controller on each API server, each with the key it makes itself."""
    from ksecrets.config.load import load_stack
    from ksecrets.manifests.sealed_secrets import controller_values

    binary = require("sealed-secrets-controller")["sealed-secrets-controller"]
    flags = chart_flags(controller_values(load_stack("staging", fleet["root"])))
    made: dict[str, SealedSecretsController] = {}
    try:
        for c, cluster in fleet["clusters"].items():
            # no key Secret applied: the controller makes its own sealing key at its first start
            ctl = SealedSecretsController(cluster, fleet["work"] / f"sealed-{c}", binary, flags=flags)
            ctl.install_rbac()
            made[c] = ctl
            ctl.start()
        yield made
    finally:
        for ctl in made.values():
            ctl.stop()


@pytest.fixture(scope="module")
def vaulted(fleet):
    """One Vault (dev, TLS, a file audit device) and the real operator on each API server."""
    bins = require("vault", "vault-secrets-operator")
    started = time.monotonic()
    vault = DevVault(fleet["work"] / "vault", bins["vault"], tls=True)
    operators: dict[str, Operator] = {}
    try:
        vault.start()
        for c, cluster in fleet["clusters"].items():
            op = Operator(
                cluster,
                bins["vault-secrets-operator"],
                module_dir("vault-secrets-operator"),
                fleet["work"] / f"vso-{c}",
            )
            op.install()
            vault_stack.ca_secret(cluster, vault)
            operators[c] = op
            op.start()
        audit = fleet["work"] / "vault-audit.log"
        vault.client().sys.enable_audit_device("file", path="file", options={"file_path": str(audit)})
        print(f"\nfleet: Vault and 2 operators up in {time.monotonic() - started:.1f} s")
        yield {"vault": vault, "operators": operators, "audit": audit}
    finally:
        for op in operators.values():
            op.stop()
        vault.stop()


def _ksecrets(fleet, *args: str, vault: DevVault | None = None):
    env = dict(fleet["env"], **(vault.env() if vault else {}))
    return ksecrets_run(*args, cwd=fleet["root"], env=env)


# --- sealed-secrets: one seal --env, each cluster its own key -----------------------------------


def test_one_seal_env_reaches_both_clusters_and_each_controller_unseals_only_its_own(fleet, controllers):
    root, clusters = fleet["root"], fleet["clusters"]

    new = _ksecrets(fleet, "stack", "new", SEALED["b"], "--env", "staging").stdout
    assert f"Pulumi.{SEALED['b']}.yaml: written" in new, new
    assert "environments/staging.yaml: written from Pulumi.staging.yaml" in new, new
    own = yaml.safe_load((root / f"Pulumi.{SEALED['b']}.yaml").read_text())["config"]
    assert own["k8s-secrets:extends"] == "environments/staging.yaml"
    assert own["k8s-secrets:sealedSecrets"] == {"certificate": f"certs/{SEALED['b']}.pem"}

    # Each stack's certificate is its own controller's (README: kubeseal --fetch-cert > certs/<stack>.pem).
    certs = {}
    for c, stack in SEALED.items():
        pem = controllers[c].cert_pem()
        assert pem is not None and b"BEGIN CERTIFICATE" in pem
        (root / "certs" / f"{stack}.pem").write_bytes(pem)
        certs[c] = pem
    assert certs["a"] != certs["b"]

    env_file = fleet["work"] / ".env.staging"
    # staging's committed entry holds API_KEY, sealed for the repository's certificate: a run that
    # does not give it is refused, and neither cluster's file changes (one transaction).
    env_file.write_text(ENV_FILE.replace("API_KEY=ak-fleet-0123456789\n", ""), encoding="utf-8")
    files = {p.name: p.read_bytes() for p in sorted(root.glob("Pulumi.*.yaml"))}
    res = ksecrets_run(
        "seal",
        "--env",
        "staging",
        "--name",
        SECRET,
        "--from-env-file",
        str(env_file),
        cwd=root,
        env=fleet["env"],
        expect_ok=False,
    )
    assert res.returncode != 0 and res.stderr.strip() == (
        "ksecrets: Pulumi.staging.yaml: k8s-secrets:sealed[0]: API_KEY not in the input but sealed for another "
        "certificate or scope; give their values, pass --prune to drop them, or run `ksecrets reseal`"
    ), res.stderr
    assert {p.name: p.read_bytes() for p in sorted(root.glob("Pulumi.*.yaml"))} == files
    env_file.write_text(ENV_FILE, encoding="utf-8")
    started = time.monotonic()
    res = _ksecrets(fleet, "seal", "--env", "staging", "--name", SECRET, "--from-env-file", str(env_file))
    seal_s = time.monotonic() - started
    out = res.stdout + res.stderr
    for stack in SEALED.values():
        assert f"Pulumi.{stack}.yaml" in out, out
    for value in ENV_VALUES.values():
        assert not value or value not in out, "a value in seal's output"
    _ksecrets(fleet, "export", "--env", "staging")
    exported = {c: _one(root / "k8s" / stack / "apps", "sealedsecret-*.yaml") for c, stack in SEALED.items()}
    for c, ss in exported.items():
        assert ss["metadata"]["name"] == SECRET and ss["metadata"]["namespace"] == APP_NS
        assert sorted(ss["spec"]["encryptedData"]) == sorted(ENV_VALUES), c
    assert exported["a"]["spec"]["encryptedData"] != exported["b"]["spec"]["encryptedData"]

    for cluster in clusters.values():
        cluster.ensure_namespace(APP_NS)

    # The SealedSecret exported for one cluster, applied to the other: its controller refuses it.
    for c, cluster in clusters.items():
        cluster.apply([exported[OTHER[c]]], field_manager=FIELD_MANAGER)
    refusals = {}
    for c, cluster in clusters.items():
        wait_for(
            f"cluster {c}: the other cluster's SealedSecret Synced=False",
            lambda cl=cluster: (synced(cl, APP_NS, SECRET) or {}).get("status") == "False",
            60,
            controllers[c].proc,
        )
        cond = synced(cluster, APP_NS, SECRET)
        assert cond is not None
        refusals[c] = cond["message"]
        assert cond["message"].startswith("no key could decrypt secret"), cond
        for key in ENV_VALUES:
            assert key in cond["message"], cond
        assert secret_data(cluster, APP_NS, SECRET) is None, f"cluster {c}: a Secret from the other cluster's copy"
        unseal_errors = controllers[c].metric("sealed_secrets_controller_unseal_errors_total", reason="unseal")
        assert unseal_errors and unseal_errors >= 1, unseal_errors

    # Its own SealedSecret: unsealed into exactly what kubectl makes of the env file.
    expected = {k: _b64(v) for k, v in ENV_VALUES.items()}
    took = {}
    for c, cluster in clusters.items():
        cluster.apply([exported[c]], field_manager=FIELD_MANAGER)
    for c, cluster in clusters.items():
        started = time.monotonic()
        wait_for(
            f"cluster {c}: Secret {APP_NS}/{SECRET} unsealed by its own controller",
            lambda cl=cluster: secret_data(cl, APP_NS, SECRET) is not None,
            60,
            controllers[c].proc,
        )
        took[c] = time.monotonic() - started
        data = secret_data(cluster, APP_NS, SECRET)
        assert data == expected, (
            f"cluster {c}: keys that differ: {sorted(k for k in expected if data.get(k) != expected[k])}"
        )
        assert data == kubectl_secret_data(cluster, SECRET, APP_NS, env_file)
        assert (synced(cluster, APP_NS, SECRET) or {}).get("status") == "True"
    print(
        f"seal --env staging: {seal_s:.1f} s for 2 clusters; unsealed in "
        + ", ".join(f"{c}: {t:.1f} s" for c, t in took.items())
        + "".join(f"\ncluster {c} refused the other's copy: {m}" for c, m in refusals.items())
    )


# --- Vault: one server, an operator per cluster -------------------------------------------------


def test_one_vault_an_operator_per_cluster_each_syncs_its_own_and_cross_cluster_reads_are_refused(fleet, vaulted):
    root, clusters, vault, audit = fleet["root"], fleet["clusters"], vaulted["vault"], vaulted["audit"]

    (root / "environments").mkdir(exist_ok=True)
    (root / "environments" / "production.yaml").write_text(yaml.safe_dump(ENVIRONMENT, sort_keys=False))
    for stack in VAULTS.values():
        new = _ksecrets(fleet, "stack", "new", stack, "--env", "production").stdout
        assert f"Pulumi.{stack}.yaml: written" in new, new
        vault_stack.point_at(root, stack, vault)
    # prod-b's own app list: billing reads its own path there.
    path_b = root / f"Pulumi.{VAULTS['b']}.yaml"
    doc = yaml.safe_load(path_b.read_text())
    app_b = dict(ENVIRONMENT["apps"][0], vault={"path": PATHS["b"]})
    doc["config"]["k8s-secrets:apps"] = [app_b]
    path_b.write_text(yaml.safe_dump(doc, sort_keys=False))
    _ksecrets(fleet, "export", "--env", "production")
    apps = {c: root / "k8s" / stack / "apps" for c, stack in VAULTS.items()}
    for c, stack in VAULTS.items():
        assert _one(apps[c], "vaultauth-billing.yaml")["spec"]["mount"] == f"kubernetes-{stack}"
        assert _one(apps[c], "vaultstaticsecret-billing.yaml")["spec"]["path"] == PATHS[c]

    for c, stack in VAULTS.items():
        out = vault_stack.bootstrap(clusters[c], vault, root, stack, fleet["work"] / f"bootstrap-{stack}")
        assert f"changed: auth method kubernetes-{stack}/ (kubernetes)" in out, out
        env_file = fleet["work"] / f".env.{stack}"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in VAULT_VALUES[c].items()))
        pushed = _ksecrets(
            fleet, "vault", "push", "--stack", stack, "--path", PATHS[c], "--from-env-file", str(env_file), vault=vault
        )
        assert pushed.stdout.startswith(f"secret/data/{PATHS[c]}: version 1"), pushed.stdout

    # The exported stacks applied in Flux's order; each cluster's operator syncs its own path.
    started = time.monotonic()
    for c, stack in VAULTS.items():
        apply_stack(clusters[c], root / "k8s" / stack, root=root)
    for c, cluster in clusters.items():
        wait_for(
            f"cluster {c}: the operator's Secret with its own cluster's values",
            lambda cl=cluster, cc=c: _vso_values(cl) == VAULT_VALUES[cc],
            120,
            vaulted["operators"][c].proc,
        )
    sync_s = time.monotonic() - started
    for c, stack in VAULTS.items():
        served = [  # the operators' reads (`vault push` reads with the root token, display name "token")
            e for e in _vault_requests(audit, f"secret/data/{PATHS[c]}", denied=False) if _display_name(e) != "token"
        ]
        assert served, f"Vault's audit log: no read of secret/data/{PATHS[c]}"
        assert {_display_name(e).startswith(f"kubernetes-{stack}-") for e in served} == {True}, [
            _display_name(e) for e in served
        ]

    # Kubernetes: the other cluster's token is not an identity here; the stack's RBAC lets the
    # app's account get its one Secret, nothing else.
    for c, cluster in clusters.items():
        other = clusters[OTHER[c]]
        secret_path = f"/api/v1/namespaces/{BILLING_NS}/secrets/{BILLING_SECRET}"
        mine = cluster.token("billing", BILLING_NS)
        theirs = other.token("billing", BILLING_NS)
        r = _as(cluster, mine, secret_path)
        assert (
            r.status_code == 200
            and base64.b64decode(r.json()["data"]["API_KEY"]).decode() == VAULT_VALUES[c]["API_KEY"]
        )
        r = _as(cluster, theirs, secret_path)
        assert r.status_code == 401, (r.status_code, r.text[:200])
        r = _as(cluster, mine, f"/api/v1/namespaces/{BILLING_NS}/secrets")
        assert r.status_code == 403, (r.status_code, r.text[:200])
        user = sa_user("billing", BILLING_NS)
        assert cluster.can_i("get", "secrets", BILLING_NS, user=user, name=BILLING_SECRET)
        assert not cluster.can_i("get", "secrets", BILLING_NS, user=user, name="billing-other")
        assert not cluster.can_i("get", "secrets", APP_NS, user=user, name=SECRET)
        assert not cluster.can_i("get", "secrets", BILLING_NS, user=sa_user("default", BILLING_NS), name=BILLING_SECRET)

    # Vault, through each cluster's operator: the other cluster's VaultStaticSecret (its path) ...
    def other_copy(c: str, pattern: str) -> dict:
        return _one(apps[OTHER[c]], pattern)

    def warnings_since(cluster: Cluster, before: dict[str, int]) -> list[str]:
        return [e["message"] for e in _vss_events_since(cluster, before) if e["type"] == "Warning"]

    seen = {c: _vss_events(cl) for c, cl in clusters.items()}
    for c, cluster in clusters.items():
        cluster.apply([other_copy(c, "vaultstaticsecret-billing.yaml")], field_manager=FIELD_MANAGER)
    read_refused = {}
    for c, cluster in clusters.items():
        wait_for(
            f"cluster {c}: the operator's read of the other cluster's path refused",
            lambda cl=cluster, cc=c: any("permission denied" in m for m in warnings_since(cl, seen[cc])),
            60,
            vaulted["operators"][c].proc,
        )
        read_refused[c] = next(m for m in warnings_since(cluster, seen[c]) if "permission denied" in m)
        assert f"secret/data/{PATHS[OTHER[c]]}" in read_refused[c] and "403" in read_refused[c], read_refused[c]
        assert _vso_values(cluster) == VAULT_VALUES[c], f"cluster {c}: its Secret changed"
    for c, stack in VAULTS.items():
        denied = _vault_requests(audit, f"secret/data/{PATHS[OTHER[c]]}", denied=True)
        assert [e for e in denied if _display_name(e).startswith(f"kubernetes-{stack}-")], [
            (_display_name(e), e.get("error")) for e in denied
        ]

    # ... and its VaultAuth (its mount): that cluster's TokenReview refuses this cluster's token.
    seen = {c: _vss_events(cl) for c, cl in clusters.items()}
    for c, cluster in clusters.items():
        cluster.apply([other_copy(c, "vaultauth-billing.yaml")], field_manager=FIELD_MANAGER)
        cluster.apply([_one(apps[c], "vaultstaticsecret-billing.yaml")], field_manager=FIELD_MANAGER)
    login_refused = {}
    for c, cluster in clusters.items():
        wait_for(
            f"cluster {c}: the operator's login at the other cluster's mount refused",
            lambda cl=cluster, cc=c: any(f"kubernetes-{VAULTS[OTHER[cc]]}" in m for m in warnings_since(cl, seen[cc])),
            60,
            vaulted["operators"][c].proc,
        )
        login_refused[c] = next(m for m in warnings_since(cluster, seen[c]) if f"kubernetes-{VAULTS[OTHER[c]]}" in m)
        assert "permission denied" in login_refused[c], login_refused[c]
        assert _vso_values(cluster) == VAULT_VALUES[c], f"cluster {c}: its Secret changed"
    for stack in VAULTS.values():
        assert _vault_requests(audit, f"auth/kubernetes-{stack}/login", denied=True), (
            f"Vault's audit log: no refused login at kubernetes-{stack}"
        )

    # Its own VaultAuth back: the operator's retry logs in at its own mount and reads its path again.
    mark = len(_audit(audit))
    for c, cluster in clusters.items():
        cluster.apply([_one(apps[c], "vaultauth-billing.yaml")], field_manager=FIELD_MANAGER)
    for c, stack in VAULTS.items():
        wait_for(
            f"cluster {c}: the operator reads its own path again with its own VaultAuth",
            lambda cc=c, st=stack: any(
                _display_name(e).startswith(f"kubernetes-{st}-")
                for e in _vault_requests(audit, f"secret/data/{PATHS[cc]}", denied=False, since=mark)
            ),
            60,
            vaulted["operators"][c].proc,
        )
        assert _vso_values(clusters[c]) == VAULT_VALUES[c]
    print(
        f"vault: both operators synced their own path in {sync_s:.1f} s"
        + "".join(f"\ncluster {c}: the other's VaultStaticSecret: {m}" for c, m in read_refused.items())
        + "".join(f"\ncluster {c}: the other's VaultAuth: {m}" for c, m in login_refused.items())
    )
