"""Rotation CronJobs: one `batch/v1` CronJob per app and schedule, running `python -m ksecrets.rotate`.

The keys of one app that share a schedule are rotated by one run, in one kv-v2 version: the
Vault Secrets Operator updates the Secret once and restarts the app once. The rotator enforces
the stack's `rotation.minInterval` between two rotations of one app (`--min-interval`).

Only the vault backend rotates inside the cluster. A SealedSecret can only be made with the
sealing certificate and committed to Git, so a pod cannot rotate it; that is `ksecrets rotate`
on a workstation (and a commit). Manual-backend values live in Pulumi config; same story.

Least privilege:
- each app gets its own `<app>-rotator` ServiceAccount with `automountServiceAccountToken: false`
  and no Kubernetes RBAC at all: the rotator never talks to the Kubernetes API. It logs in to
  Vault with a short-lived projected token whose audience is the stack's Vault audience, and the
  Vault role `<app>-rotator` (created by `ksecrets vault bootstrap`) is what allows it to write
  one kv path;
- the PostgreSQL admin credentials come from the `adminSecret` Secret through `secretKeyRef`
  (the kubelet reads it; the ServiceAccount needs no `get` on secrets);
- the restricted Pod Security Standard, field for field, on the pod and the container.

Failures surface as a failed Job (non-zero exit, `backoffLimit` retries), which the
`SecretRotationJobFailed` alert in `ksecrets.manifests.monitoring` watches.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ksecrets.config.model import App, RotationSpec, StackConfig
from ksecrets.manifests.plan import Manifest, Planned, metadata
from ksecrets.manifests.workloads import CONTAINER_SECURITY_CONTEXT, POD_SECURITY_CONTEXT

COMPONENT = "secret-rotation"
TOKEN_DIR = "/var/run/secrets/ksecrets/vault"
TOKEN_FILE = f"{TOKEN_DIR}/token"
TOKEN_EXPIRATION_SECONDS = 600  # the API server's minimum; a rotation takes seconds
CA_DIR = "/etc/ksecrets/vault-ca"

TIME_ZONE = "Etc/UTC"
STARTING_DEADLINE_SECONDS = 3600  # a run missed by more than an hour waits for the next slot
BACKOFF_LIMIT = 2  # three attempts: each attempt is safe to repeat (see ksecrets.rotate)
ACTIVE_DEADLINE_SECONDS = 600
# Longer than the default weekly period, so a failed Job (and its alert) outlives the next
# scheduled attempt; the history limits still cap how many are kept.
TTL_SECONDS_AFTER_FINISHED = 8 * 24 * 3600

_CRONJOB_NAME_MAX = 52  # CronJob names: the controller appends an 11-character suffix for Jobs


def rotator_name(app: App) -> str:
    """The app's rotator's one name: its ServiceAccount and the Vault kubernetes-auth role it logs
    in as (`ksecrets vault bootstrap` binds that role to that ServiceAccount)."""
    return f"{app.name}-rotator"


def rotator_service_account_name(app: App) -> str:
    return rotator_name(app)


def vault_role(app: App) -> str:
    """The Vault kubernetes-auth role the rotator logs in as (bound to its ServiceAccount)."""
    return rotator_name(app)


def _slug(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-") or "key"


def cronjob_name(app: App, spec: RotationSpec) -> str:
    """`<app>-rotate-<key>` in DNS form (`API_KEY` → `my-app-rotate-api-key`). When two of the
    app's keys share a slug (`API_KEY`, `api-key`) or the name is too long, a short hash of the
    key keeps it unique."""
    slug = _slug(spec.key)
    name = f"{app.name}-rotate-{slug}"
    shared = sum(1 for other in app.rotation if _slug(other.key) == slug) > 1
    if len(name) <= _CRONJOB_NAME_MAX and not shared:
        return name
    digest = hashlib.sha256(spec.key.encode()).hexdigest()[:6]
    head = name[: _CRONJOB_NAME_MAX - 7].rstrip("-")
    return f"{head}-{digest}"


def groups(app: App) -> list[tuple[RotationSpec, ...]]:
    """The app's rotation specs grouped by schedule, in order of first appearance."""
    by_schedule: dict[str, list[RotationSpec]] = {}
    for spec in app.rotation:
        by_schedule.setdefault(spec.schedule, []).append(spec)
    return [tuple(specs) for specs in by_schedule.values()]


