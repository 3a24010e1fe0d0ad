"""`ksecrets export`: deterministic bytes, drift check, stale files, refusals, atomicity."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from ksecrets.config import load_stack_file
from ksecrets.export import render
from tests.conftest import ROOT


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "k8s").rglob("*")) if p.is_file()}


def test_committed_k8s_is_what_render_writes(cli):
    result = cli("export", "--root", str(ROOT), "--check")
    assert result.code == 0, result.out + result.err


def test_export_is_deterministic_and_idempotent(repo_copy, cli):
    import shutil

    shutil.rmtree(repo_copy / "k8s")
    assert cli("export", "--root", str(repo_copy)).code == 0
    first = _tree(repo_copy)
    assert first, "nothing exported"
    result = cli("export", "--root", str(repo_copy))
    assert result.code == 0
    assert _tree(repo_copy) == first
    assert result.out == ""  # nothing written the second time
    # And a fresh render from scratch gives the same bytes.
    shutil.rmtree(repo_copy / "k8s")
    cli("export", "--root", str(repo_copy))
    assert _tree(repo_copy) == first


def test_layout_one_object_per_file_and_layers(repo_copy, cli):
    assert cli("export", "--root", str(repo_copy)).code == 0
    for stack in ("staging", "production"):
        base = repo_copy / "k8s" / stack
        for layer in ("infrastructure", "apps"):
            kust = yaml.safe_load((base / layer / "kustomization.yaml").read_text())
            files = sorted(p.name for p in (base / layer).glob("*.yaml") if p.name != "kustomization.yaml")
            assert kust["resources"] == files
            for name in files:
                docs = list(yaml.safe_load_all((base / layer / name).read_text()))
                assert len(docs) == 1
                obj = docs[0]
                assert list(obj)[:3] == ["apiVersion", "kind", "metadata"]
                assert name.startswith(f"{obj['kind'].lower()}-") and name.endswith(".yaml")
        infra_kinds = {yaml.safe_load(p.read_text())["kind"] for p in (base / "infrastructure").glob("*-*.yaml")}
        assert {"Namespace", "HelmRepository", "HelmRelease"} <= infra_kinds
        sync = {yaml.safe_load(p.read_text())["metadata"]["name"]: yaml.safe_load(p.read_text())
                for p in (base / "sync").glob("*.yaml")}
        apps = sync[f"{stack}-apps"]
        assert apps["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
        assert apps["spec"]["dependsOn"] == [{"name": f"{stack}-infrastructure"}]
        assert apps["spec"]["wait"] is True and sync[f"{stack}-infrastructure"]["spec"]["wait"] is True
        assert apps["spec"]["path"] == f"./k8s/{stack}/apps"


def test_check_lists_each_differing_file_and_writes_nothing(repo_copy, cli):
    base = repo_copy / "k8s/staging"
    changed = base / "apps/deployment-my-app.yaml"
    changed.write_text(changed.read_text().replace("replicas: 2", "replicas: 5"))
    (base / "apps/role-my-app-secret-reader.yaml").unlink()
    stale = base / "apps/secret-leftover.yaml"
    stale.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leftover}\n")
    before = _tree(repo_copy)
    result = cli("export", "--root", str(repo_copy), "--check")
    assert result.code == 1
    assert result.out.splitlines() == [
        "changed: k8s/staging/apps/deployment-my-app.yaml",
        "missing: k8s/staging/apps/role-my-app-secret-reader.yaml",
        "stale: k8s/staging/apps/secret-leftover.yaml",
    ]
    assert result.err == "ksecrets: 3 file(s) under k8s/ differ from the stack config; run `make render`\n"
    assert _tree(repo_copy) == before


def test_export_removes_stale_files_and_stacks_but_not_flux_bootstrap(repo_copy, cli):
    (repo_copy / "k8s/staging/apps/deployment-old.yaml").write_text("kind: Deployment\n")
    (repo_copy / "k8s/qa/apps").mkdir(parents=True)
    (repo_copy / "k8s/qa/apps/namespace-qa.yaml").write_text("kind: Namespace\n")
    bootstrap = repo_copy / "k8s/staging/sync/flux-system/gotk-sync.yaml"
    bootstrap.parent.mkdir(parents=True)
    bootstrap.write_text("# written by flux bootstrap\n")
    result = cli("export", "--root", str(repo_copy))
    assert result.code == 0
    assert "removed: k8s/staging/apps/deployment-old.yaml" in result.out
    assert "removed: k8s/qa/apps/namespace-qa.yaml" in result.out
    assert not (repo_copy / "k8s/staging/apps/deployment-old.yaml").exists()
    assert not (repo_copy / "k8s/qa").exists()
    assert bootstrap.read_text() == "# written by flux bootstrap\n"


def test_single_stack_export_leaves_other_stacks(repo_copy, cli):
    import shutil

    shutil.rmtree(repo_copy / "k8s")
    assert cli("export", "--root", str(repo_copy), "--stack", "staging").code == 0
    assert (repo_copy / "k8s/staging").is_dir() and not (repo_copy / "k8s/production").exists()


MANUAL_STACK = """\
config:
  k8s-secrets:backend: manual
  k8s-secrets:apps:
    - name: web
      namespace: web
      secretName: web-secrets
      deployments:
        - {name: web, image: "ghcr.io/example/web:1.0.0"}
  k8s-secrets:monitoring: {prometheusOperator: true}
  k8s-secrets:allowPlaceholders: [apps.deployments.image, monitoring.runbookBaseUrl]
  k8s-secrets:manualValues:
    web-secrets:
      PASSWORD:
        secure: v1:AAAABBBBCCCCDDDD
