"""One PrometheusRule per stack, with alerts built only on metrics that exist upstream.

Every metric and label below is read from its exporter's source (see README "Monitoring"):

- Sealed Secrets controller (`pkg/controller/metrics.go`): `sealed_secrets_controller_unseal_errors_total`
  {reason, namespace} and `sealed_secrets_controller_condition_info` {namespace, name, condition},
  -1 for False, 0 unknown, 1 True; the SealedSecret condition type is `Synced`. The chart's
  ServiceMonitor does not set `honorLabels` (nor does `sealed_secrets.controller_values`), so
  Prometheus keeps the scrape target's `namespace` (the controller's) and renames the metric's own
  `namespace` (the SealedSecret's) to `exported_namespace`.
- Vault Secrets Operator: `vso_client_operations_errors_total` {operation, vault_connection}
  (`internal/vault/client_metrics.go`; operation `login` counts failed Vault logins) and
  controller-runtime's `controller_runtime_reconcile_errors_total` {controller}, where the
  VaultStaticSecret and VaultDynamicSecret controllers are `vaultstaticsecret`/`vaultdynamicsecret`.
- Vault telemetry: `vault_core_unsealed` (1 unsealed, 0 sealed; every node), and `up` of the scrape
  job: a sealed or starting Vault may not answer `/v1/sys/metrics` at all.
- kube-apiserver: `apiserver_request_total` {verb, dry_run, group, version, resource, subresource, scope,
  component, code}: no namespace label, so 403s on `secrets` are counted cluster-wide by verb.
- kube-state-metrics: `kube_job_failed` {namespace, job_name, condition} (the Job's Failed
  condition: "true" once `backoffLimit` or `activeDeadlineSeconds` is spent), `kube_job_owner`
  {namespace, job_name, owner_kind, owner_name, owner_is_controller}, `kube_job_status_start_time`
  and `kube_cronjob_status_last_successful_time` {namespace, cronjob}.
- The sealing certificate's NotAfter is known when rendering, so its expiry is `time()` against a
  constant: no exporter needed.

The guide's example (`secret_access_failures` with a `secret_name` label) exists nowhere; it is not
used. Each alert has `severity`, `summary`, `description` and a `runbook_url` that points at the
`### <AlertName>` section of README.md.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from ksecrets.config.model import StackConfig
from ksecrets.manifests import rotation
from ksecrets.manifests.facts import StackFacts
from ksecrets.manifests.plan import Manifest, Planned, metadata

API_VERSION = "monitoring.coreos.com/v1"
KIND = "PrometheusRule"
# Counters are judged over this window: long enough for two scrapes at the usual 30s-1m interval.
WINDOW = "10m"
VSO_CONTROLLERS = ("vaultstaticsecret", "vaultdynamicsecret")


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str
    summary: str
    description: str
    for_: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


def rule_name(cfg: StackConfig) -> str:
    return f"k8s-secrets-{cfg.stack}"


def runbook_url(cfg: StackConfig, alert: str) -> str:
    # GitHub's anchor for a "### Name" heading is the lower-cased name.
    return f"{cfg.monitoring.runbook_base_url}#{alert.lower()}"


_RE2_SPECIAL = set(".^$*+?()[]{}|\\")


def _regex_alternation(values: list[str]) -> str:
    """`a|b` for a PromQL `=~` matcher: RE2 metacharacters escaped, and the backslash doubled
    because the regex sits in a double-quoted PromQL string. (Kubernetes names are [a-z0-9.-].)"""
    return "|".join("".join("\\\\" + c if c in _RE2_SPECIAL else c for c in v) for v in values)


# --- the alerts, per concern ---------------------------------------------------------------------


def sealed_secrets_alerts(cfg: StackConfig, facts: StackFacts) -> list[Alert]:
    ns = cfg.sealed_secrets.controller_namespace
    return [
        Alert(
            name="SealedSecretsUnsealErrors",
            expr=(
                f"sum by (exported_namespace, reason) (increase(sealed_secrets_controller_unseal_errors_total"
                f'{{namespace="{ns}"}}[{WINDOW}])) > 0'
            ),
            severity="warning",
            summary="The Sealed Secrets controller fails to unseal SealedSecrets",
            description=(
                "The controller in {ns} failed to unseal a SealedSecret in namespace "
                "{{{{ $labels.exported_namespace }}}} (reason {{{{ $labels.reason }}}}) in the last {w}. "
                "Its Secret keeps its previous value or does not exist."
            ).format(ns=ns, w=WINDOW),
        ),
        Alert(
            name="SealedSecretNotSynced",
            expr=(
                f"max by (exported_namespace, name) (sealed_secrets_controller_condition_info"
                f'{{namespace="{ns}", condition="Synced"}}) == -1'
            ),
            for_="10m",
            severity="warning",
            summary="A SealedSecret is not synced to its Secret",
            description=(
                "SealedSecret {{ $labels.exported_namespace }}/{{ $labels.name }} has condition "
                "Synced=False: the controller could not decrypt it or could not write its Secret."
            ),
        ),
    ]


def certificate_alerts(cfg: StackConfig, facts: StackFacts) -> list[Alert]:
    """The committed sealing certificate's expiry, as `time()` against its NotAfter (the facts
    carry it, read by `ksecrets.usecases.stack_facts`; none before anything is sealed)."""
    cert = facts.certificate
    if cert is None:
        return []
    path = cert.path
    not_after = int(cert.not_after.timestamp())
    when = cert.not_after.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    days = cfg.monitoring.certificate_expiry_warning_days
    labels = (("certificate", path),)
    left = f"vector(({not_after} - time()) / 86400)"  # days left, as a one-element vector
    return [
        Alert(
            name="SealingCertificateExpiresSoon",
            expr=f"{left} < {days} and {left} >= 0",
            severity="warning",
            summary="The sealing certificate expires soon",
            description=(
                f"{path} (fingerprint {cert.fingerprint}) expires on {when}, in "
                '{{ $value | printf "%.0f" }} days. kubeseal refuses an expired certificate; '
                "fetch the controller's current one and commit it."
            ),
            labels=labels,
        ),
        Alert(
            name="SealingCertificateExpired",
            expr=f"{left} < 0",
            severity="critical",
            summary="The sealing certificate has expired",
            description=(
                f"{path} (fingerprint {cert.fingerprint}) expired on {when}. "
                "New values cannot be sealed with it; fetch the controller's current certificate."
            ),
            labels=labels,
        ),
    ]


def vault_alerts(cfg: StackConfig, facts: StackFacts) -> list[Alert]:
    if not cfg.installs_vault or cfg.vault is None:
        return []
    vns = cfg.vault.namespace
    ons = cfg.vault.operator.namespace
    controllers = _regex_alternation(list(VSO_CONTROLLERS))
    return [
        Alert(
            name="VaultSealed",
            expr=f'vault_core_unsealed{{namespace="{vns}"}} == 0',
            for_="1m",
            severity="critical",
            summary="A Vault server is sealed",
            description=(
                "Vault pod {{ $labels.pod }} in " + vns + " is sealed: it serves no secrets until "
                "it is unsealed. The operator keeps the last synced Secrets."
            ),
        ),
        Alert(
            name="VaultDown",
            expr=f'up{{namespace="{vns}", job=~"vault.*"}} == 0',
            for_="5m",
            severity="critical",
            summary="Vault does not answer its metrics scrape",
            description=(
                "Prometheus cannot scrape {{ $labels.instance }} (job {{ $labels.job }}) in "
                + vns
                + ": the pod is down, not ready, or sealed and refusing /v1/sys/metrics."
            ),
        ),
        Alert(
            name="VaultSecretsOperatorLoginErrors",
            expr=(
                f"sum by (vault_connection) (increase(vso_client_operations_errors_total"
                f'{{namespace="{ons}", operation="login"}}[{WINDOW}])) > 0'
            ),
            severity="warning",
            summary="The Vault Secrets Operator fails to log in to Vault",
            description=(
                "Logins through VaultConnection {{ $labels.vault_connection }} failed in the last "
                + WINDOW
                + ": check the VaultAuth role, the ServiceAccount bound to it and the audience."
            ),
        ),
        Alert(
            name="VaultSecretsOperatorSyncErrors",
            expr=(
                f"sum by (controller) (increase(controller_runtime_reconcile_errors_total"
                f'{{namespace="{ons}", controller=~"{controllers}"}}[{WINDOW}])) > 0'
            ),
            severity="warning",
            summary="The Vault Secrets Operator fails to sync secrets",
            description=(
                "The {{ $labels.controller }} controller failed to reconcile in the last "
                + WINDOW
                + ": a destination Secret may be stale."
            ),
        ),
    ]


def access_alerts(cfg: StackConfig, facts: StackFacts) -> list[Alert]:
    return [
        Alert(
            name="SecretAccessDenied",
            expr=(f'sum by (verb) (increase(apiserver_request_total{{code="403", resource="secrets"}}[{WINDOW}])) > 0'),
            severity="warning",
            summary="Requests for Secrets are being denied",
            description=(
                'The API server refused {{ $value | printf "%.0f" }} {{ $labels.verb }} request(s) on '
                "secrets in the last " + WINDOW + ": a workload lacks access it expects, or something "
                "probes for Secrets it must not read. The audit log names the user."
            ),
        ),
    ]


def rotation_alerts(cfg: StackConfig, facts: StackFacts) -> list[Alert]:
    names = rotation.cronjob_names(cfg)
    if not names:
        return []
    namespaces = _regex_alternation(sorted({ns for ns, _ in names}))
    cronjobs = _regex_alternation(sorted({n for _, n in names}))
    # A rotation Job whose Failed condition is True (its retries are spent: a pod that failed and was
    # retried successfully does not count), with its CronJob as owner_name and its start time as
    # the value...
    failed = (
        f"max by (namespace, owner_name, job_name) ("
        f'kube_job_owner{{owner_kind="CronJob", namespace=~"{namespaces}", owner_name=~"{cronjobs}"}} '
        f"* on (namespace, job_name) group_left() max by (namespace, job_name) (kube_job_status_start_time) "
        f'and on (namespace, job_name) (max by (namespace, job_name) (kube_job_failed{{condition="true"}}) == 1))'
    )
    last_success = (
        "label_replace(max by (namespace, cronjob) (kube_cronjob_status_last_successful_time), "
        '"owner_name", "$1", "cronjob", "(.+)")'
    )
    # ...that started after the CronJob's last success (or the CronJob never succeeded). A later
    # success resolves the alert even while the failed Job is kept in history.
    expr = (
        f"({failed} > on (namespace, owner_name) group_left() {last_success}) "
        f"or ({failed} unless on (namespace, owner_name) {last_success})"
    )
    return [
        Alert(
            name="SecretRotationJobFailed",
            expr=expr,
            severity="warning",
            summary="A secret rotation Job failed",
            description=(
                "Job {{ $labels.namespace }}/{{ $labels.job_name }} of CronJob {{ $labels.owner_name }} "
                "failed and no run has succeeded since: the old value is still in use (the rotator "
                "keeps the old pair when it fails). Read the Job's log."
            ),
        ),
    ]


def disaster_recovery_alerts(cfg: StackConfig, facts: StackFacts) -> list[Alert]:
    """VaultSnapshotTooOld from kube-state-metrics facts about the snapshot CronJob: its last
    success (reached only after the snapshot file is written, fsynced and renamed) is older than
    `vault.snapshots.maxAge`, or it has existed that long without any success."""
    from ksecrets.manifests import keybackup, snapshots

    out = key_backup_alerts(cfg) if keybackup.enabled(cfg) else []
    if not snapshots.enabled(cfg):
        return out
    assert cfg.vault is not None and cfg.vault.snapshots is not None
    sel = f'namespace="{cfg.vault.namespace}", cronjob="{snapshots.NAME}"'
    age = cfg.vault.snapshots.max_age_seconds
    last = f"max by (namespace, cronjob) (kube_cronjob_status_last_successful_time{{{sel}}})"
    created = f"max by (namespace, cronjob) (kube_cronjob_created{{{sel}}})"
    expr = f"(time() - {last} > {age}) or ((time() - {created} > {age}) unless on (namespace, cronjob) {last})"
    hours = f"{age / 3600:g}h"
    return out + [
        Alert(
            name="VaultSnapshotTooOld",
            expr=expr,
            for_="10m",
            severity="critical",
            summary="The newest Vault raft snapshot is older than its schedule allows",
            description=(
                f"CronJob {{{{ $labels.namespace }}}}/{{{{ $labels.cronjob }}}} has not saved a raft "
                f"snapshot in the last {hours}: a disaster now would lose every change since the last one."
            ),
        ),
    ]


def key_backup_alerts(cfg: StackConfig) -> list[Alert]:
    """SealingKeyNotBackedUp: the newest sealing key Secret is not covered by a key-backup run.
    A run that succeeded saved every key it listed; it listed them at most its active deadline
    before its success time, so a key created later than (last success - deadline) is not proven
    saved. kube-state-metrics: `kube_secret_created{namespace, secret}` (the controller names its
    keys `sealed-secrets-key<random>`) and the CronJob's `kube_cronjob_status_last_successful_time`."""
    from ksecrets.manifests import keybackup

    kb = cfg.sealed_secrets.key_backup
    assert kb is not None
    ns = cfg.sealed_secrets.controller_namespace
    newest = f'max by (namespace) (kube_secret_created{{namespace="{ns}", secret=~"sealed-secrets-key.+"}})'
    last = (
        f'max by (namespace) (kube_cronjob_status_last_successful_time{{namespace="{ns}", cronjob="{keybackup.NAME}"}})'
    )
    expr = (
        f"({newest} > on (namespace) ({last} - {keybackup.ACTIVE_DEADLINE_SECONDS})) "
        f"or ({newest} unless on (namespace) {last})"
    )
    return [
        Alert(
            name="SealingKeyNotBackedUp",
            expr=expr,
            for_=f"{kb.max_delay_seconds // 60}m",
            severity="critical",
            summary="The newest sealing key is in no backup",
            description=(
                f"The newest sealing key Secret in {ns} was created after the last successful run of "
                f"CronJob {keybackup.NAME} (or it never succeeded): losing the cluster now would lose "
                "the key that unseals every SealedSecret sealed since."
            ),
        )
    ]