def group_name(app: App, specs: tuple[RotationSpec, ...]) -> str:
    """One key: `<app>-rotate-<key>` (as `cronjob_name`). Several: `<app>-rotate-<key>-<key>...`,
    or, when that is too long, the first key's name and a short hash of the schedule."""
    if len(specs) == 1:
        return cronjob_name(app, specs[0])
    name = f"{app.name}-rotate-" + "-".join(_slug(s.key) for s in specs)
    if len(name) <= _CRONJOB_NAME_MAX:
        return name
    digest = hashlib.sha256(specs[0].schedule.encode()).hexdigest()[:6]
    head = f"{app.name}-rotate-{_slug(specs[0].key)}"[: _CRONJOB_NAME_MAX - 7].rstrip("-")
    return f"{head}-{digest}"


def cronjob_names(cfg: StackConfig) -> list[tuple[str, str]]:
    """(namespace, CronJob name) of every rotation CronJob the stack emits, in emit order."""
    if not _rotates_in_cluster(cfg):
        return []
    return [
        (app.namespace, group_name(app, specs)) for app in cfg.apps if app.vault is not None for specs in groups(app)
    ]


def _rotates_in_cluster(cfg: StackConfig) -> bool:
    return cfg.spec.vault and cfg.vault is not None


def _labels(app: App) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "ksecrets-rotator",
        "app.kubernetes.io/instance": app.name,
        "app.kubernetes.io/component": COMPONENT,
    }


def service_account(app: App) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(rotator_service_account_name(app), app.namespace, labels=_labels(app)),
        # The rotator never calls the Kubernetes API; the Vault login uses a projected token.
        "automountServiceAccountToken": False,
    }


def rotator_args(cfg: StackConfig, app: App, specs: tuple[RotationSpec, ...] | RotationSpec) -> list[str]:
    """What to rotate, as `python -m ksecrets.rotate` flags. Names and places only, no values."""
    assert cfg.vault is not None and app.vault is not None
    if isinstance(specs, RotationSpec):
        specs = (specs,)
    args = [
        "--mount",
        cfg.vault.kv_mount,
        "--path",
        app.vault.path,
        "--min-interval",
        str(cfg.rotation.min_interval_seconds),
    ]
    for spec in specs:
        if spec.generator == "random":
            args += ["--random", f"{spec.key}:{spec.length}"]
    for spec in specs:
        if spec.generator == "postgres" and spec.postgres is not None:
            pg = spec.postgres
            args += ["--postgres", f"{spec.key}:{spec.length}", "--pg-mode", pg.mode]
            if pg.mode == "dual":
                args += ["--pg-username-key", pg.username_key]
            args += [
                "--pg-host",
                pg.host,
                "--pg-port",
                str(pg.port),
                "--pg-database",
                pg.database,
                "--pg-role",
                pg.role,
            ]
    return args


def _env(cfg: StackConfig, app: App, specs: tuple[RotationSpec, ...]) -> list[dict[str, Any]]:
    assert cfg.vault is not None
    env: list[dict[str, Any]] = [
        {"name": "VAULT_ADDR", "value": cfg.vault.service_address},
        {"name": "KSECRETS_VAULT_AUTH_MOUNT", "value": cfg.vault.auth_mount},
        {"name": "KSECRETS_VAULT_ROLE", "value": vault_role(app)},
        {"name": "KSECRETS_VAULT_TOKEN_FILE", "value": TOKEN_FILE},
    ]
    if cfg.vault.tls.enabled:
        env.append({"name": "VAULT_CACERT", "value": f"{CA_DIR}/ca.crt"})
    spec = next((x for x in specs if x.generator == "postgres" and x.postgres is not None), None)
    if spec is not None and spec.postgres is not None:
        admin = spec.postgres.admin_secret
        env += [
            {"name": "PGADMIN_USER", "valueFrom": {"secretKeyRef": {"name": admin, "key": "username"}}},
            {"name": "PGADMIN_PASSWORD", "valueFrom": {"secretKeyRef": {"name": admin, "key": "password"}}},
        ]
    env.append({"name": "PYTHONDONTWRITEBYTECODE", "value": "1"})  # read-only root filesystem
    return env


