"""Issue 9, flow 4 (and the Vault share of flow 6): the Vault backend end to end.

Real: a Vault server (the version tools/vault pins) (dev mode: in-memory storage, TLS by ``-dev-tls``), kube-apiserver
with TokenRequest and TokenReview, kube-controller-manager (Deployments → ReplicaSets), the Vault
Secrets Operator (tools/vault-secrets-operator) with its own CRDs and the chart's RBAC (tests/e2e/harness/vso.py),
``ksecrets vault bootstrap|push``, ``python -m ksecrets.rotate`` and ``kubectl kustomize`` +
server-side apply of the exported ``k8s/production`` (tests/e2e/harness/gitops.py).

Simulated or adjusted, and why:
- the stack is a copy of Pulumi.production.yaml whose only change is ``vault.address`` (the local
  dev server instead of ``vault.vault.svc``); ``k8s/production`` is exported from it by ``ksecrets
  export``, so the VaultConnection and the CronJob's VAULT_ADDR point at it;
- Vault runs outside the cluster, so it cannot review tokens with its pod's own token: the chart's
  ``authDelegator`` binding (ServiceAccount ``vault/vault`` → ``system:auth-delegator``) is made
  here and a TokenRequest token of that account is given to ``bootstrap --token-reviewer-jwt-file``;
- the ``file/`` audit device is enabled before bootstrap with a path in the run folder, because
  the chart's audit volume (/vault/audit) does not exist on this machine (bootstrap then finds it
  and leaves it);
- the rotation CronJob never fires here (no kubelet): its container's args and environment are
  read from the exported CronJob and run as a local process, with the projected token replaced by
  a TokenRequest token of the same ServiceAccount and audience, and VAULT_CACERT by the CA file;
- no Pod runs: a restart is asserted as the operator's stamp on the pod template and the new
  ReplicaSet kube-controller-manager makes for it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import hvac
import pytest
import yaml

from tests.e2e.conftest import require
from tests.e2e.harness import ROOT, module_dir
from tests.e2e.harness.gitops import apply_stack
from tests.e2e.harness.procs import wait_for
from tests.e2e.harness.vault import DevVault
from tests.e2e.harness.vso import NAMESPACE as VSO_NAMESPACE, Operator

APP_NS = "my-app"
SECRET = "my-app-secrets"
RESTARTED_AT = "vso.secrets.hashicorp.com/restartedAt"
DB_URL = "postgres://app:e2e-db-p4ss@db.example:5432/app"
API_KEY = "ak-e2e-first-value-0123456789"


# --- helpers ----------------------------------------------------------------------------------


def ksecrets(*args: str, env: dict[str, str], home: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, with only the environment given (no ~/.vault-token)."""
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **env}
    return subprocess.run(
        [sys.executable, "-m", "ksecrets", *args], env=full, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def secret_data(cluster, namespace: str, name: str) -> dict[str, str] | None:
    obj = cluster.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    if obj is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}


def app_values(data: dict[str, str] | None) -> dict[str, str] | None:
    """The Secret's keys from Vault; the operator adds ``_raw`` (the whole kv-v2 response) beside them."""
    return None if data is None else {k: v for k, v in data.items() if k != "_raw"}


def kv_read(vault: DevVault, path: str = "my-app") -> dict:
    return vault.client().secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )["data"]


def one_line_error(res: subprocess.CompletedProcess, prefix: str) -> str:
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), f"not one {prefix!r} line: {res.stderr!r}"
    return lines[0]


# --- the stack, Vault, the cluster and the operator ---------------------------------------------


@pytest.fixture(scope="module")
def bins():
    return require("vault", "vault-secrets-operator", "kubectl")


@pytest.fixture(scope="module")
def vault(e2e_dir, bins):
    v = DevVault(e2e_dir / "vault-flow", bins["vault"], tls=True)
    try:
        yield v.start()
    finally:
        v.stop()


@pytest.fixture(scope="module")
def kcluster(cluster_factory):
    return cluster_factory("vault-flow")


