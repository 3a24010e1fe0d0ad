"""Every class of config error: one line naming the file and key path, exit code 2, no
traceback, nothing written."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.conftest import ROOT, run_ksecrets

BASE = yaml.safe_load((ROOT / "tests/fixtures/minimal-stack.yaml").read_text())
P = "k8s-secrets:"


def _set(doc, path, value):
    *parents, last = path
    for key in parents:
        doc = doc[key]
    if value is _DELETE:
        del doc[last]
    else:
        doc[last] = value


_DELETE = object()

CASES = [
    # (id, [(path, value)], expected message after "ksecrets: Pulumi.test.yaml: ")
    (
        "bad-secret-name",
        [(("config", P + "apps", 1, "secretName"), "App_Secrets")],
        'apps[1].secretName: "App_Secrets" is not a valid Kubernetes name',
    ),
    ("unknown-top-key", [(("config", P + "backends"), "vault")], 'backends: unknown key (did you mean "backend"?)'),
    (
        "unknown-nested-key",
        [(("config", P + "apps", 0, "secretNmae"), "x")],
        'apps[0].secretNmae: unknown key (did you mean "secretName"?)',
    ),
    (
        "bad-backend",
        [(("config", P + "backend"), "gpg")],
        'backend: "gpg" is not one of manual, sealed-secrets, vault, sops',
    ),
    ("missing-backend", [(("config", P + "backend"), _DELETE)], "backend: is required"),
    ("missing-app-namespace", [(("config", P + "apps", 0, "namespace"), _DELETE)], "apps[0].namespace: is required"),
    (
        "namespace-not-label",
        [(("config", P + "apps", 0, "namespace"), "Web.Team")],
        'apps[0].namespace: "Web.Team" is not a valid Kubernetes name (lower-case DNS-1123 label, at most 63 characters)',
    ),
    ("apps-not-list", [(("config", P + "apps"), {"name": "web"})], "apps: must be a list, not a mapping"),
    (
        "replicas-type",
        [(("config", P + "apps", 0, "deployments", 0, "replicas"), "two")],
        "apps[0].deployments[0].replicas: must be a whole number, not a string",
    ),
    (
        "image-no-tag",
        [(("config", P + "apps", 0, "deployments", 0, "image"), "ghcr.io/example/web")],
        'apps[0].deployments[0].image: "ghcr.io/example/web" has no tag; pin a version (e.g. :1.2.3) or a digest',
    ),
    (
        "image-latest",
        [(("config", P + "apps", 0, "deployments", 0, "image"), "ghcr.io/example/web:latest")],
        'apps[0].deployments[0].image: "ghcr.io/example/web:latest" uses :latest; pin a version or a digest',
    ),
    (
        "chart-range",
        [(("config", P + "sealedSecrets", "chartVersion"), "2.x")],
        "sealedSecrets.chartVersion: \"2.x\" is not a pinned chart version (x.y.z); ranges and 'latest' are not reproducible",
    ),
    # The policy pack's rule (exact SemVer): no `v` prefix, no leading zero, pre-release and build allowed.
    (
        "chart-v-prefix",
        [(("config", P + "sealedSecrets", "chartVersion"), "v2.18.5")],
        "sealedSecrets.chartVersion: \"v2.18.5\" is not a pinned chart version (x.y.z); ranges and 'latest' are not reproducible",
    ),
    (
        "chart-leading-zero",
        [(("config", P + "sealedSecrets", "chartVersion"), "2.018.5")],
        "sealedSecrets.chartVersion: \"2.018.5\" is not a pinned chart version (x.y.z); ranges and 'latest' are not reproducible",
    ),
    (
        "duplicate-app",
        [(("config", P + "apps", 1, "name"), "web"), (("config", P + "apps", 1, "namespace"), "web")],
        'apps[1].name: "web" is already used by apps[0]',
    ),
    (
        "env-key-not-in-secret",
        [(("config", P + "apps", 1, "deployments", 0, "env"), {"TOKEN_X": "NOPE"})],
        'apps[1].deployments[0].env.TOKEN_X: key "NOPE" is not in Secret "api-secrets" (keys: TOKEN)',
    ),
    (
        "bad-env-name",
        [(("config", P + "apps", 1, "deployments", 0, "env"), {"1BAD": "TOKEN"})],
        'apps[1].deployments[0].env.1BAD: "1BAD" is not a valid environment variable name',
    ),
    (
        "cert-required",
        [(("config", P + "sealedSecrets", "certificate"), _DELETE)],
        "sealedSecrets.certificate: is required when backend is sealed-secrets (the public sealing certificate, e.g. certs/<stack>.pem)",
    ),
    (
        "vault-app-needs-path",
        [(("config", P + "backend"), "vault")],
        "apps[0].vault: is required when backend is vault (at least {path: ...})",
    ),
    (
        "bad-duration",
        [(("config", P + "flux"), {"interval": "ten minutes"})],
        'flux.interval: "ten minutes" is not a duration like 30s, 10m or 1h30m',
    ),
]


@pytest.mark.parametrize("case_id,edits,expected", CASES, ids=[c[0] for c in CASES])
def test_config_error_is_one_line_with_file_and_key_path(tmp_path, cli, case_id, edits, expected):
    doc = copy.deepcopy(BASE)
    for path, value in edits:
        _set(doc, path, value)
    (tmp_path / "Pulumi.test.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = cli("export", "--root", str(tmp_path))
    assert result.code == 2
    assert result.err == f"ksecrets: Pulumi.test.yaml: {expected}\n"
    assert result.out == ""
    assert not (tmp_path / "k8s").exists(), "a failed export must write nothing"


def test_base_fixture_is_valid(tmp_path, cli):
    (tmp_path / "Pulumi.test.yaml").write_text(yaml.safe_dump(BASE, sort_keys=False))
    result = cli("export", "--root", str(tmp_path))
    assert result.code == 0, result.err
    assert (tmp_path / "k8s/test/apps/deployment-web.yaml").is_file()


def test_malformed_yaml_names_file_and_line(tmp_path, cli):
    (tmp_path / "Pulumi.test.yaml").write_text("config:\n  k8s-secrets:backend: vault\n  bad: [unclosed\n")
    result = cli("export", "--root", str(tmp_path))
    assert result.code == 2
    assert result.err.startswith("ksecrets: Pulumi.test.yaml: line ")
    assert "invalid YAML" in result.err and result.err.count("\n") == 1


def test_duplicate_yaml_key_is_an_error(tmp_path, cli):
    (tmp_path / "Pulumi.test.yaml").write_text("config:\n  k8s-secrets:backend: vault\n  k8s-secrets:backend: manual\n")
    result = cli("export", "--root", str(tmp_path))
    assert result.code == 2
    assert result.err == "ksecrets: Pulumi.test.yaml: line 3: invalid YAML: duplicate key 'k8s-secrets:backend'\n"


def test_unknown_stack_file_section(tmp_path, cli):
    (tmp_path / "Pulumi.test.yaml").write_text("config:\n  k8s-secrets:backend: manual\nconfg: {}\n")
    result = cli("export", "--root", str(tmp_path))
    assert result.err == 'ksecrets: Pulumi.test.yaml: confg: unknown key (did you mean "config"?)\n'


def test_other_providers_keys_are_left_alone(tmp_path, cli):
    doc = copy.deepcopy(BASE)
    doc["config"]["kubernetes:context"] = "staging-cluster"
    (tmp_path / "Pulumi.test.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    assert cli("export", "--root", str(tmp_path)).code == 0


def test_missing_stack_named(tmp_path, cli):
    result = cli("export", "--root", str(tmp_path), "--stack", "qa")
    assert (result.code, result.err) == (2, "ksecrets: Pulumi.qa.yaml: no such stack file\n")


def test_real_process_prints_no_traceback(tmp_path):
    doc = copy.deepcopy(BASE)
    doc["config"][P + "apps"][1]["secretName"] = "App_Secrets"
    (tmp_path / "Pulumi.test.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = run_ksecrets("export", cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr == 'ksecrets: Pulumi.test.yaml: apps[1].secretName: "App_Secrets" is not a valid Kubernetes name\n'
    )
    assert "Traceback" not in proc.stderr
