"""`components.vault_config`: the bootstrap as a Pulumi dynamic resource.

The provider's create/diff/update run for real against the fake Vault; the resource itself is
registered under `pulumi.runtime.set_mocks` (no engine runs a dynamic provider there), which is
where we check that no token or password reaches the inputs."""

from __future__ import annotations

from pathlib import Path

from components.vault_config import (
    SECRET_OUTPUTS,
    VaultBootstrap,
    VaultBootstrapProvider,
    bootstrap_inputs,
    config_from_inputs,
)
from ksecrets.config.load import load_stack, load_stack_file
from tests.pulumi_harness import run_program
from tests.vault.conftest import ENV

PROD_ROOT = Path(__file__).parent / "fixtures" / "production"  # frozen production stack

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
HOST = "https://10.0.0.1:6443"
DB_PASSWORD = "db-admin-password-never-in-state"


def test_inputs_round_trip_to_the_same_config():
    cfg = load_stack_file(FIXTURES / "Pulumi.vaultdb.yaml")
    back = config_from_inputs(bootstrap_inputs(cfg))
    assert back.vault == cfg.vault and back.apps == cfg.apps and back.stack == "vaultdb"


def test_create_configures_vault_and_a_second_create_writes_nothing(vault):
    cfg = load_stack("production", PROD_ROOT)
    provider = VaultBootstrapProvider(env=dict(ENV))
    props = bootstrap_inputs(cfg, kube_host=HOST)
    created = provider.create(props)
    assert created.id == "vault-bootstrap-production"
    assert created.outs["changed"] == [
        "secrets engine secret/ (kv v2)",
        "auth method kubernetes/ (kubernetes)",
        f"auth kubernetes/config (host {HOST})",
        "policy ksecrets-my-app",
        "role my-app (my-app/my-app)",
        "audit device file/ (/vault/audit/vault-audit.log)",
    ]
    assert len(vault.writes()) == 6
    vault.log.clear()
    updated = provider.update(created.id, created.outs, props)
    assert vault.writes() == []
    assert updated.outs["changed"] == [] and len(updated.outs["unchanged"]) == 6


def test_diff_follows_the_inputs():
    cfg = load_stack("production", PROD_ROOT)
    provider = VaultBootstrapProvider(env={})
    olds = bootstrap_inputs(cfg, kube_host=HOST)
    assert provider.diff("id", {**olds, "changed": ["x"]}, bootstrap_inputs(cfg, kube_host=HOST)).changes is False
    moved = provider.diff("id", olds, bootstrap_inputs(cfg, kube_host="https://elsewhere:6443"))
    assert moved.changes is True and moved.replaces == []


def test_the_password_and_token_never_reach_the_outputs(vault):
    cfg = load_stack_file(FIXTURES / "Pulumi.vaultdb.yaml")
    provider = VaultBootstrapProvider(env={**ENV, "KSECRETS_DB_ADMIN_PASSWORD": DB_PASSWORD})
    outs = provider.create(bootstrap_inputs(cfg, kube_host=HOST)).outs
    text = repr(outs)
    assert DB_PASSWORD not in text and ENV["VAULT_TOKEN"] not in text
    assert ("POST", "database/config/orders-db") in [(m, p) for m, p, _ in vault.writes()]
    assert SECRET_OUTPUTS == []  # nothing in the outputs is secret; see the module docstring


def test_registered_under_mocks_with_plain_inputs_only(monkeypatch):
    monkeypatch.setenv("VAULT_TOKEN", "hvs.token-from-the-environment")
    monkeypatch.setenv("KSECRETS_DB_ADMIN_PASSWORD", DB_PASSWORD)
    cfg = load_stack("production", PROD_ROOT)
    mocks, _ = run_program(lambda: VaultBootstrap("production-vault-config", cfg, kube_host=HOST), stack="production")
    [res] = [r for r in mocks.resources if r.name == "production-vault-config"]
    assert res.type == "pulumi-python:dynamic:Resource"
    assert {k: res.inputs[k] for k in ("stack", "backend", "kubeHost", "kubeCaPem")} == {
        "stack": "production",
        "backend": "vault",
        "kubeHost": HOST,
        "kubeCaPem": "",
    }
    assert res.inputs["vault"]["kv_mount"] == "secret"
    assert [a["name"] for a in res.inputs["apps"]] == ["my-app"]
    flat = repr(res.inputs)
    assert "hvs.token-from-the-environment" not in flat and DB_PASSWORD not in flat