"""


def test_manual_backend_secrets_are_never_exported(tmp_path, cli):
    (tmp_path / "Pulumi.dev.yaml").write_text(MANUAL_STACK)
    assert cli("export", "--root", str(tmp_path)).code == 0
    kinds = [yaml.safe_load(p.read_text())["kind"] for p in (tmp_path / "k8s").rglob("*.yaml")]
    assert "Secret" not in kinds and "Deployment" in kinds
    assert b"v1:AAAA" not in b"".join(p.read_bytes() for p in (tmp_path / "k8s").rglob("*.yaml"))


def test_exporter_refuses_a_secret_with_data(tmp_path, cli, monkeypatch):
    """Defence in depth: even if a builder planned a data-bearing Secret for GitOps."""
    from ksecrets.manifests import manual
    from ksecrets.manifests.plan import Planned

    (tmp_path / "Pulumi.dev.yaml").write_text(MANUAL_STACK)
    original = manual.manual_secrets
    monkeypatch.setattr(manual, "manual_secrets",
                        lambda cfg, values: [Planned(p.obj, p.layer) for p in original(cfg, {"web-secrets": {"PASSWORD": "hunter2"}})])
    result = cli("export", "--root", str(tmp_path))
    assert result.code == 2
    assert result.err == ("ksecrets: Pulumi.dev.yaml: refusing to export Secret web/web-secrets with data: plain Secrets "
                          "are for `pulumi up` only (backend manual); seal the values instead\n")
    assert "hunter2" not in result.err + result.out
    assert not (tmp_path / "k8s").exists()


def test_exporter_refuses_an_object_its_schema_rejects(repo_copy, cli, monkeypatch):
    from ksecrets.manifests import workloads

    original = workloads.deployment

    def broken(cfg, app, d):
        obj = original(cfg, app, d)
        obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 7
        obj["spec"]["replicaz"] = 1
        return obj

    monkeypatch.setattr(workloads, "deployment", broken)
    before = _tree(repo_copy)
    result = cli("export", "--root", str(repo_copy))
    assert result.code == 2
    assert result.err.startswith("ksecrets: k8s/production/apps/deployment-my-app.yaml: Deployment my-app: ")
    assert "(and 1 more)" in result.err
    assert _tree(repo_copy) == before


def test_exporter_refuses_unknown_kinds(repo_copy, cli, monkeypatch):
    from ksecrets.manifests import rbac

    original = rbac.service_account
    monkeypatch.setattr(rbac, "service_account",
                        lambda app: {**original(app), "apiVersion": "example.com/v1", "kind": "Widget"})
    result = cli("export", "--root", str(repo_copy))
    assert result.code == 2
    assert "no schema for example.com/v1 Widget; unknown kinds are not exported" in result.err


def test_render_matches_files_on_disk():
    for stack_file in sorted(ROOT.glob("Pulumi.*.yaml")):
        if stack_file.name == "Pulumi.yaml":
            continue
        cfg = load_stack_file(stack_file)
        for rel, data in render(cfg).files.items():
            assert (ROOT / "k8s" / cfg.stack / rel).read_bytes() == data


def test_sealed_entry_labels_annotations_and_immutable_reach_the_template(repo_copy, cli):
    import yaml as _yaml

    path = repo_copy / "Pulumi.staging.yaml"
    doc = _yaml.safe_load(path.read_text())
    entry = doc["config"]["k8s-secrets:sealed"][0]
    entry.update(labels={"team": "payments"}, annotations={"example.com/owner": "alice"}, immutable=True)
    path.write_text(_yaml.safe_dump(doc, sort_keys=False))
    assert cli("export", "--root", str(repo_copy)).code == 0
    obj = _yaml.safe_load((repo_copy / "k8s/staging/apps/sealedsecret-my-app-secrets.yaml").read_text())
    template = obj["spec"]["template"]
    assert template["metadata"]["labels"] == {"team": "payments"}
    assert template["metadata"]["annotations"]["example.com/owner"] == "alice"
    assert template["immutable"] is True
    entry["labels"] = {"bad key!": "x"}
    path.write_text(_yaml.safe_dump(doc, sort_keys=False))
    result = cli("export", "--root", str(repo_copy))
    assert result.err == 'ksecrets: Pulumi.staging.yaml: sealed[0].labels.bad key!: "bad key!" is not a valid label or annotation key\n'
