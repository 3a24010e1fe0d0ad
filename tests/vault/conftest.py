"""Fixtures: a fake Vault at the HTTP boundary (`responses`) and an hvac client pointed at it."""

from __future__ import annotations

import pytest
import responses

from ksecrets.vault.client import make_client
from tests.vault.fakevault import ADDR, FakeVault

ENV = {"VAULT_ADDR": ADDR, "VAULT_TOKEN": "test-token"}


@pytest.fixture
def rsps():
    # Anything not registered (a typo'd URL) is a ConnectionError, so no request escapes.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


@pytest.fixture
def vault(rsps) -> FakeVault:
    return FakeVault(rsps)


@pytest.fixture
def client(vault):
    return make_client(env=ENV)


@pytest.fixture
def vault_env(monkeypatch, tmp_path):
    """The CLI's environment: VAULT_ADDR/VAULT_TOKEN set, HOME without a token file."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    for k in ("VAULT_CACERT", "VAULT_NAMESPACE", "VAULT_SKIP_VERIFY"):
        monkeypatch.delenv(k, raising=False)
    return ENV
