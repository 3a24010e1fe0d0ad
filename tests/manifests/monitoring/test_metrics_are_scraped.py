"""Alerts fire only on metrics Prometheus scrapes: every controller whose metrics the
PrometheusRule reads gets telemetry and a ServiceMonitor when monitoring is on, and none when off."""

from __future__ import annotations

import dataclasses

from ksecrets.config import load_stack
from ksecrets.manifests import monitoring, sealed_secrets, vault
from ksecrets.usecases.stack_facts import read_facts
from tests.conftest import ROOT


def _exprs(cfg) -> str:
    return " ".join(r["expr"] for g in monitoring.rule_groups(cfg, read_facts(cfg)) for r in g["rules"])


def test_vault_stack_exposes_and_scrapes_every_metric_source_its_alerts_use():
    cfg = load_stack("production", ROOT)
    exprs = _exprs(cfg)
    for metric in (
        "vault_core_unsealed",
        "vso_client_operations_errors_total",
        "sealed_secrets_controller_unseal_errors_total",
    ):
        assert metric in exprs, metric
    values = vault.vault_values(cfg)
    hcl = values["server"]["ha"]["raft"]["config"]
    assert 'unauthenticated_metrics_access = "true"' in hcl
    assert 'prometheus_retention_time = "30s"' in hcl
    monitor = values["serverTelemetry"]["serviceMonitor"]
    assert monitor["enabled"] is True and monitor["selectors"] == dict(cfg.monitoring.rule_labels)
    assert monitor["tlsConfig"] == {"ca": {"secret": {"name": cfg.vault.tls.secret_name, "key": "ca.crt"}}}
    assert vault.operator_values(cfg)["telemetry"]["serviceMonitor"]["enabled"] is True
    assert sealed_secrets.controller_values(cfg)["metrics"]["serviceMonitor"]["enabled"] is True


def test_no_scraping_when_monitoring_is_off():
    cfg = load_stack("production", ROOT)
    off = dataclasses.replace(cfg, monitoring=dataclasses.replace(cfg.monitoring, enabled=False))
    values = vault.vault_values(off)
    assert "serverTelemetry" not in values
    assert "telemetry" not in values["server"]["ha"]["raft"]["config"]
    assert vault.operator_values(off)["telemetry"]["serviceMonitor"]["enabled"] is False
    assert "metrics" not in sealed_secrets.controller_values(off)
    assert monitoring.rules(off, read_facts(off)) == []
