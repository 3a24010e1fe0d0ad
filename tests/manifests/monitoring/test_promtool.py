"""The exported rule groups, checked and exercised by the real promtool.

The rule file is written from `monitoring.prometheus_rule(cfg, read_facts(cfg))["spec"]["groups"]`, the very
groups that are exported. Every alert has a case: series on which it must fire (with its exact
labels and expanded annotations) and healthy series on which it must stay silent.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ksecrets import yamlio
from ksecrets.manifests import monitoring
from ksecrets.usecases.stack_facts import read_facts

KS = 'namespace="kube-system", job="sealed-secrets-controller", instance="10.0.0.9:8081"'
VSO = (
    'namespace="vault-secrets-operator-system", job="vault-secrets-operator-metrics-service", instance="10.0.0.7:8443"'
)
BASE = "https://github.com/example/k8s-secrets/blob/main/README.md"
JOB = "my-app-rotate-api-key-29412345"
KSM = 'job="kube-state-metrics", instance="10.0.0.3:8080"'


def s(series: str, values: str) -> dict:
    return {"series": series, "values": values}


# alert -> (stack fixture, eval time, firing series, expected labels, expected description,
#           healthy series[, interval])
CASES: dict[str, dict] = {
    "SealedSecretsUnsealErrors": dict(
        stack="vault",
        at="20m",
        firing=[
            s(
                f'sealed_secrets_controller_unseal_errors_total{{{KS}, exported_namespace="my-app", reason="unseal"}}',
                "0x10 1+1x10",
            )
        ],
        labels={"exported_namespace": "my-app", "reason": "unseal"},
        description=(
            "The controller in kube-system failed to unseal a SealedSecret in namespace my-app (reason unseal) "
            "in the last 10m. Its Secret keeps its previous value or does not exist."
        ),
        healthy=[
            s(
                f'sealed_secrets_controller_unseal_errors_total{{{KS}, exported_namespace="my-app", reason="unseal"}}',
                "3x20",
            ),
            # another controller's errors (not the stack's namespace) are not ours
            s(
                'sealed_secrets_controller_unseal_errors_total{namespace="other", job="x", instance="y", '
                'exported_namespace="my-app", reason="unseal"}',
                "0x10 1+1x10",
            ),
        ],
    ),
    "SealedSecretNotSynced": dict(
        stack="vault",
        at="20m",
        firing=[
            s(
                f'sealed_secrets_controller_condition_info{{{KS}, exported_namespace="my-app", name="my-app-secrets", '
                f'condition="Synced"}}',
                "1x5 -1x15",
            )
        ],
        labels={"exported_namespace": "my-app", "name": "my-app-secrets"},
        description=(
            "SealedSecret my-app/my-app-secrets has condition Synced=False: the controller could not "
            "decrypt it or could not write its Secret."
        ),
        healthy=[
            s(
                f'sealed_secrets_controller_condition_info{{{KS}, exported_namespace="my-app", name="my-app-secrets", '
                f'condition="Synced"}}',
                "1x20",
            ),
            # unknown (0) is not False
            s(
                f'sealed_secrets_controller_condition_info{{{KS}, exported_namespace="my-app", name="other", '
                f'condition="Synced"}}',
                "0x20",
            ),
        ],
    ),
    "VaultSealed": dict(
        stack="vault",
        at="10m",
        firing=[
            s(
                'vault_core_unsealed{namespace="vault", pod="vault-0", job="vault-internal", instance="10.0.0.5:8200"}',
                "1x5 0x5",
            )
        ],
        labels={"namespace": "vault", "pod": "vault-0", "job": "vault-internal", "instance": "10.0.0.5:8200"},
        description=(
            "Vault pod vault-0 in vault is sealed: it serves no secrets until it is unsealed. "
            "The operator keeps the last synced Secrets."
        ),
        healthy=[
            s(
                'vault_core_unsealed{namespace="vault", pod="vault-0", job="vault-internal", instance="10.0.0.5:8200"}',
                "1x10",
            )
        ],
    ),
    "VaultDown": dict(
        stack="vault",
        at="20m",
        firing=[s('up{namespace="vault", job="vault-internal", instance="10.0.0.5:8200", pod="vault-0"}', "1x5 0x15")],
        labels={"namespace": "vault", "job": "vault-internal", "instance": "10.0.0.5:8200", "pod": "vault-0"},
        description=(
            "Prometheus cannot scrape 10.0.0.5:8200 (job vault-internal) in vault: the pod is down, "
            "not ready, or sealed and refusing /v1/sys/metrics."
        ),
        healthy=[
            s('up{namespace="vault", job="vault-internal", instance="10.0.0.5:8200", pod="vault-0"}', "1x20"),
            s('up{namespace="vault", job="node-exporter", instance="10.0.0.5:9100"}', "0x20"),
        ],
    ),
    "VaultSecretsOperatorLoginErrors": dict(
        stack="vault",
        at="20m",
        firing=[
            s(
                f'vso_client_operations_errors_total{{{VSO}, operation="login", '
                f'vault_connection="vault-secrets-operator-system/vault"}}',
                "0x10 1+1x10",
            )
        ],
        labels={"vault_connection": "vault-secrets-operator-system/vault"},
        description=(
            "Logins through VaultConnection vault-secrets-operator-system/vault failed in the last 10m: "
            "check the VaultAuth role, the ServiceAccount bound to it and the audience."
        ),
        healthy=[
            s(
                f'vso_client_operations_errors_total{{{VSO}, operation="login", '
                f'vault_connection="vault-secrets-operator-system/vault"}}',
                "2x20",
            ),
            s(
                f'vso_client_operations_errors_total{{{VSO}, operation="renew", '
                f'vault_connection="vault-secrets-operator-system/vault"}}',
                "0x10 1+1x10",
            ),
        ],
    ),
    "VaultSecretsOperatorSyncErrors": dict(
        stack="vault",
        at="20m",
        firing=[
            s(f'controller_runtime_reconcile_errors_total{{{VSO}, controller="vaultstaticsecret"}}', "0x10 0+2x10")
        ],
        labels={"controller": "vaultstaticsecret"},
        description="The vaultstaticsecret controller failed to reconcile in the last 10m: a destination Secret may be stale.",
        healthy=[
            s(f'controller_runtime_reconcile_errors_total{{{VSO}, controller="vaultstaticsecret"}}', "5x20"),
            s(f'controller_runtime_reconcile_errors_total{{{VSO}, controller="vaultconnection"}}', "0x10 0+2x10"),
            s(
                'controller_runtime_reconcile_errors_total{namespace="flux-system", job="x", instance="y", '
                'controller="vaultstaticsecret"}',
                "0x10 0+2x10",
            ),
        ],
    ),
    "SecretAccessDenied": dict(
        stack="vault",
        at="20m",
        firing=[
            s(
                'apiserver_request_total{job="apiserver", instance="10.0.0.1:6443", code="403", resource="secrets", '
                'verb="LIST", group="", version="v1", scope="namespace", component="apiserver"}',
                "0x10 0+1x10",
            )
        ],
        labels={"verb": "LIST"},
        description=(
            "The API server refused 9 LIST request(s) on secrets in the last 10m: a workload lacks access "
            "it expects, or something probes for Secrets it must not read. The audit log names the user."
        ),
        healthy=[
            s(
                'apiserver_request_total{job="apiserver", instance="10.0.0.1:6443", code="200", resource="secrets", '
                'verb="GET", group="", version="v1", scope="resource", component="apiserver"}',
                "0x10 0+50x10",
            ),
            s(
                'apiserver_request_total{job="apiserver", instance="10.0.0.1:6443", code="403", resource="configmaps", '
                'verb="LIST", group="", version="v1", scope="namespace", component="apiserver"}',
                "0x10 0+1x10",
            ),
            s(
                'apiserver_request_total{job="apiserver", instance="10.0.0.1:6443", code="403", resource="secrets", '
                'verb="LIST", group="", version="v1", scope="namespace", component="apiserver"}',
                "7x20",
            ),
        ],
    ),
    "SecretRotationJobFailed": dict(
        stack="vault",
        at="20m",
        firing=[
            s(
                f'kube_job_owner{{{KSM}, namespace="my-app", job_name="{JOB}", owner_kind="CronJob", '
                f'owner_name="my-app-rotate-api-key", owner_is_controller="true"}}',
                "1x20",
            ),
            s(f'kube_job_status_start_time{{{KSM}, namespace="my-app", job_name="{JOB}"}}', "600x20"),
            s(f'kube_job_failed{{{KSM}, namespace="my-app", job_name="{JOB}", condition="true"}}', "0x15 1x5"),
            # the last success was before this Job started
            s(
                f'kube_cronjob_status_last_successful_time{{{KSM}, namespace="my-app", cronjob="my-app-rotate-api-key"}}',
                "60x20",
            ),
        ],
        labels={"namespace": "my-app", "owner_name": "my-app-rotate-api-key", "job_name": JOB},
        description=(
            f"Job my-app/{JOB} of CronJob my-app-rotate-api-key failed and no run has succeeded since: "
            "the old value is still in use (the rotator keeps the old pair when it fails). Read the Job's log."
        ),
        healthy=[
            s(
                f'kube_job_owner{{{KSM}, namespace="my-app", job_name="{JOB}", owner_kind="CronJob", '
                f'owner_name="my-app-rotate-api-key", owner_is_controller="true"}}',
                "1x20",
            ),
            s(f'kube_job_status_start_time{{{KSM}, namespace="my-app", job_name="{JOB}"}}', "600x20"),
            s(f'kube_job_failed{{{KSM}, namespace="my-app", job_name="{JOB}", condition="true"}}', "0x15 1x5"),
            # a later run succeeded: the failed Job stays in history, the alert does not
            s(
                f'kube_cronjob_status_last_successful_time{{{KSM}, namespace="my-app", cronjob="my-app-rotate-api-key"}}',
                "60x15 1100x5",
            ),
            # some other CronJob's failed Job is not a rotation
            s(
                f'kube_job_owner{{{KSM}, namespace="my-app", job_name="backup-1", owner_kind="CronJob", '
                f'owner_name="backup", owner_is_controller="true"}}',
                "1x20",
            ),
            s(f'kube_job_status_start_time{{{KSM}, namespace="my-app", job_name="backup-1"}}', "600x20"),
            s(f'kube_job_failed{{{KSM}, namespace="my-app", job_name="backup-1", condition="true"}}', "1x20"),
            # a rotation Job still retrying after a failed pod (no Failed condition yet)
            s(
                f'kube_job_owner{{{KSM}, namespace="my-app", job_name="my-app-rotate-api-key-2", owner_kind="CronJob", '
                f'owner_name="my-app-rotate-api-key", owner_is_controller="true"}}',
                "1x20",
            ),
            s(
                f'kube_job_status_start_time{{{KSM}, namespace="my-app", job_name="my-app-rotate-api-key-2"}}',
                "1150x20",
            ),
            s(f'kube_job_status_failed{{{KSM}, namespace="my-app", job_name="my-app-rotate-api-key-2"}}', "1x20"),
            s(
                f'kube_job_failed{{{KSM}, namespace="my-app", job_name="my-app-rotate-api-key-2", condition="false"}}',
                "1x20",
            ),
        ],
    ),
    # promtool's clock starts at the epoch; the fixture certificate is valid for 40 days from it.
    "SealingCertificateExpiresSoon": dict(
        stack="sealed",
        at="15d",
        interval="1h",
        firing=[],
        labels={"certificate": "cert.pem"},
        description_prefix="cert.pem (fingerprint SHA256:",
        description_suffix=(
            "expires on 1970-02-10 00:00 UTC, in 25 days. kubeseal refuses an expired certificate; "
            "fetch the controller's current one and commit it."
        ),
        healthy=[],
        healthy_at="9d",
    ),
    "SealingCertificateExpired": dict(
        stack="sealed",
        at="41d",
        interval="1h",
        firing=[],
        labels={"certificate": "cert.pem"},
        description_prefix="cert.pem (fingerprint SHA256:",
        description_suffix=(
            "expired on 1970-02-10 00:00 UTC. New values cannot be sealed with it; "
            "fetch the controller's current certificate."
        ),
        healthy=[],
        healthy_at="39d",
    ),
}


def alerts_of(cfg) -> dict[str, dict]:
    return {
        r["alert"]: r for g in monitoring.prometheus_rule(cfg, read_facts(cfg))["spec"]["groups"] for r in g["rules"]
    }


def write_rule_file(cfg, path: Path) -> Path:
    groups = monitoring.prometheus_rule(cfg, read_facts(cfg))["spec"]["groups"]
    path.write_text(yamlio.dump({"groups": groups}))
    return path


def test_every_alert_has_a_case_and_every_case_an_alert(vault_cfg, sealed_cfg):
    exported = set(alerts_of(vault_cfg)) | set(alerts_of(sealed_cfg))
    assert exported == set(CASES)


@pytest.mark.oracle
@pytest.mark.parametrize("which,count", [("vault", 8), ("sealed", 5)])
def test_promtool_check_rules(promtool, tmp_path, vault_cfg, sealed_cfg, which, count):
    cfg = {"vault": vault_cfg, "sealed": sealed_cfg}[which]
    rules = write_rule_file(cfg, tmp_path / "rules.yaml")
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {count} rules found" in done.stdout


@pytest.mark.oracle
@pytest.mark.parametrize("stack", ["staging", "production"])
def test_promtool_check_rules_for_the_repository_stacks(promtool, tmp_path, stack):
    from ksecrets.config.load import load_stack

    from .conftest import ROOT

    rules = write_rule_file(load_stack(stack, ROOT), tmp_path / "rules.yaml")
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _test_groups(name: str, case: dict, rule: dict, stack: str) -> list[dict]:
    annotations = {
        "summary": rule["annotations"]["summary"],
        "description": case.get("description", ""),
        "runbook_url": f"{BASE if stack == 'vault' else 'https://git.example.org/platform/k8s-secrets/blob/main/README.md'}#{name.lower()}",
    }
    labels = {
        "severity": rule["labels"]["severity"],
        "stack": "rotating" if stack == "vault" else "sealedmon",
        **case["labels"],
    }
    firing = {"alertname": name, "eval_time": case["at"], "exp_alerts": [{"exp_labels": labels}]}
    if "description" in case:
        firing["exp_alerts"][0]["exp_annotations"] = annotations
    groups = [
        {
            "name": f"{name} fires",
            "interval": case.get("interval", "1m"),
            "input_series": case["firing"],
            "alert_rule_test": [firing],
        },
        {
            "name": f"{name} stays silent",
            "interval": case.get("interval", "1m"),
            "input_series": case["healthy"],
            "alert_rule_test": [{"alertname": name, "eval_time": case.get("healthy_at", case["at"]), "exp_alerts": []}],
        },
    ]
    return groups


def _run_promtool_tests(promtool, tmp_path, cfg, stack, names, evaluation_interval="1m") -> subprocess.CompletedProcess:
    write_rule_file(cfg, tmp_path / "rules.yaml")
    rules = alerts_of(cfg)
    tests = []
    for name in names:
        tests += _test_groups(name, CASES[name], rules[name], stack)
    (tmp_path / "tests.yaml").write_text(
        yamlio.dump({"rule_files": ["rules.yaml"], "evaluation_interval": evaluation_interval, "tests": tests})
    )
    return subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)


@pytest.mark.oracle
def test_promtool_every_alert_fires_on_failure_and_is_silent_when_healthy(promtool, tmp_path, vault_cfg):
    names = sorted(n for n, c in CASES.items() if c["stack"] == "vault")
    done = _run_promtool_tests(promtool, tmp_path, vault_cfg, "vault", names)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.oracle
def test_promtool_certificate_alerts(promtool, tmp_path, sealed_cfg):
    # The description holds the certificate's fingerprint (random key), so the expected
    # description is completed from it here; the rest is written out in CASES.
    from ksecrets.sealing.certs import load_certificate

    fingerprint = load_certificate(Path(sealed_cfg.root) / "cert.pem", allow_expired=True).fingerprint
    for name in ("SealingCertificateExpiresSoon", "SealingCertificateExpired"):
        case = CASES[name]
        case["description"] = (
            f"{case['description_prefix']}{fingerprint[len('SHA256:') :]}) {case['description_suffix']}"
        )
    done = _run_promtool_tests(
        promtool,
        tmp_path,
        sealed_cfg,
        "sealed",
        ["SealingCertificateExpiresSoon", "SealingCertificateExpired"],
        evaluation_interval="1h",
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.oracle
def test_promtool_catches_a_broken_rule(promtool, tmp_path, vault_cfg, monkeypatch):
    """Negative control: the same cases fail once an expression watches a condition that does not exist."""
    original = monitoring.sealed_secrets_alerts

    def broken(cfg, facts):
        alerts = original(cfg, facts)
        import dataclasses

        return [dataclasses.replace(a, expr=a.expr.replace('condition="Synced"', 'condition="Ready"')) for a in alerts]

    monkeypatch.setattr(
        monitoring, "GROUPS", tuple((n, broken if n == "sealed-secrets" else f) for n, f in monitoring.GROUPS)
    )
    done = _run_promtool_tests(promtool, tmp_path, vault_cfg, "vault", ["SealedSecretNotSynced"])
    assert done.returncode == 1
    assert "SealedSecretNotSynced fires" in done.stdout + done.stderr


@pytest.mark.oracle
def test_promtool_rotation_alert_fires_when_the_cronjob_never_succeeded(promtool, tmp_path, vault_cfg):
    case = dict(CASES["SecretRotationJobFailed"])
    case["firing"] = [
        x for x in case["firing"] if not x["series"].startswith("kube_cronjob_status_last_successful_time")
    ]
    write_rule_file(vault_cfg, tmp_path / "rules.yaml")
    groups = _test_groups("SecretRotationJobFailed", case, alerts_of(vault_cfg)["SecretRotationJobFailed"], "vault")
    (tmp_path / "tests.yaml").write_text(
        yamlio.dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": groups[:1]})
    )
    done = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