@pytest.fixture(scope="module")
def repo(tmp_path_factory, vault):
    """A copy of the repository's production stack with vault.address set to the local Vault,
    exported by the real `ksecrets export`."""
    root = tmp_path_factory.mktemp("vault-flow-repo")
    shutil.copy2(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    text = (ROOT / "Pulumi.production.yaml").read_text()
    anchor = "  k8s-secrets:vault:\n"
    assert text.count(anchor) == 1
    (root / "Pulumi.production.yaml").write_text(text.replace(anchor, f"{anchor}    address: {vault.address}\n"))
    res = ksecrets("export", "--stack", "production", "--root", str(root), env={}, home=root)
    assert res.returncode == 0, res.stderr
    conn = yaml.safe_load((root / "k8s/production/apps/vaultconnection-vault.yaml").read_text())
    assert conn["spec"]["address"] == vault.address and conn["spec"]["caCertSecretRef"] == "vault-ca"
    return root


@pytest.fixture(scope="module")
def operator(kcluster, e2e_dir, bins):
    op = Operator(kcluster, bins["vault-secrets-operator"], module_dir("vault-secrets-operator"), e2e_dir / "vso-flow")
    op.install()
    try:
        yield op.start()
    finally:
        op.stop()


@pytest.fixture(scope="module")
def bootstrapped(kcluster, vault, repo, e2e_dir):
    """README's order: Vault up → `ksecrets vault bootstrap` (here against the real API server)."""
    # The chart's server.authDelegator: Vault's ServiceAccount may create TokenReviews.
    kcluster.ensure_namespace("vault")
    kcluster.ensure_service_account("vault", "vault")
    kcluster.apply(
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
        ]
    )
    jwt = e2e_dir / "vault-flow" / "reviewer.jwt"
    jwt.write_text(kcluster.token("vault", "vault", seconds=86400))
    jwt.chmod(0o600)
    vault.client().sys.enable_audit_device(
        "file", path="file", options={"file_path": str(e2e_dir / "vault-flow" / "audit.log")}
    )
    args = (
        "vault",
        "bootstrap",
        "--stack",
        "production",
        "--root",
        str(repo),
        "--kube-host",
        kcluster.server,
        "--kube-ca-file",
        str(kcluster.ca.cert_path),
        "--token-reviewer-jwt-file",
        str(jwt),
    )
    first = ksecrets(*args, env=vault.env(), home=repo)
    second = ksecrets(*args, env=vault.env(), home=repo)
    return first, second


@pytest.fixture(scope="module")
def applied(kcluster, operator, vault, repo, bootstrapped):
    """The exported stack applied in Flux's order, with the CA Secret README asks for beside the
    VaultConnection. Nothing is in Vault yet: the operator waits for `vault push`."""
    kcluster.ensure_namespace(VSO_NAMESPACE)
    kcluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "vault-ca", "namespace": VSO_NAMESPACE},
                "stringData": {"ca.crt": vault.ca.read_text()},
            }
        ]
    )

    return apply_stack(kcluster, repo / "k8s" / "production")


@pytest.fixture(scope="module")
def pushed(applied, kcluster, vault, repo, tmp_path_factory):
    env_file = tmp_path_factory.mktemp("env") / ".env.production"
    env_file.write_text(f"DATABASE_URL={DB_URL}\nAPI_KEY={API_KEY}\n")
    started = time.monotonic()
    res = ksecrets(
        "vault",
        "push",
        "--stack",
        "production",
        "--path",
        "my-app",
        "--from-env-file",
        str(env_file),
        env=vault.env(),
        home=repo,
    )
    assert res.returncode == 0, res.stderr
    wait_for(
        "the operator's Secret with the pushed values",
        lambda: app_values(secret_data(kcluster, APP_NS, SECRET)) == {"DATABASE_URL": DB_URL, "API_KEY": API_KEY},
        120,
    )
    sync = time.monotonic() - started
    print(f"\nvault flow: push -> Secret written by the operator in {sync:.1f} s")
    return res, env_file


# --- tests ------------------------------------------------------------------------------------


