"""`ksecrets stack new`, `app add` and `doctor`, through the real command line on copies of the
repository's stack files; CI's preview matrix after `stack new` is checked by actionlint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ksecrets.config import load_stack_file, stack_files
from tests.conftest import ksecrets_in_process, sealed_shape

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "fixtures" / "vectors" / "sealed-secrets-v1.json"  # vendored (tests/fixtures/README.md)


def ks(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command in-process (tests/conftest.py: ksecrets_in_process): its behaviour is the subject."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KSECRETS_", "SEALED_SECRETS_"))}
    return ksecrets_in_process(*args, cwd=cwd, env=env)


@pytest.fixture
def repo(repo_copy: Path) -> Path:
    (repo_copy / ".github" / "workflows").mkdir(parents=True)
    shutil.copy2(ROOT / ".github" / "workflows" / "ci.yml", repo_copy / ".github" / "workflows" / "ci.yml")
    return repo_copy


def preview_stacks(repo: Path) -> list[str]:
    """The stacks CI previews: the matrix .ci/stacks.py makes from the stack files in ``repo``
    (the preview job's include is that job's output), or a written include list."""
    doc = yaml.safe_load((repo / ".github" / "workflows" / "ci.yml").read_text())
    include = doc["jobs"]["preview"]["strategy"]["matrix"]["include"]
    if include == "${{ fromJSON(needs.stacks.outputs.matrix) }}":
        (repo / ".ci").mkdir(exist_ok=True)
        shutil.copy2(ROOT / ".ci" / "stacks.py", repo / ".ci" / "stacks.py")
        out = subprocess.run(
            [sys.executable, str(repo / ".ci" / "stacks.py")], capture_output=True, text=True, check=True
        ).stdout
        include = json.loads(dict(line.split("=", 1) for line in out.splitlines())["matrix"])
    return [e["stack"] for e in include]


def actionlint() -> str | None:
    return shutil.which("actionlint") or (
        str(ROOT / ".tools/bin/actionlint") if (ROOT / ".tools/bin/actionlint").exists() else None
    )


def test_stack_new_from_an_existing_stack(repo):
    res = ks("stack", "new", "qa", "--backend", "sealed-secrets", "--from", "staging", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert "next: certificate: kubeseal --fetch-cert" in res.stdout and "ksecrets keygen --stack qa" in res.stdout
    assert "KUBECONFIG_QA_READONLY" in res.stdout
    cfg = load_stack_file(repo / "Pulumi.qa.yaml")
    staging = load_stack_file(repo / "Pulumi.staging.yaml")
    assert cfg.backend == "sealed-secrets" and cfg.sealed == () and cfg.sealed_secrets.certificate == "certs/qa.pem"
    assert [a.name for a in cfg.apps] == [a.name for a in staging.apps]
    assert cfg.apps[0].keys == tuple(sorted(staging.sealed[0].keys))  # key names travel, values never
    text = (repo / "Pulumi.qa.yaml").read_text()
    assert "encryptedData" not in text and "Ag" not in text
    # CI previews every stack file, the new one included.
    assert sorted(preview_stacks(repo)) == sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in stack_files(repo))
    if actionlint():
        lint = subprocess.run([actionlint(), str(repo / ".github/workflows/ci.yml")], capture_output=True, text=True)
        assert (lint.returncode, lint.stdout) == (0, ""), lint.stdout
    # It exports.
    exp = ks("export", "--stack", "qa", cwd=repo)
    assert exp.returncode == 0, exp.stderr
    assert (repo / "k8s" / "qa" / "sync" / "kustomization-qa-apps.yaml").exists()


def test_stack_new_vault_from_a_sealed_stack_and_refusals(repo):
    res = ks("stack", "new", "perf", "--backend", "vault", "--from", "staging", cwd=repo)
    assert res.returncode == 0, res.stderr
    cfg = load_stack_file(repo / "Pulumi.perf.yaml")
    assert cfg.backend == "vault" and cfg.apps[0].vault.path == "my-app" and cfg.sealed_secrets.certificate is None
    before = (repo / ".github/workflows/ci.yml").read_text()
    again = ks("stack", "new", "perf", "--backend", "vault", cwd=repo)
    assert again.returncode == 2 and again.stderr == "ksecrets: Pulumi.perf.yaml: already exists\n"
    bad = ks("stack", "new", "Bad_Name", "--backend", "vault", cwd=repo)
    assert bad.returncode == 2 and "a stack name is" in bad.stderr
    missing = ks("stack", "new", "x", "--backend", "vault", "--from", "nope", cwd=repo)
    assert missing.returncode == 2 and "Pulumi.nope.yaml" in missing.stderr
    assert not (repo / "Pulumi.x.yaml").exists()
    assert (repo / ".github/workflows/ci.yml").read_text() == before
    blank = ks("stack", "new", "empty", "--backend", "manual", cwd=repo)
    assert blank.returncode == 0 and load_stack_file(repo / "Pulumi.empty.yaml").apps == ()


def test_app_add(repo):
    res = ks(
        "app",
        "add",
        "--stack",
        "production",
        "--name",
        "billing",
        "--keys",
        "STRIPE_KEY,DB_URL",
        "--image",
        "ghcr.io/example/billing:1.2.3",
        "--port",
        "8080",
        "--env",
        "DATABASE_URL=DB_URL",
        cwd=repo,
    )
    assert res.returncode == 0, res.stderr
    cfg = load_stack_file(repo / "Pulumi.production.yaml")
    (app,) = [a for a in cfg.apps if a.name == "billing"]
    assert (app.namespace, app.secret_name, app.keys, app.vault.path) == (
        "billing",
        "billing-secrets",
        ("STRIPE_KEY", "DB_URL"),
        "billing",
    )
    assert app.deployments[0].env[0].name == "DATABASE_URL" and app.deployments[0].port == 8080
    assert "# Production: HashiCorp Vault" in (repo / "Pulumi.production.yaml").read_text()  # comments kept
    before = (repo / "Pulumi.production.yaml").read_bytes()
    dup = ks("app", "add", "--stack", "production", "--name", "billing", cwd=repo)
    assert dup.returncode == 2 and "already exists" in dup.stderr
    wrong = ks(
        "app",
        "add",
        "--stack",
        "production",
        "--name",
        "web",
        "--keys",
        "A",
        "--image",
        "ghcr.io/example/web:1.0.0",
        "--env",
        "X=NOT_A_KEY",
        cwd=repo,
    )
    assert wrong.returncode == 2 and 'key "NOT_A_KEY" is not in Secret "web-secrets"' in wrong.stderr
    assert (repo / "Pulumi.production.yaml").read_bytes() == before


def test_doctor(repo):
    ok = ks("doctor", cwd=repo)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "staging: ok" in ok.stdout and "production: ok" in ok.stdout
    assert (
        "warning: Pulumi.production.yaml: CronJob my-app/my-app-rotate-api-key reads Secret my-app/vault-ca"
        in ok.stdout
    )

    ks("stack", "new", "qa", "--backend", "sealed-secrets", "--from", "staging", cwd=repo)
    res = ks("doctor", "--stack", "qa", cwd=repo)
    assert res.returncode == 1
    assert res.stdout.splitlines() == [
        "FAIL: Pulumi.qa.yaml: Deployment my-app/my-app reads Secret my-app/my-app-secrets, which no backend "
        "provides (seal it: ksecrets seal --stack qa --name my-app-secrets --from-env-file F)"
    ]
    # Sealing the values settles it.
    (repo / "certs" / "qa.pem").write_text(json.loads(VECTORS.read_text())["certificate_pem"])
    sealed = ks(
        "seal",
        "--stack",
        "qa",
        "--name",
        "my-app-secrets",
        "--from-literal",
        "DATABASE_URL=postgres://x",
        "--from-literal",
        "API_KEY=k-123456789",
        cwd=repo,
    )
    assert sealed.returncode == 0, sealed.stderr
    assert ks("doctor", "--stack", "qa", cwd=repo).returncode == 0


def test_doctor_finds_namespaces_service_accounts_and_orphans(repo):
    text = (repo / "Pulumi.staging.yaml").read_text()
    text += (
        "    - name: leftover\n      namespace: nowhere\n      scope: strict\n"
        "      certificateFingerprint: SHA256:45QhMI4zX78/SffQM/vjypRx8IVlVTbBudths2CIFiY\n"
        f"      encryptedData:\n        K: {sealed_shape()}\n"
    )
    (repo / "Pulumi.staging.yaml").write_text(text)
    res = ks("doctor", "--stack", "staging", cwd=repo)
    lines = res.stdout.splitlines()
    assert res.returncode == 1, res.stdout
    assert (
        "FAIL: Pulumi.staging.yaml: SealedSecret nowhere/leftover: namespace nowhere is not created by this stack "
        "(add it to k8s-secrets:namespaces)" in lines
    )
    assert "warning: Pulumi.staging.yaml: k8s-secrets:sealed[1] nowhere/leftover: no app uses this Secret" in lines


def test_doctor_checks_pod_references_offline():
    """The reference checks on hand-made objects: a missing ServiceAccount and a missing key."""
    from ksecrets.usecases.doctor import _provided, _secret_refs

    pod = {
        "serviceAccountName": "ghost",
        "containers": [
            {
                "envFrom": [{"secretRef": {"name": "a"}}],
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "b", "key": "K", "optional": True}}}],
            }
        ],
        "volumes": [{"name": "v", "secret": {"secretName": "c"}}],
    }
    assert _secret_refs(pod) == [("a", None, False), ("b", "K", True), ("c", None, False)]
    cfg = load_stack_file(ROOT / "Pulumi.staging.yaml")
    ss = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "s", "namespace": "n"},
        "spec": {"encryptedData": {"A": "x"}, "template": {"metadata": {"name": "s2"}}},
    }
    assert _provided([ss], cfg) == {("n", "s2"): {"A"}}
