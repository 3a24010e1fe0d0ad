"""Vault raft snapshots on a schedule: a PersistentVolumeClaim, a ServiceAccount and a CronJob in
Vault's namespace running `python -m ksecrets.vault.snapshot` (the rotator's image).

Least privilege: the ServiceAccount has no Kubernetes RBAC and no API token mounted; the pod logs
in to Vault with a projected token (the stack's audience, 10 minutes) as Vault role
`vault-snapshot`, whose policy (`ksecrets vault bootstrap`) allows only `read` on
`sys/storage/raft/snapshot`. The restricted Pod Security Standard, numeric user and group 10001,
`fsGroup` so the volume is writable.

The `VaultSnapshotTooOld` alert (`ksecrets.manifests.monitoring`) watches the CronJob's last
success, which the CronJob reaches only after the snapshot file was written, fsynced and renamed.
"""

from __future__ import annotations

from typing import Any

from ksecrets.config.model import S3Config, StackConfig
from ksecrets.manifests.plan import Manifest, Planned, metadata
from ksecrets.manifests.rotation import (
    CA_DIR,
    STARTING_DEADLINE_SECONDS,
    TIME_ZONE,
    TOKEN_DIR,
    TOKEN_EXPIRATION_SECONDS,
    TOKEN_FILE,
)
from ksecrets.manifests.workloads import CONTAINER_SECURITY_CONTEXT, POD_SECURITY_CONTEXT

NAME = "vault-snapshot"
PVC = "vault-snapshots"
MOUNT = "/snapshots"
VAULT_ROLE = NAME
POLICY = "ksecrets-vault-snapshot"
ACTIVE_DEADLINE_SECONDS = 1800


def s3_args(s3: S3Config | None) -> list[str]:
    """The CronJob flags of an S3 upload (places only; credentials come from the Secret)."""
    if s3 is None:
        return []
    return ["--s3-endpoint", s3.endpoint, "--s3-bucket", s3.bucket, "--s3-region", s3.region, "--s3-prefix", s3.prefix]


def s3_env(s3: S3Config | None) -> list[dict[str, Any]]:
    if s3 is None:
        return []
    return [
        {
            "name": "AWS_ACCESS_KEY_ID",
            "valueFrom": {"secretKeyRef": {"name": s3.credentials_secret, "key": "accessKeyId"}},
        },
        {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": s3.credentials_secret, "key": "secretAccessKey"}},
        },
    ]


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "ksecrets-vault-snapshot", "app.kubernetes.io/component": "disaster-recovery"}


def enabled(cfg: StackConfig) -> bool:
    return cfg.spec.vault and cfg.vault is not None and cfg.vault.snapshots is not None


def pvc(cfg: StackConfig) -> Manifest:
    assert cfg.vault is not None and cfg.vault.snapshots is not None
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": cfg.vault.snapshots.storage_size}},
    }
    if cfg.vault.snapshots.storage_class:
        spec["storageClassName"] = cfg.vault.snapshots.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(PVC, cfg.vault.namespace, labels=_labels()),
        "spec": spec,
    }


def service_account(cfg: StackConfig) -> Manifest:
    assert cfg.vault is not None
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(NAME, cfg.vault.namespace, labels=_labels()),
        "automountServiceAccountToken": False,
    }


def cronjob(cfg: StackConfig) -> Manifest:
    vc = cfg.vault
    assert vc is not None and vc.snapshots is not None
    env: list[dict[str, Any]] = [
        {"name": "VAULT_ADDR", "value": vc.service_address},
        {"name": "KSECRETS_VAULT_AUTH_MOUNT", "value": vc.auth_mount},
        {"name": "KSECRETS_VAULT_ROLE", "value": VAULT_ROLE},
        {"name": "KSECRETS_VAULT_TOKEN_FILE", "value": TOKEN_FILE},
    ]
    mounts = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "snapshots", "mountPath": MOUNT},
        {"name": "vault-token", "mountPath": TOKEN_DIR, "readOnly": True},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "snapshots", "persistentVolumeClaim": {"claimName": PVC}},
        {
            "name": "vault-token",
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": vc.audience,
                            "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                            "path": "token",
                        }
                    }
                ]
            },
        },
    ]
    if vc.tls.enabled:
        # Vault's own namespace holds the CA-only Secret too (the server's TLS Secret has the key).
        env.append({"name": "VAULT_CACERT", "value": f"{CA_DIR}/ca.crt"})
        mounts.append({"name": "vault-ca", "mountPath": CA_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "vault-ca",
                "secret": {"secretName": vc.tls.ca_secret_name, "items": [{"key": "ca.crt", "path": "ca.crt"}]},
            }
        )
    env += s3_env(vc.snapshots.s3)
    env.append({"name": "PYTHONDONTWRITEBYTECODE", "value": "1"})
    container = {
        "name": "snapshot",
        "image": cfg.rotation.image,
        "command": ["python", "-m", "ksecrets.vault.snapshot"],
        "args": ["--dir", MOUNT, "--retain", str(vc.snapshots.retain)] + s3_args(vc.snapshots.s3),
        "env": env,
        "resources": {
            "requests": {"cpu": "10m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "volumeMounts": mounts,
    }
    return maintenance_cronjob(
        cfg, NAME, vc.namespace, _labels(), vc.snapshots.schedule, ACTIVE_DEADLINE_SECONDS, container, volumes
    )


def maintenance_cronjob(
    cfg: StackConfig,
    name: str,
    namespace: str,
    labels: dict[str, str],
    schedule: str,
    active_deadline: int,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
) -> Manifest:
    """One Job at a time on `schedule`, run as the rotator image's user by the ServiceAccount `name`
    (no token automounted): the snapshot and key-backup CronJobs' shared shape."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(name, namespace, labels=labels),
        "spec": {
            "schedule": schedule,
            "timeZone": TIME_ZONE,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": active_deadline,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": name,
                            "automountServiceAccountToken": False,
                            "restartPolicy": "Never",
                            "securityContext": {
                                **POD_SECURITY_CONTEXT,
                                "runAsUser": cfg.rotation.run_as_user,
                                "runAsGroup": cfg.rotation.run_as_group,
                                "fsGroup": cfg.rotation.run_as_group,
                            },
                            "containers": [container],
                            "volumes": volumes,
                        },
                    },
                },
            },
        },
    }


def objects(cfg: StackConfig) -> list[Planned]:
    if not enabled(cfg):
        return []
    # The infrastructure layer, beside the Vault it snapshots (the apps layer's applier gets no
    # rights in Vault's namespace for it).
    return [Planned(o, "infrastructure") for o in (pvc(cfg), service_account(cfg), cronjob(cfg))]


def policy() -> str:
    return (
        "# ksecrets: the snapshot CronJob saves raft snapshots, nothing else.\n"
        'path "sys/storage/raft/snapshot" {\n  capabilities = ["read"]\n}\n'
    )


def role_body(cfg: StackConfig) -> dict[str, Any]:
    assert cfg.vault is not None
    return {
        "bound_service_account_names": [NAME],
        "bound_service_account_namespaces": [cfg.vault.namespace],
        "audience": cfg.vault.audience,
        "token_policies": [POLICY],
        "token_ttl": 600,
        "token_max_ttl": 1800,
    }