def test_bootstrap_configures_the_real_vault_against_the_real_api_server(bootstrapped, vault, kcluster):
    """Real Vault state after `ksecrets vault bootstrap --stack production`, run twice."""
    first, second = bootstrapped
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    reviewer = (
        f"changed: auth kubernetes/config (host {kcluster.server}, "
        "token reviewer JWT: write-only, written on every run)"
    )
    # A dev server mounts kv-v2 at secret/ itself; bootstrap finds it as configured and keeps it.
    assert first.stdout.splitlines() == [
        "changed: auth method kubernetes/ (kubernetes)",
        reviewer,
        "changed: policy ksecrets-my-app",
        "changed: role my-app (my-app/my-app)",
        "changed: policy ksecrets-my-app-rotator",
        "changed: role my-app-rotator (my-app/my-app-rotator)",
        "changed: policy ksecrets-vault-snapshot",
        "changed: role vault-snapshot (vault/vault-snapshot)",
        "8 changed, 2 already as configured",
    ]
    # Second run: only the write-only JWT is written again.
    assert second.returncode == 0 and second.stdout.splitlines() == [reviewer, "1 changed, 9 already as configured"]
    c = vault.client()
    assert c.sys.list_mounted_secrets_engines()["data"]["secret/"]["options"]["version"] == "2"
    config = c.read("auth/kubernetes/config")["data"]
    assert config["kubernetes_host"] == kcluster.server and config["token_reviewer_jwt_set"] is True
    assert config["kubernetes_ca_cert"].strip() == kcluster.ca.cert_path.read_text().strip()
    role = c.read("auth/kubernetes/role/my-app")["data"]
    assert (
        role["bound_service_account_names"],
        role["bound_service_account_namespaces"],
        role["audience"],
        role["token_policies"],
    ) == (["my-app"], ["my-app"], "vault", ["ksecrets-my-app"])
    assert c.sys.read_acl_policy("ksecrets-my-app")["data"]["policy"].count("path ") == 1
    assert 'path "secret/data/my-app"' in c.sys.read_acl_policy("ksecrets-my-app-rotator")["data"]["policy"]


def test_kubernetes_login_is_checked_by_the_real_token_review(bootstrapped, kcluster, vault):
    """The app's ServiceAccount logs in (its token reviewed by the real API server) and may read
    only its own path; another account, or the right one with the wrong audience, is refused."""
    kcluster.ensure_namespace(APP_NS)
    for sa in ("my-app", "default"):
        kcluster.ensure_service_account(sa, APP_NS)
    app = vault.client(token=None)
    app.auth.kubernetes.login(role="my-app", jwt=kcluster.token("my-app", APP_NS, audiences=("vault",)))
    assert app.token
    with pytest.raises(hvac.exceptions.Forbidden):
        app.secrets.kv.v2.create_or_update_secret(path="my-app", secret={"X": "y"}, mount_point="secret")
    with pytest.raises(hvac.exceptions.Forbidden):
        app.secrets.kv.v2.read_secret_version(path="other-app", mount_point="secret", raise_on_deleted_version=True)
    for sa, audiences in (("default", ("vault",)), ("my-app", ("https://kubernetes.default.svc.cluster.local",))):
        with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)):
            vault.client(token=None).auth.kubernetes.login(
                role="my-app", jwt=kcluster.token(sa, APP_NS, audiences=audiences)
            )


def test_push_then_the_real_operator_writes_the_secret(pushed, kcluster, vault):
    """`ksecrets vault push` → Vault version 1 → the operator (logged in as my-app's ServiceAccount
    through VaultAuth `my-app`) writes Secret my-app-secrets with exactly the pushed values."""
    res, _ = pushed
    assert res.stdout.splitlines() == ["secret/data/my-app: version 1 (added: API_KEY, DATABASE_URL)"]
    assert DB_URL not in res.stdout + res.stderr and API_KEY not in res.stdout + res.stderr
    assert kv_read(vault)["data"] == {"DATABASE_URL": DB_URL, "API_KEY": API_KEY}
    secret = kcluster.get(f"/api/v1/namespaces/{APP_NS}/secrets/{SECRET}")
    # Found here: the operator owns the Secret and sets managed-by to its own value (its ownership
    # check reads it), so destination.labels carry part-of instead, and that one survives.
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hashicorp-vso"
    assert secret["metadata"]["labels"]["app.kubernetes.io/part-of"] == "k8s-secrets"
    assert json.loads(base64.b64decode(secret["data"]["_raw"]))["data"] == {"DATABASE_URL": DB_URL, "API_KEY": API_KEY}
    vss = kcluster.get(f"/apis/secrets.hashicorp.com/v1beta1/namespaces/{APP_NS}/vaultstaticsecrets/my-app")
    assert vss["status"]["secretMAC"], "hmacSecretData: the operator keeps an HMAC, not the data"
    # The first sync restarts nothing.
    dep = kcluster.get(f"/apis/apps/v1/namespaces/{APP_NS}/deployments/my-app")
    assert RESTARTED_AT not in (dep["spec"]["template"]["metadata"].get("annotations") or {})


