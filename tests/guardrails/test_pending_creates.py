"""Issue 22 item 3: .ci/pending_creates.py, which makes a killed `up`'s creates in flight resources
of the state before `pulumi refresh` (README "Pulumi at a thousand apps"). The real engine runs it
in tests/e2e/test_pulumi_crash.py (the edited state is imported, refreshed and converges); here
its edit, field by field, and the README's pipeline."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "pending_creates.py"
PROVIDER = "urn:pulumi:crash::k8s-secrets::pulumi:providers:kubernetes::crash-cluster::04da6b54"
GROUP = "urn:pulumi:crash::k8s-secrets::k8s-secrets:platform:Platform$k8s-secrets:kube:ObjectGroup::crash-apps"


def _resource(kind: str, type_: str, name: str, namespace: str | None = None) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "urn": f"{GROUP.replace('::crash-apps', '')}${type_}::{namespace + '/' if namespace else ''}{name}",
        "custom": True,
        "type": type_,
        "inputs": {"apiVersion": "v1", "kind": kind, "metadata": meta},
        "parent": GROUP,
        "provider": PROVIDER,
        "dependencies": [GROUP],
    }


NS = _resource("Namespace", "kubernetes:core/v1:Namespace", "app-1")
SS = _resource("SealedSecret", "kubernetes:bitnami.com/v1alpha1:SealedSecret", "app-1-secrets", "app-1")
ROLE = _resource("Role", "kubernetes:rbac.authorization.k8s.io/v1:Role", "r", "app-2")
DONE = {**_resource("ServiceAccount", "kubernetes:core/v1:ServiceAccount", "sa", "app-0"), "id": "app-0/sa"}
EXPORT = {
    "version": 3,
    "deployment": {
        "manifest": {"time": "2026-12-07T02:00:00Z"},
        "resources": [DONE],
        "pending_operations": [
            {"resource": NS, "type": "creating"},
            {"resource": SS, "type": "creating"},
            {"resource": ROLE, "type": "updating"},  # not a create: dropped by `stack import`, redone by up
            {"resource": {"urn": PROVIDER, "custom": True, "type": "pulumi:providers:kubernetes"}, "type": "creating"},
        ],
    },
}


def _run(stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT)], input=stdin, capture_output=True, text=True, timeout=30)


def test_each_pending_create_of_a_kubernetes_object_becomes_a_resource_with_its_id():
    out = _run(json.dumps(EXPORT))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["version"] == 3 and got["deployment"]["manifest"] == EXPORT["deployment"]["manifest"]
    assert got["deployment"]["resources"] == [
        DONE,
        {**NS, "id": "app-1", "outputs": {}},  # cluster-scoped: the provider's ID is the name
        {**SS, "id": "app-1/app-1-secrets", "outputs": {}},  # namespaced: <namespace>/<name>
    ]
    # What is left pending is what `pulumi stack import` drops.
    assert got["deployment"]["pending_operations"] == EXPORT["deployment"]["pending_operations"][2:]
    assert out.stderr == "pending_creates: 2 pending creates of Kubernetes objects made resources\n"


def test_nothing_pending_leaves_the_export_as_it_is():
    for export in ({"version": 3, "deployment": {"resources": [DONE]}}, EXPORT | {"deployment": {"resources": []}}):
        out = _run(json.dumps(export))
        assert out.returncode == 0 and json.loads(out.stdout) == export
        assert "0 pending creates" in out.stderr


def test_a_pending_create_whose_urn_is_already_a_resource_is_left_pending():
    export = copy.deepcopy(EXPORT)
    export["deployment"]["resources"].append({**SS, "id": "app-1/app-1-secrets"})
    got = json.loads(_run(json.dumps(export)).stdout)
    assert [r["urn"] for r in got["deployment"]["resources"]].count(SS["urn"]) == 1


def test_not_an_export_is_one_line_exit_2_and_nothing_to_import():
    for stdin in ("", "[]", "{not json", '{"version": 3}', '{"deployment": []}'):
        out = _run(stdin)
        assert out.returncode == 2, stdin
        assert out.stdout == ""
        assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("pending_creates: "), out.stderr


def test_the_readme_pipeline(tmp_path: Path):
    """The README's line, with a stand-in `pulumi` whose `stack export` prints EXPORT and whose
    `stack import` keeps what it reads: it imports exactly the script's edit."""
    line = "pulumi stack export | python3 .ci/pending_creates.py | pulumi stack import"
    assert line in (ROOT / "README.md").read_text()
    (tmp_path / "export.json").write_text(json.dumps(EXPORT))
    fake = tmp_path / "pulumi"
    fake.write_text(
        f'#!/bin/sh\ncase "$2" in export) cat {tmp_path}/export.json ;; import) cat > {tmp_path}/imported ;; esac\n'
    )
    fake.chmod(0o755)
    script = "set -o pipefail; " + line.replace("python3 .ci/", f"{sys.executable} {ROOT / '.ci'}/")
    subprocess.run(["bash", "-c", script], check=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, timeout=30)
    assert json.loads((tmp_path / "imported").read_text()) == json.loads(_run(json.dumps(EXPORT)).stdout)
