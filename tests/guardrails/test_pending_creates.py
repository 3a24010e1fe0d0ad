"""Issue 22 item 3: .ci/pending_creates.py, the recovery's `pulumi refresh` arguments after a killed
`up` (README "Pulumi at a thousand apps"). The real engine runs it in tests/e2e/test_pulumi_crash.py;
here its output, and the README's pipeline through `xargs`, are checked argument by argument."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "pending_creates.py"
URN = "urn:pulumi:crash::k8s-secrets::k8s-secrets:platform:Platform$k8s-secrets:kube:ObjectGroup${t}::{n}"


def _op(kind: str, type_: str, name: str, namespace: str | None = None) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "resource": {
            "urn": URN.format(t=type_, n=f"{namespace}/{name}" if namespace else name),
            "custom": True,
            "type": type_,
            "inputs": {"apiVersion": "v1", "kind": kind, "metadata": meta},
        },
        "type": "creating",
    }


EXPORT = {
    "version": 3,
    "deployment": {
        "manifest": {},
        "resources": [],
        "pending_operations": [
            _op("Namespace", "kubernetes:core/v1:Namespace", "app-1"),
            _op("SealedSecret", "kubernetes:bitnami.com/v1alpha1:SealedSecret", "app-1-secrets", "app-1"),
            # not creates, or not Kubernetes objects: left to --clear-pending-creates / refresh
            {**_op("Role", "kubernetes:rbac.authorization.k8s.io/v1:Role", "r", "app-2"), "type": "updating"},
            {
                "resource": {"urn": "urn:pulumi:crash::k8s-secrets::pulumi:providers:kubernetes::crash-cluster"},
                "type": "creating",
            },
        ],
    },
}


def _run(stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT)], input=stdin, capture_output=True, text=True, timeout=30)


def test_each_pending_create_of_a_kubernetes_object_is_an_import_pair():
    out = _run(json.dumps(EXPORT))
    assert out.returncode == 0, out.stderr
    ns_urn = EXPORT["deployment"]["pending_operations"][0]["resource"]["urn"]
    ss_urn = EXPORT["deployment"]["pending_operations"][1]["resource"]["urn"]
    assert out.stdout.splitlines() == [
        "--import-pending-creates",
        ns_urn,
        "--import-pending-creates",
        "app-1",  # cluster-scoped: the provider's ID is the name
        "--import-pending-creates",
        ss_urn,
        "--import-pending-creates",
        "app-1/app-1-secrets",  # namespaced: <namespace>/<name>
    ]


def test_nothing_pending_prints_nothing():
    for export in ({"version": 3, "deployment": {"resources": []}}, {"deployment": {"pending_operations": None}}):
        out = _run(json.dumps(export))
        assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_not_an_export_is_one_line_and_exit_2():
    for stdin in ("", "[]", "{not json", '{"version": 3}'):
        out = _run(stdin)
        assert out.returncode == 2, stdin
        assert out.stdout == ""
        assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("pending_creates: "), out.stderr


def test_the_readme_pipeline_hands_pulumi_refresh_these_arguments(tmp_path: Path):
    """`pulumi stack export | python3 .ci/pending_creates.py | xargs -d '\\n' pulumi refresh ...`, with
    a stand-in `pulumi` that records its argv one per line; with no pending create, xargs still
    runs the refresh once (GNU xargs)."""
    readme = (ROOT / "README.md").read_text()
    line = "pulumi stack export | python3 .ci/pending_creates.py | xargs -d '\\n' pulumi refresh --yes --clear-pending-creates"
    assert line in readme
    seen = tmp_path / "argv"
    fake = tmp_path / "pulumi"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {seen}\n')
    fake.chmod(0o755)
    for export, pairs in ((EXPORT, 2), ({"deployment": {}}, 0)):
        script = line.replace("pulumi stack export", f"cat {tmp_path / 'export.json'}").replace(
            "python3 .ci/", f"{sys.executable} {ROOT / '.ci'}/"
        )
        (tmp_path / "export.json").write_text(json.dumps(export))
        subprocess.run(["bash", "-c", script], check=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, timeout=30)
        argv = seen.read_text().splitlines()
        assert argv[:3] == ["refresh", "--yes", "--clear-pending-creates"]
        assert argv[3:] == _run(json.dumps(export)).stdout.splitlines()
        assert len(argv[3:]) == 4 * pairs
