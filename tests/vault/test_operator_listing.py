"""`ksecrets.vault.operator.static_secrets`: what `migrate --finish` reads from the cluster before it
uninstalls the operator. The answers here are kubectl's as given to `run` (the real kubectl against a
real API server is tests/e2e/test_flux_migrate_pairs.py); what must not happen is an error read as
"none left"."""

from __future__ import annotations

import json
import subprocess

import pytest

from ksecrets.errors import KsecretsError
from ksecrets.vault import operator


def _answer(rc: int = 0, out: bytes = b"", err: bytes = b""):
    seen: list[list[str]] = []

    def run(argv):
        seen.append(list(argv))
        return subprocess.CompletedProcess(argv, rc, out, err)

    return run, seen


def test_lists_every_static_secret_sorted_with_its_secret():
    items = [
        {"metadata": {"namespace": "web", "name": "web"}, "spec": {"destination": {"name": "web-secrets"}}},
        {"metadata": {"namespace": "api", "name": "db"}, "spec": {"destination": {"name": "db"}}},
    ]
    run, seen = _answer(out=json.dumps({"items": items}).encode())
    got = operator.static_secrets("prod", run=run)
    assert got == [operator.StaticSecret("api", "db", "db"), operator.StaticSecret("web", "web", "web-secrets")]
    assert seen == [["kubectl", "--context", "prod", "get", operator.STATIC_SECRETS, "--all-namespaces", "-o", "json"]]
    assert got[0].orphan_command("prod") == "kubectl --context prod delete vaultstaticsecret -n api db --cascade=orphan"
    run, seen = _answer(out=b'{"items": []}')
    assert operator.static_secrets(None, run=run) == [] and "--context" not in seen[0]


def test_no_crd_is_none_left():
    run, _ = _answer(rc=1, err=b'error: the server doesn\'t have a resource type "vaultstaticsecrets"\n')
    assert operator.static_secrets("prod", run=run) == []


@pytest.mark.parametrize(
    "rc, out, err, message",
    [
        (1, b"", b"Unable to connect to the server: dial tcp 10.0.0.1:443: i/o timeout\n", "i/o timeout"),
        (
            1,
            b"",
            b'Error from server (Forbidden): vaultstaticsecrets is forbidden: User "x" cannot list\n',
            "Forbidden",
        ),
        (0, b"<html>", b"", "not a list of VaultStaticSecrets"),
        (0, b'{"items": [{"metadata": {}}]}', b"", "not a list of VaultStaticSecrets"),
    ],
)
def test_a_cluster_that_cannot_be_asked_is_an_error(rc, out, err, message):
    run, _ = _answer(rc=rc, out=out, err=err)
    with pytest.raises(KsecretsError, match=message) as exc:
        operator.static_secrets("prod", run=run)
    assert "kubectl --context prod get vaultstaticsecrets" in str(exc.value) and "\n" not in str(exc.value)


def test_no_kubectl_is_an_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(KsecretsError, match=r"cannot run \(FileNotFoundError\)"):
        operator.static_secrets("prod")