def ca_secret_name(cfg: StackConfig) -> str:
    """The CA-only Secret (`ca.crt`) that VaultConnection uses (`vault.tls.caSecretName`); the
    rotator mounts a Secret of that name in the app's namespace. Never the server's TLS Secret,
    whose `tls.key` must not leave Vault's namespace."""
    assert cfg.vault is not None
    return cfg.vault.tls.ca_secret_name


def cronjob(cfg: StackConfig, app: App, specs: tuple[RotationSpec, ...] | RotationSpec) -> Manifest:
    assert cfg.vault is not None
    if isinstance(specs, RotationSpec):
        specs = (specs,)
    spec = specs[0]
    labels = _labels(app)
    container: dict[str, Any] = {
        "name": "rotate",
        "image": cfg.rotation.image,
        "command": ["python", "-m", "ksecrets.rotate"],
        "args": rotator_args(cfg, app, specs),
        "env": _env(cfg, app, specs),
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "vault-token", "mountPath": TOKEN_DIR, "readOnly": True},
        ],
    }
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        {
            "name": "vault-token",
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": cfg.vault.audience,
                            "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                            "path": "token",
                        }
                    }
                ]
            },
        },
    ]
    if cfg.vault.tls.enabled:
        container["volumeMounts"].append({"name": "vault-ca", "mountPath": CA_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "vault-ca",
                "secret": {"secretName": ca_secret_name(cfg), "items": [{"key": "ca.crt", "path": "ca.crt"}]},
            }
        )
    rc = cfg.rotation
    pod_security = {
        **POD_SECURITY_CONTEXT,
        "runAsUser": rc.run_as_user,
        "runAsGroup": rc.run_as_group,
        "fsGroup": rc.run_as_group,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(
            group_name(app, specs),
            app.namespace,
            labels=labels,
            annotations={"ksecrets.io/rotates": f"{app.secret_name}/" + ",".join(s.key for s in specs)},
        ),
        "spec": {
            "schedule": spec.schedule,
            # Schedules mean UTC whatever the controller manager's local time zone is.
            "timeZone": TIME_ZONE,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
            "successfulJobsHistoryLimit": cfg.rotation.successful_jobs_history_limit,
            "failedJobsHistoryLimit": cfg.rotation.failed_jobs_history_limit,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": BACKOFF_LIMIT,
                    "activeDeadlineSeconds": ACTIVE_DEADLINE_SECONDS,
                    "ttlSecondsAfterFinished": TTL_SECONDS_AFTER_FINISHED,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": rotator_service_account_name(app),
                            "automountServiceAccountToken": False,
                            "restartPolicy": "Never",
                            "securityContext": pod_security,
                            "containers": [container],
                            "volumes": volumes,
                        },
                    },
                },
            },
        },
    }


def cronjobs(cfg: StackConfig) -> list[Planned]:
    """The rotation objects of one stack (layer "apps"): per app, its rotator ServiceAccount,
    then one CronJob per schedule. Nothing for backends that cannot rotate in-cluster."""
    if not _rotates_in_cluster(cfg):
        return []
    out: list[Planned] = []
    for app in cfg.apps:
        if not app.rotation or app.vault is None:
            continue
        out.append(Planned(service_account(app), "apps"))
        out += [Planned(cronjob(cfg, app, specs), "apps") for specs in groups(app)]
    return out
