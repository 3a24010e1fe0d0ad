"""The PrometheusRule object: CRD schema, placement, metrics that exist, runbook anchors."""

from __future__ import annotations

import dataclasses
import re

import jsonschema
import pytest
import yaml

from ksecrets.errors import KsecretsError
from ksecrets.manifests import monitoring, sealed_secrets
from ksecrets.usecases.stack_facts import read_facts

from .conftest import ROOT

CRD = ROOT / "ksecrets/schemas/crds/prometheus-operator-monitoring.coreos.com_prometheusrules.yaml"

# Every metric an expression may use, each verified in its exporter's source (module docstring).
VERIFIED_METRICS = {
    "sealed_secrets_controller_unseal_errors_total",
    "sealed_secrets_controller_condition_info",
    "vso_client_operations_errors_total",
    "controller_runtime_reconcile_errors_total",
    "vault_core_unsealed",
    "up",
    "apiserver_request_total",
    "kube_job_owner",
    "kube_job_status_start_time",
    "kube_job_failed",
    "kube_cronjob_status_last_successful_time",
}
PROMQL_WORDS = {
    "sum",
    "max",
    "by",
    "on",
    "increase",
    "and",
    "or",
    "unless",
    "group_left",
    "label_replace",
    "vector",
    "time",
}


def _schema():
    # The vendored upstream CRD (tests/usecases/export/test_oracles.py compares it with ../shared when present).
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def test_validates_against_the_crd_schema(vault_cfg, sealed_cfg):
    validator = jsonschema.Draft7Validator(_schema())
    for cfg in (vault_cfg, sealed_cfg):
        (planned,) = monitoring.rules(cfg, read_facts(cfg))
        errors = [e.message for e in validator.iter_errors(planned.obj)]
        assert errors == []


def test_one_rule_per_stack_in_the_monitoring_namespace_with_its_labels(sealed_cfg):
    (planned,) = monitoring.rules(sealed_cfg, read_facts(sealed_cfg))
    assert planned.layer == "apps" and planned.needs == () and planned.gitops
    assert list(planned.obj) == ["apiVersion", "kind", "metadata", "spec"]
    assert planned.obj["metadata"] == {
        "name": "k8s-secrets-sealedmon",
        "namespace": "monitoring",
        "labels": {"app.kubernetes.io/managed-by": "k8s-secrets", "release": "prometheus"},
    }
    assert [g["name"] for g in planned.obj["spec"]["groups"]] == [
        "k8s-secrets.sealedmon.sealed-secrets",
        "k8s-secrets.sealedmon.sealing-certificate",
        "k8s-secrets.sealedmon.secret-access",
    ]


def test_vault_stack_groups(vault_cfg):
    (planned,) = monitoring.rules(vault_cfg, read_facts(vault_cfg))
    assert [(g["name"], [r["alert"] for r in g["rules"]]) for g in planned.obj["spec"]["groups"]] == [
        ("k8s-secrets.rotating.sealed-secrets", ["SealedSecretsUnsealErrors", "SealedSecretNotSynced"]),
        (
            "k8s-secrets.rotating.vault",
            ["VaultSealed", "VaultDown", "VaultSecretsOperatorLoginErrors", "VaultSecretsOperatorSyncErrors"],
        ),
        ("k8s-secrets.rotating.secret-access", ["SecretAccessDenied"]),
        ("k8s-secrets.rotating.secret-rotation", ["SecretRotationJobFailed"]),
    ]


def test_disabled_monitoring_emits_nothing(vault_cfg):
    off = dataclasses.replace(vault_cfg, monitoring=dataclasses.replace(vault_cfg.monitoring, enabled=False))
    assert monitoring.rules(off, read_facts(off)) == []