def _rotator_env(repo: Path, kcluster, vault: DevVault, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """The exported CronJob's container args and env, with its mounted files given as local files."""
    cron = yaml.safe_load((repo / "k8s/production/apps/cronjob-my-app-rotate-api-key.yaml").read_text())
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    projected = next(v for v in pod["volumes"] if v["name"] == "vault-token")["projected"]["sources"][0]
    token_src = projected["serviceAccountToken"]
    token = workdir / "rotator-token"
    token.write_text(
        kcluster.token(
            pod["serviceAccountName"],
            APP_NS,
            audiences=(token_src["audience"],),
            seconds=token_src["expirationSeconds"],
        )
    )
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["VAULT_ADDR"] == vault.address
    env["KSECRETS_VAULT_TOKEN_FILE"] = str(token)
    env["VAULT_CACERT"] = str(vault.ca)
    assert container["command"] == ["python", "-m", "ksecrets.rotate"]
    return container["args"], env


def test_rotation_new_version_secret_updated_deployment_restarted(pushed, kcluster, vault, repo, e2e_dir):
    """The rotator, with its own ServiceAccount token and Vault role (my-app-rotator), writes
    version 2; the operator updates the Secret within refreshAfter (60 s) and stamps the Deployment,
    and kube-controller-manager makes a new ReplicaSet for the new pod template."""
    args, env = _rotator_env(repo, kcluster, vault, e2e_dir / "vault-flow")
    rs_before = {
        rs["metadata"]["name"] for rs in kcluster.get(f"/apis/apps/v1/namespaces/{APP_NS}/replicasets")["items"]
    }
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "ksecrets.rotate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(repo), **env},
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    assert "logged in to Vault" in res.stderr and "my-app-rotator" in res.stderr
    latest = kv_read(vault)
    assert latest["metadata"]["version"] == 2
    new_key = latest["data"]["API_KEY"]
    assert new_key != API_KEY and len(new_key) == 32 and latest["data"]["DATABASE_URL"] == DB_URL
    assert new_key not in res.stdout + res.stderr

    wait_for(
        "the operator's Secret with the rotated value",
        lambda: app_values(secret_data(kcluster, APP_NS, SECRET)) == {"DATABASE_URL": DB_URL, "API_KEY": new_key},
        150,
    )
    synced = time.monotonic() - started

    def restarted() -> bool:
        dep = kcluster.get(f"/apis/apps/v1/namespaces/{APP_NS}/deployments/my-app")
        return RESTARTED_AT in (dep["spec"]["template"]["metadata"].get("annotations") or {})

    wait_for("the Deployment stamped for a restart", restarted, 60)
    stamped = time.monotonic() - started

    def new_replicaset() -> bool:
        items = kcluster.get(f"/apis/apps/v1/namespaces/{APP_NS}/replicasets")["items"]
        return any(
            rs["metadata"]["name"] not in rs_before
            and RESTARTED_AT in (rs["spec"]["template"]["metadata"].get("annotations") or {})
            for rs in items
        )

    wait_for("a new ReplicaSet for the restarted template", new_replicaset, 60)
    print(
        f"\nvault flow: rotation -> Secret updated in {synced:.1f} s, Deployment stamped at {stamped:.1f} s "
        f"(refreshAfter 60s)"
    )

    # The rotator's token may write exactly its app's path, nothing else.
    rot = vault.client(token=None)
    rot.auth.kubernetes.login(role="my-app-rotator", jwt=Path(env["KSECRETS_VAULT_TOKEN_FILE"]).read_text())
    for call in (
        lambda: rot.secrets.kv.v2.read_secret_version(
            path="other-app", mount_point="secret", raise_on_deleted_version=True
        ),
        lambda: rot.secrets.kv.v2.create_or_update_secret(path="other-app", secret={"a": "b"}, mount_point="secret"),
        lambda: rot.sys.list_acl_policies(),
    ):
        with pytest.raises(hvac.exceptions.Forbidden):
            call()


def test_sealed_vault_mid_flow_loses_nothing_and_errors_are_one_line(pushed, kcluster, vault, repo, operator, e2e_dir):
    """Vault sealed (real `sys/seal`) while a change is pending: `ksecrets vault push` and the
    rotator fail with one line each (README's sealed message), the operator keeps the Secret it
    has; after the real unseal the same push succeeds and the operator converges on it."""
    _, env_file = pushed
    before = app_values(secret_data(kcluster, APP_NS, SECRET))
    version_before = kv_read(vault)["metadata"]["version"]
    vault.seal()
    changed_url = DB_URL.replace("e2e-db-p4ss", "e2e-db-p4ss-2")
    env_file.write_text(f"DATABASE_URL={changed_url}\nAPI_KEY={API_KEY}\n")
    push = ("vault", "push", "--stack", "production", "--path", "my-app", "--from-env-file", str(env_file))
    res = ksecrets(*push, env=vault.env(), home=repo)
    assert res.returncode == 1 and res.stdout == ""  # a Vault refusal: exit 1, nothing changed
    assert one_line_error(res, "ksecrets: ") == (
        f"ksecrets: Vault {vault.address}: secret/data/my-app: Vault is sealed "
        "(unseal it: `vault operator unseal` on each pod)"
    )
    args, env = _rotator_env(repo, kcluster, vault, e2e_dir / "vault-flow")
    rot = subprocess.run(
        [sys.executable, "-m", "ksecrets.rotate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(repo), **env},
        cwd=ROOT,
    )
    assert rot.returncode == 1
    assert one_line_error(rot, "ksecrets.rotate: ") == (
        f"ksecrets.rotate: Vault {vault.address}: auth/kubernetes/login: Vault is sealed "
        "(unseal it: `vault operator unseal` on each pod)"
    )
    # While sealed the operator cannot read; the Secret it wrote stays as it was.
    time.sleep(5)
    assert app_values(secret_data(kcluster, APP_NS, SECRET)) == before

    vault.unseal()
    unsealed = time.monotonic()
    res = ksecrets(*push, env=vault.env(), home=repo)
    assert res.returncode == 0, res.stderr
    latest = kv_read(vault)
    assert latest["metadata"]["version"] == version_before + 1
    # API_KEY is rotated, so push keeps Vault's value (README): only DATABASE_URL changed.
    assert latest["data"] == {**before, "DATABASE_URL": changed_url}
    wait_for(
        "the operator converged after unseal",
        lambda: app_values(secret_data(kcluster, APP_NS, SECRET)) == latest["data"],
        150,
    )
    print(f"\nvault flow: unseal -> Secret converged in {time.monotonic() - unsealed:.1f} s")


def test_operator_killed_mid_flow_converges_after_restart(pushed, kcluster, vault, repo, operator):
    """The operator crashes (SIGKILL) with a new version pending in Vault; started again it
    writes the Secret from Vault, and no value is lost."""
    operator.proc.kill()
    c = vault.client()
    current = kv_read(vault)
    c.secrets.kv.v2.create_or_update_secret(
        path="my-app",
        mount_point="secret",
        cas=current["metadata"]["version"],
        secret={**current["data"], "DATABASE_URL": DB_URL + "?sslmode=require"},
    )
    want = kv_read(vault)["data"]
    started = time.monotonic()
    operator.start()
    wait_for("the restarted operator's Secret", lambda: app_values(secret_data(kcluster, APP_NS, SECRET)) == want, 150)
    print(f"\nvault flow: operator restarted -> Secret converged in {time.monotonic() - started:.1f} s")


def test_migrate_a_sealed_stack_to_vault_loses_no_value(kcluster, e2e_dir, bins, tmp_path):
    """`ksecrets keygen` → `ksecrets seal --stack staging` (a copy of staging sealed for a key we
    hold) → `ksecrets migrate --to vault --backup` against a real Vault (a dev server of its own)
    → `ksecrets vault bootstrap`: the app's ServiceAccount, logged in through the real TokenReview,
    reads from Vault exactly what `kubectl create secret --from-env-file` makes of the env file."""
    vault = DevVault(e2e_dir / "vault-migrate", bins["vault"], tls=True).start()
    try:
        root = tmp_path / "repo"
        root.mkdir()
        (root / "certs").mkdir()
        shutil.copy2(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
        shutil.copy2(ROOT / "Pulumi.staging.yaml", root / "Pulumi.staging.yaml")
        backup = tmp_path / "staging.ksbackup"
        env = {"KSECRETS_BACKUP_PASSPHRASE": "e2e-backup-passphrase-0123456789"}
        res = ksecrets(
            "keygen",
            "--stack",
            "staging",
            "--force",
            "--backup-file",
            str(backup),
            "--root",
            str(root),
            env=env,
            home=tmp_path,
        )
        assert res.returncode == 0, res.stderr
        env_file = tmp_path / ".env.staging"
        env_file.write_text(
            "DATABASE_URL=postgres://app:s3cr=t with spaces@db:5432/app?x=1\n"
            "# a comment\nAPI_KEY=ak-staging-ünïcode-0123\nEMPTY=\n"
        )
        res = ksecrets(
            "seal",
            "--stack",
            "staging",
            "--name",
            "my-app-secrets",
            "--from-env-file",
            str(env_file),
            "--root",
            str(root),
            env=env,
            home=tmp_path,
        )
        assert res.returncode == 0, res.stderr
        # The oracle: what kubectl itself makes of the env file.
        made = json.loads(
            kcluster.kubectl(
                "create", "secret", "generic", "x", f"--from-env-file={env_file}", "--dry-run=client", "-o", "json"
            ).stdout
        )
        expected = {k: base64.b64decode(v).decode() for k, v in made["data"].items()}
        assert set(expected) == {"DATABASE_URL", "API_KEY", "EMPTY"}

        res = ksecrets(
            "migrate",
            "--stack",
            "staging",
            "--to",
            "vault",
            "--backup",
            str(backup),
            "--root",
            str(root),
            env={**env, **vault.env()},
            home=tmp_path,
        )
        assert res.returncode == 0, res.stderr
        assert "backend switched to vault" in res.stdout
        assert not any(v and v in res.stdout + res.stderr for v in expected.values())
        assert kv_read(vault)["data"] == expected
        assert "k8s-secrets:backend: vault" in (root / "Pulumi.staging.yaml").read_text()

        res = ksecrets("export", "--stack", "staging", "--root", str(root), env={}, home=tmp_path)
        assert res.returncode == 0, res.stderr
        apps = {p.name for p in (root / "k8s/staging/apps").iterdir()}
        assert "vaultstaticsecret-my-app.yaml" in apps and not any(n.startswith("sealedsecret-") for n in apps)

        kcluster.ensure_namespace("vault")
        kcluster.ensure_service_account("vault", "vault")
        kcluster.apply(
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
            ]
        )
        jwt = tmp_path / "reviewer.jwt"
        jwt.write_text(kcluster.token("vault", "vault"))
        vault.client().sys.enable_audit_device("file", path="file", options={"file_path": "discard"})
        res = ksecrets(
            "vault",
            "bootstrap",
            "--stack",
            "staging",
            "--root",
            str(root),
            "--kube-host",
            kcluster.server,
            "--kube-ca-file",
            str(kcluster.ca.cert_path),
            "--token-reviewer-jwt-file",
            str(jwt),
            env=vault.env(),
            home=tmp_path,
        )
        assert res.returncode == 0, res.stderr
        kcluster.ensure_namespace(APP_NS)
        kcluster.ensure_service_account("my-app", APP_NS)
        app = vault.client(token=None)
        app.auth.kubernetes.login(role="my-app", jwt=kcluster.token("my-app", APP_NS, audiences=("vault",)))
        assert (
            app.secrets.kv.v2.read_secret_version(path="my-app", mount_point="secret", raise_on_deleted_version=True)[
                "data"
            ]["data"]
            == expected
        )
    finally:
        vault.stop()