# Each group: (cfg, facts) → its alerts.
GROUPS = (
    ("sealed-secrets", sealed_secrets_alerts),
    ("sealing-certificate", certificate_alerts),
    ("vault", vault_alerts),
    ("secret-access", access_alerts),
    ("secret-rotation", rotation_alerts),
    ("disaster-recovery", disaster_recovery_alerts),
)


def alert_rule(cfg: StackConfig, alert: Alert) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": alert.name, "expr": alert.expr}
    if alert.for_:
        rule["for"] = alert.for_
    rule["labels"] = {"severity": alert.severity, "stack": cfg.stack, **dict(alert.labels)}
    rule["annotations"] = {
        "summary": alert.summary,
        "description": alert.description,
        "runbook_url": runbook_url(cfg, alert.name),
    }
    return rule


def rule_groups(cfg: StackConfig, facts: StackFacts) -> list[dict[str, Any]]:
    """The `spec.groups` of the stack's PrometheusRule: also what `promtool` reads as a rule file."""
    groups = []
    for suffix, build in GROUPS:
        alerts = build(cfg, facts)
        if alerts:
            groups.append({"name": f"k8s-secrets.{cfg.stack}.{suffix}", "rules": [alert_rule(cfg, a) for a in alerts]})
    return groups


def prometheus_rule(cfg: StackConfig, facts: StackFacts) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata(rule_name(cfg), cfg.monitoring.namespace, labels=dict(cfg.monitoring.rule_labels)),
        "spec": {"groups": rule_groups(cfg, facts)},
    }


def rules(cfg: StackConfig, facts: StackFacts) -> list[Planned]:
    """The stack's PrometheusRule (layer "apps"), or nothing when monitoring is disabled.

    The CRD comes from the Prometheus Operator, which is not one of this project's HelmReleases:
    the stack declares it (`monitoring.prometheusOperator: true`); with `false` the rule is left
    out, and undeclared, export and preview refuse (`ksecrets.usecases.preflight`).
    """
    if not cfg.monitoring.operator_objects:
        return []
    return [Planned(prometheus_rule(cfg, facts), "apps")]