def test_every_alert_has_severity_summary_description_and_a_runbook_anchor(vault_cfg, sealed_cfg):
    for cfg in (vault_cfg, sealed_cfg):
        for group in monitoring.prometheus_rule(cfg, read_facts(cfg))["spec"]["groups"]:
            for rule in group["rules"]:
                assert rule["labels"]["severity"] in ("warning", "critical")
                assert list(rule["annotations"]) == ["summary", "description", "runbook_url"]
                assert rule["annotations"]["runbook_url"] == (
                    f"{cfg.monitoring.runbook_base_url}#{rule['alert'].lower()}"
                )


def test_expressions_use_only_verified_metrics(vault_cfg, sealed_cfg):
    used = set()
    for cfg in (vault_cfg, sealed_cfg):
        for group in monitoring.prometheus_rule(cfg, read_facts(cfg))["spec"]["groups"]:
            for rule in group["rules"]:
                expr = re.sub(r'"[^"]*"', '""', rule["expr"])  # drop string literals
                expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
                expr = re.sub(r"\b(by|on) \([a-z_, ]*\)", "", expr)  # by (...)/on (...) label lists
                expr = re.sub(r"\[[0-9a-z]+\]", "", expr)  # range selectors
                used |= set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)) - PROMQL_WORDS
    assert used == VERIFIED_METRICS
    # The guide's example metric exists nowhere.
    assert "secret_access_failures" not in str(
        [monitoring.prometheus_rule(c, read_facts(c)) for c in (vault_cfg, sealed_cfg)]
    )


def test_sealed_secrets_alerts_assume_no_honor_labels(vault_cfg):
    # The unseal alerts read the SealedSecret's namespace from `exported_namespace`: right as long as
    # the controller's ServiceMonitor keeps honorLabels unset, which this guards.
    values = sealed_secrets.controller_values(vault_cfg)
    assert "honorLabels" not in values["metrics"]["serviceMonitor"]


def test_sealed_values_without_their_certificate_is_a_one_line_error(sealed_cfg, tmp_path):
    from ksecrets.config.model import SealedEntry

    cfg = dataclasses.replace(
        sealed_cfg,
        root=str(tmp_path),
        sealed=(SealedEntry(name="my-app-secrets", namespace="my-app", encrypted_data=(("API_KEY", "AgB="),)),),
    )
    with pytest.raises(KsecretsError) as err:
        monitoring.rules(cfg, read_facts(cfg))
    assert str(err.value) == (
        "Pulumi.sealedmon.yaml: sealedSecrets.certificate: cert.pem: certificate file not "
        "found (values are sealed with it, and its expiry alert needs its NotAfter)"
    )


def test_no_certificate_yet_no_certificate_group(sealed_cfg, tmp_path):
    cfg = dataclasses.replace(sealed_cfg, root=str(tmp_path))
    names = [g["name"] for g in monitoring.prometheus_rule(cfg, read_facts(cfg))["spec"]["groups"]]
    assert "k8s-secrets.sealedmon.sealing-certificate" not in names


def test_runbook_sections_exist_for_every_alert(vault_cfg, sealed_cfg):
    readme = (ROOT / "README.md").read_text()
    headings = set(re.findall(r"^### (\S+)$", readme, flags=re.M))
    alerts = {
        r["alert"]
        for c in (vault_cfg, sealed_cfg)
        for g in monitoring.prometheus_rule(c, read_facts(c))["spec"]["groups"]
        for r in g["rules"]
    }
    assert alerts and alerts <= headings
    # The runbook_url anchors are GitHub's for those headings: lower-case alert names.
    for c in (vault_cfg, sealed_cfg):
        for g in monitoring.prometheus_rule(c, read_facts(c))["spec"]["groups"]:
            for r in g["rules"]:
                assert r["annotations"]["runbook_url"].endswith("README.md#" + r["alert"].lower())


def test_deterministic(vault_cfg):
    assert (
        monitoring.rules(vault_cfg, read_facts(vault_cfg))[0].obj
        == monitoring.rules(vault_cfg, read_facts(vault_cfg))[0].obj
    )
