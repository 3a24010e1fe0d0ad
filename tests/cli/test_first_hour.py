"""A newcomer's first hour (issue 18): what a new team runs first works as written, through the
real command line on a copy of the repository (real git where the root is found)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ksecrets_in_process

ROOT = Path(__file__).resolve().parents[2]


def ks(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command in-process (tests/conftest.py: ksecrets_in_process): its behaviour is the subject."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KSECRETS_", "SEALED_SECRETS_"))}
    return ksecrets_in_process(*args, cwd=cwd, env=base | (env or {}))


@pytest.fixture
def repo(repo_copy: Path) -> Path:
    shutil.copytree(ROOT / ".ci", repo_copy / ".ci")
    (repo_copy / ".github" / "workflows").mkdir(parents=True)
    shutil.copy2(ROOT / ".github" / "workflows" / "ci.yml", repo_copy / ".github" / "workflows" / "ci.yml")
    return repo_copy


def ci_outputs(repo: Path) -> dict[str, list[dict[str, str]]]:
    out = subprocess.run(
        [sys.executable, str(repo / ".ci" / "stacks.py")], capture_output=True, text=True, check=True
    ).stdout
    return {k: json.loads(v) for k, v in (line.split("=", 1) for line in out.splitlines())}


# --- 1. a new stack renders; doctor fails on whatever export refuses --------------------------


@pytest.mark.parametrize("backend", ["sealed-secrets", "vault", "manual"])
def test_a_new_stack_without_from_renders_with_every_other_stack(repo, backend):
    res = ks("stack", "new", "qa", "--backend", backend, cwd=repo)
    assert res.returncode == 0, res.stderr
    exp = ks("export", cwd=repo)  # make render: every stack, the new one included
    assert exp.returncode == 0, exp.stderr
    assert (repo / "k8s" / "qa" / "sync" / "kustomization-qa-apps.yaml").is_file()
    assert ks("export", "--check", cwd=repo).returncode == 0
    doc = ks("doctor", "--stack", "qa", cwd=repo)
    assert doc.returncode == 0, doc.stdout + doc.stderr


def _break(repo: Path, old: str, new: str) -> None:
    path = repo / "Pulumi.staging.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    "old,new",
    [
        ("    prometheusOperator: true\n", ""),  # a prerequisite not declared
        ("ghcr.io/stefanprodan/podinfo:6.7.1", "ghcr.io/example/podinfo:6.7.1"),  # a placeholder image
        ("  k8s-secrets:allowPlaceholders: [monitoring.runbookBaseUrl]\n", ""),  # a placeholder URL
        ("      namespace: my-app\n", "      namespace: kube-public\n"),  # a system namespace
    ],
    ids=["prerequisite", "image", "url", "namespace"],
)
def test_doctor_fails_on_what_export_refuses_with_the_same_line(repo, old, new):
    _break(repo, old, new)
    exp = ks("export", "--stack", "staging", "--check", cwd=repo)
    assert exp.returncode == 2, exp.stdout + exp.stderr
    refusal = exp.stderr.strip().removeprefix("ksecrets: ")
    doc = ks("doctor", "--stack", "staging", cwd=repo)
    # The same line: a FAIL of the report (exit 1), or the loader's own refusal (exit 2).
    assert (doc.returncode, f"FAIL: {refusal}" in doc.stdout.splitlines()) == (1, True) or (
        doc.returncode,
        doc.stderr.strip(),
    ) == (2, exp.stderr.strip()), doc.stdout + doc.stderr


# --- 2. kubernetes:context, and CI's preview and up from the stack files ----------------------


def test_stack_new_writes_a_context_and_ci_previews_and_deploys_it(repo):
    res = ks("stack", "new", "qa", "--backend", "sealed-secrets", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert "added to CI's preview matrix" not in res.stdout
    assert "kubernetes:context: qa" in res.stdout and "KUBECONFIG_QA_READONLY" in res.stdout
    doc = yaml.safe_load((repo / "Pulumi.qa.yaml").read_text())
    assert doc["config"]["kubernetes:context"] == "qa"
    # The preview job's script finds the context (it exited 1 on a new stack before).
    ctx = subprocess.run([sys.executable, str(repo / ".ci" / "stacks.py"), "--context", "qa"], capture_output=True)
    assert (ctx.returncode, ctx.stdout) == (0, b"qa\n"), ctx.stderr
    res = ks("stack", "new", "prod-eu", "--backend", "vault", "--from", "production", "--context", "eu-1", cwd=repo)
    assert res.returncode == 0, res.stderr
    ctx = subprocess.run([sys.executable, str(repo / ".ci" / "stacks.py"), "--context", "prod-eu"], capture_output=True)
    assert ctx.stdout == b"eu-1\n"
    outputs = ci_outputs(repo)
    assert {e["stack"] for e in outputs["matrix"]} == {"qa", "staging", "production", "prod-eu"}
    # Deployed too, one at a time: a new stack first, production's copy after production.
    assert [e["stack"] for e in outputs["up"]] == ["qa", "staging", "prod-eu", "production"]
    # ci.yml is left alone: both jobs read the listing.
    assert (repo / ".github/workflows/ci.yml").read_bytes() == (ROOT / ".github/workflows/ci.yml").read_bytes()
    bad = ks("stack", "new", "qb", "--backend", "manual", "--context", "a b", cwd=repo)
    assert bad.returncode == 2 and not (repo / "Pulumi.qb.yaml").exists()


def test_the_up_job_lists_its_stacks_from_the_stack_files():
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    up = doc["jobs"]["up"]
    assert up["strategy"]["matrix"] == {"include": "${{ fromJSON(needs.stacks.outputs.up) }}"}
    assert "stacks" in up["needs"]


# --- 5. the project folder is found from a subdirectory ---------------------------------------


def test_commands_find_the_project_folder_from_a_subdirectory(repo):
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    deep = repo / "apps" / "billing"
    deep.mkdir(parents=True)
    res = ks("stack", "new", "qa", "--backend", "manual", cwd=deep)
    assert res.returncode == 0, res.stderr
    assert (repo / "Pulumi.qa.yaml").is_file() and not list(deep.iterdir())
    for argv in (["doctor", "--stack", "qa"], ["verify"], ["export", "--check"]):
        res = ks(*argv, cwd=deep)
        assert res.returncode in (0, 1) and "no stack files" not in res.stderr, (argv, res.stderr)
    assert ks("export", cwd=deep).returncode == 0 and (repo / "k8s" / "qa").is_dir() and not (deep / "k8s").exists()
    # --root still decides.
    other = repo / "elsewhere"
    other.mkdir()
    res = ks("stack", "new", "qb", "--backend", "manual", "--root", str(other), cwd=deep)
    assert res.returncode == 0, res.stderr
    assert (other / "Pulumi.qb.yaml").is_file() and not (repo / "Pulumi.qb.yaml").exists()


def test_every_root_flag_defaults_to_the_found_project_folder():
    from ksecrets.cli import SUBCOMMANDS, build_parser

    def walk(parser):
        for action in parser._actions:
            if "--root" in action.option_strings:
                yield parser.prog, action
            if isinstance(action.choices, dict):
                for sub in action.choices.values():
                    yield from walk(sub)

    found = list(walk(build_parser()))
    assert len({prog for prog, _ in found}) >= 15 and len(SUBCOMMANDS) > 10
    for prog, action in found:
        assert action.default is None and "Pulumi.yaml" in action.help, prog


# --- 3. a key backup needs no rotation ----------------------------------------------------------


def _key_backup_stack(repo: Path, image: str) -> None:
    res = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"], capture_output=True, check=True
    )
    pub = subprocess.run(["openssl", "pkey", "-pubout"], input=res.stdout, capture_output=True, check=True).stdout
    (repo / "certs" / "staging-keybackup.pub").write_bytes(pub)
    _break(
        repo,
        "    certificate: certs/staging.pem\n",
        f"    certificate: certs/staging.pem\n    keyBackup: {{publicKey: certs/staging-keybackup.pub, image: {image}}}\n",
    )


def test_key_backup_on_a_stack_without_rotation_renders(repo):
    assert "rotation" not in (repo / "Pulumi.staging.yaml").read_text()
    _key_backup_stack(repo, "registry.acme.io/ksecrets-keybackup:0.1.0")
    exp = ks("export", "--stack", "staging", cwd=repo)
    assert exp.returncode == 0, exp.stderr
    cron = yaml.safe_load((repo / "k8s/staging/infrastructure/cronjob-sealing-key-backup.yaml").read_text())
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.acme.io/ksecrets-keybackup:0.1.0"
    assert ks("doctor", "--stack", "staging", cwd=repo).returncode == 0


def test_a_placeholder_key_backup_image_is_named_by_its_own_key(repo):
    _key_backup_stack(repo, "ghcr.io/example/ksecrets-keybackup:0.1.0")
    exp = ks("export", "--stack", "staging", "--check", cwd=repo)
    assert exp.returncode == 2
    assert "sealedSecrets.keyBackup.image:" in exp.stderr and "rotation.image" not in exp.stderr
    _break(repo, "[monitoring.runbookBaseUrl]", "[monitoring.runbookBaseUrl, sealedSecrets.keyBackup.image]")
    assert ks("export", "--stack", "staging", "--check", cwd=repo).returncode == 1  # renders; k8s/ differs


# --- 4. plaintext env files are ignored by git, templates are not -------------------------------


def test_gitignore_ignores_every_env_file_scan_knows_and_keeps_templates(tmp_path):
    from ksecrets.scan import TEMPLATE_SUFFIXES, is_env_file_name

    shutil.copy2(ROOT / ".gitignore", tmp_path / ".gitignore")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    stems = [".env", ".env.staging", ".env.production", ".env.qa-eu", ".ENV.Staging", "prod.env", "deploy/app.env"]
    stems += ["sub/dir/.env.local", ".env.staging.bak", "x.ENV"]
    names = stems + [s + t for s in stems for t in TEMPLATE_SUFFIXES] + ["README.md", "environment.yaml", "env"]
    res = subprocess.run(
        ["git", "-C", str(tmp_path), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(names) + "\n",
        capture_output=True,
        text=True,
    )
    ignored = set(res.stdout.splitlines())
    for name in names:
        template = name.lower().endswith(TEMPLATE_SUFFIXES)
        assert (name in ignored) == (is_env_file_name(name) and not template), name
    assert {".env.staging", ".env.production", ".env"} <= ignored  # what the README has users create
    # And the repository tracks no such file.
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True)
    assert not [n for n in tracked.stdout.splitlines() if is_env_file_name(n)]


# --- 6. sealing into a vault or manual stack names the backend and the command that applies -------


def test_seal_into_a_vault_or_manual_stack_names_the_backend_and_the_command(repo):
    before = (repo / "Pulumi.production.yaml").read_bytes()
    res = ks("seal", "--stack", "production", "--name", "my-app-secrets", "--from-literal", "API_KEY=x" * 3, cwd=repo)
    assert res.returncode == 2 and res.stdout == ""
    (line,) = res.stderr.splitlines()
    assert "backend is vault" in line and "certificate file not found" not in line
    assert "ksecrets vault push --stack production --path my-app --from-env-file" in line
    assert (repo / "Pulumi.production.yaml").read_bytes() == before
    assert ks("stack", "new", "qa", "--backend", "manual", "--from", "staging", cwd=repo).returncode == 0
    res = ks("seal", "--stack", "qa", "--name", "my-app-secrets", "--from-literal", "K=vvvvvvvv", cwd=repo)
    assert res.returncode == 2
    assert "backend is manual" in res.stderr and "certificate file not found" not in res.stderr
    assert "pulumi config set --secret --path 'manualValues.my-app-secrets.KEY'" in res.stderr


# --- 7. keygen names only stacks; a misspelt namespace is refused -------------------------------


@pytest.mark.parametrize(
    "stack,expected",
    [("Prod_EU", "cannot be used in Kubernetes object names"), ("stagin", 'did you mean "staging"')],
)
def test_keygen_refuses_what_is_no_stack(repo, tmp_path, stack, expected):
    env = {"KSECRETS_BACKUP_PASSPHRASE": "correct horse battery staple", "KSECRETS_BACKUP_SCRYPT_LOG2_N": "10"}
    res = ks("keygen", "--stack", stack, "--backup-file", str(tmp_path / "k.ksbackup"), cwd=repo, env=env)
    assert res.returncode == 2 and expected in res.stderr, res.stderr
    assert not (tmp_path / "k.ksbackup").exists() and not (repo / "certs" / f"{stack}.pem").exists()


@pytest.mark.parametrize("namespace", ["k8s-secret", "K8s-Secrets", "k8ssecrets", "ksecrets", "k8-secrets"])
def test_a_misspelt_namespace_is_refused_with_did_you_mean(repo, namespace):
    _break(repo, "  k8s-secrets:monitoring:\n", f"  {namespace}:monitoring:\n")
    for argv in (["export", "--stack", "staging", "--check"], ["doctor", "--stack", "staging"]):
        res = ks(*argv, cwd=repo)
        assert res.returncode == 2, res.stdout + res.stderr
        assert res.stderr == (
            f'ksecrets: Pulumi.staging.yaml: {namespace}:monitoring: unknown namespace (did you mean "k8s-secrets:monitoring"?)\n'
        )


def test_other_namespaces_stay_allowed(repo):
    _break(repo, "  ci:upOrder: 1\n", "  ci:upOrder: 1\n  aws:region: eu-west-1\n  kubernetes:kubeconfig: x\n")
    assert ks("export", "--stack", "staging", "--check", cwd=repo).returncode == 0


# --- 8. after `stack split`, messages name the file that changed -----------------------------------


def test_after_split_messages_name_the_included_file(repo):
    assert ks("stack", "split", "--stack", "staging", cwd=repo).returncode == 0
    stack_file = (repo / "Pulumi.staging.yaml").read_bytes()
    res = ks("seal", "--stack", "staging", "--name", "my-app-secrets", "--from-literal", "NEW_KEY=abcdefgh12", cwd=repo)
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "stacks/staging/sealed.yaml: my-app/my-app-secrets" in out and "Pulumi.staging.yaml" not in out
    res = ks("rotate", "--stack", "staging", "--name", "my-app-secrets", "--key", "NEW_KEY", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert "stacks/staging/sealed.yaml: my-app/my-app-secrets: rotated NEW_KEY" in res.stdout
    assert "commit stacks/staging/sealed.yaml and k8s/staging/" in res.stdout and "Pulumi." not in res.stdout
    res = ks("app", "add", "--stack", "staging", "--name", "billing", "--image", "registry.acme.io/b:1.2.3", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("stacks/staging/apps.yaml: app billing/billing added")
    assert (repo / "Pulumi.staging.yaml").read_bytes() == stack_file  # indeed unchanged


# --- 10. labels and probes of what is exported ----------------------------------------------------


def test_every_exported_object_carries_managed_by_and_the_secret_keeps_its_own_labels(repo):
    from ksecrets.manifests.plan import MANAGED_BY

    objs = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "k8s").rglob("*.yaml"))]
    objs = [o for o in objs if o.get("kind") != "Kustomization" or "metadata" in o]
    sealed = [o for o in objs if o["kind"] == "SealedSecret"]
    assert sealed
    for o in objs:
        assert MANAGED_BY.items() <= (o["metadata"].get("labels") or {}).items(), (o["kind"], o["metadata"]["name"])
    # The controller builds the Secret's metadata from spec.template only (Unseal: template
    # ObjectMeta, then name and namespace): its labels stay exactly the entry's.
    from ksecrets.config import load_stack_file

    staging = load_stack_file(ROOT / "Pulumi.staging.yaml")
    for o in sealed:
        entry = staging.sealed_entry(o["metadata"]["namespace"], o["metadata"]["name"])
        assert (o["spec"]["template"]["metadata"].get("labels") or {}) == dict(entry.labels)
    # An entry with labels of its own: those go to the Secret, managed-by to the SealedSecret only.
    from ksecrets.manifests.sealed_secrets import sealed_secret

    labelled = dataclasses_replace(staging.sealed[0], labels=(("team", "payments"),))
    obj = sealed_secret(staging, labelled)
    assert obj["spec"]["template"]["metadata"]["labels"] == {"team": "payments"}
    assert obj["metadata"]["labels"] == MANAGED_BY


def dataclasses_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_deployments_have_probes_on_their_http_port(repo):
    for stack in ("staging", "production"):
        dep = yaml.safe_load((ROOT / "k8s" / stack / "apps" / "deployment-my-app.yaml").read_text())
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        # podinfo serves /readyz and /healthz on its HTTP port (9898, the image's default; no command set).
        assert c["image"].startswith("ghcr.io/stefanprodan/podinfo:") and "command" not in c and "args" not in c
        assert c["ports"] == [{"name": "http", "containerPort": 9898, "protocol": "TCP"}]
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["livenessProbe"]["periodSeconds"] > c["readinessProbe"]["periodSeconds"]
    # An app that names no path gets a TCP check of its port; one without a port gets none.
    res = ks("app", "add", "--stack", "staging", "--name", "billing", "--image", "registry.acme.io/b:1.2.3",
             "--port", "8080", cwd=repo)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert ks("export", "--stack", "staging", cwd=repo).returncode == 0
    dep = yaml.safe_load((repo / "k8s/staging/apps/deployment-billing.yaml").read_text())
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["readinessProbe"]["tcpSocket"] == {"port": "http"} and c["livenessProbe"]["tcpSocket"] == {"port": "http"}
