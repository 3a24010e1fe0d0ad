"""Flux's multi-cluster layout: `clusters/<stack>/` is each cluster's entry point (`flux bootstrap
--path clusters/<stack>`), one Kustomization reconciling `k8s/<stack>/sync`; the exporter writes
exactly the builder's objects, and a cluster (a stack) added or removed changes only its own
folders, proven with real git."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from ksecrets import yamlio
from ksecrets.config import load_stack_file
from ksecrets.usecases.export import MARKER, render
from ksecrets.manifests import flux
from tests.conftest import ROOT, ksecrets_in_process


def _git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": "/usr/bin:/bin",
    }
    res = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return res.stdout


def _changed(repo: Path) -> list[str]:
    """Every path added, changed or removed since the last commit (untracked files too)."""
    _git(repo, "add", "-A")
    return sorted(_git(repo, "diff", "--cached", "--name-only").split())


def _export(repo: Path) -> None:
    res = ksecrets_in_process("export", "--root", str(repo))
    assert res.returncode == 0, res.stderr


def test_the_entry_point_is_the_builders_object_and_references_the_stacks_sync():
    for stack in ("staging", "production"):
        cfg = load_stack_file(ROOT / f"Pulumi.{stack}.yaml")
        (entry,) = flux.cluster_entry(cfg)
        path = ROOT / "clusters" / stack / f"kustomization-{stack}-sync.yaml"
        text = path.read_bytes()
        assert text.startswith(MARKER)
        assert yaml.safe_load(text) == entry  # the committed file is the builder's object
        assert render(cfg).entry == {path.name: text}  # and exactly what the exporter writes
        assert text.split(b"\n", 1)[1] == yamlio.dump(entry).encode()
        assert entry["spec"]["path"] == f"./k8s/{stack}/sync"
        assert entry["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "flux-system"}
        assert entry["spec"]["prune"] is True and entry["spec"]["wait"] is True
        # what it reconciles: the two layer Kustomizations, kept in k8s/<stack>/sync/
        sync = sorted(p.name for p in (ROOT / "k8s" / stack / "sync").glob("*.yaml"))
        assert sync == [f"kustomization-{stack}-apps.yaml", f"kustomization-{stack}-infrastructure.yaml"]
        assert sorted(p.name for p in (ROOT / "clusters" / stack).iterdir()) == [path.name]  # no kustomization.yaml


def test_adding_and_removing_a_cluster_changes_only_its_own_folders(repo_copy):
    _git(repo_copy, "init", "-q", "-b", "main")
    _export(repo_copy)
    assert _changed(repo_copy)  # the copy's first commit
    _git(repo_copy, "commit", "-q", "-m", "fleet")
    _export(repo_copy)
    assert _changed(repo_copy) == []  # export again: nothing

    res = ksecrets_in_process("stack", "new", "prod-eu-2", "--env", "production", "--root", str(repo_copy))
    assert res.returncode == 0, res.stderr
    _git(repo_copy, "add", "-A")
    _git(repo_copy, "commit", "-q", "-m", "stack new prod-eu-2")
    _export(repo_copy)
    added = _changed(repo_copy)
    assert "clusters/prod-eu-2/kustomization-prod-eu-2-sync.yaml" in added
    assert any(p.startswith("k8s/prod-eu-2/apps/") for p in added)
    assert [p for p in added if not p.startswith(("clusters/prod-eu-2/", "k8s/prod-eu-2/"))] == []
    # flux bootstrap --path clusters/prod-eu-2 adds its own folder there
    bootstrap = repo_copy / "clusters/prod-eu-2/flux-system/gotk-sync.yaml"
    bootstrap.parent.mkdir()
    bootstrap.write_text("# written by flux bootstrap\n")
    _git(repo_copy, "add", "-A")
    _git(repo_copy, "commit", "-q", "-m", "export prod-eu-2, bootstrap")

    (repo_copy / "Pulumi.prod-eu-2.yaml").unlink()
    _git(repo_copy, "add", "-A")
    _git(repo_copy, "commit", "-q", "-m", "remove prod-eu-2")
    _export(repo_copy)
    removed = _changed(repo_copy)
    assert removed and sorted(removed) == sorted(
        p for p in added if p != "clusters/prod-eu-2/flux-system/gotk-sync.yaml"
    )
    status = _git(repo_copy, "diff", "--cached", "--name-status")
    assert {line.split()[0] for line in status.splitlines()} == {"D"}  # only deletions
    assert bootstrap.read_text() == "# written by flux bootstrap\n"  # bootstrap's, never the exporter's
    assert not (repo_copy / "k8s/prod-eu-2").exists()
    assert sorted(p.name for p in (repo_copy / "clusters/prod-eu-2").iterdir()) == ["flux-system"]


def test_a_stale_entry_file_is_removed_and_a_users_file_stays(repo_copy):
    mine = repo_copy / "clusters/staging/notes.yaml"
    mine.write_text("# my own notes\n")
    stale = repo_copy / "clusters/staging/kustomization-old.yaml"
    stale.write_text(MARKER.decode() + "from Pulumi.staging.yaml.\nkind: Kustomization\n")
    gone = repo_copy / "clusters/qa/kustomization-qa-sync.yaml"
    gone.parent.mkdir()
    gone.write_text(MARKER.decode() + "from Pulumi.qa.yaml.\nkind: Kustomization\n")
    res = ksecrets_in_process("export", "--root", str(repo_copy), "--check")
    assert res.returncode == 1
    assert res.stdout.splitlines() == [
        "stale: clusters/qa/kustomization-qa-sync.yaml",
        "stale: clusters/staging/kustomization-old.yaml",
    ]
    _export(repo_copy)
    assert not stale.exists() and not gone.parent.exists() and mine.read_text() == "# my own notes\n"
    shutil.rmtree(repo_copy / "clusters")
    res = ksecrets_in_process("export", "--root", str(repo_copy), "--check")
    assert res.returncode == 1 and res.stdout.splitlines() == [
        "missing: clusters/production/kustomization-production-sync.yaml",
        "missing: clusters/staging/kustomization-staging-sync.yaml",
    ]
