"""The sealing-key backup CronJob, in the sealed-secrets controller's namespace: every hour it
lists the controller's key Secrets and writes each new one, encrypted to the offline public key
committed at `sealedSecrets.keyBackup.publicKey`, to a PersistentVolumeClaim
(`python -m ksecrets.sealing.keybackup`). The pod can encrypt, never decrypt.

Privilege, and its one exception: the controller names its key Secrets with `generateName`
(`sealed-secrets-key` + random), so nothing but a `list` can find them. The Role
`ksecrets-sealing-key-backup` grants exactly `list` on secrets in that namespace and nothing else
(no get, watch, create, update); the policy pack and the RBAC tests allow this one Role by name,
namespace and rule (`policy/rules.py`, `KEY_BACKUP_ROLE`). The token is projected (API server
audience, 10 minutes); the pod is restricted, numeric user 10001.

The `SealingKeyNotBackedUp` alert compares kube-state-metrics facts: the newest key Secret's
`kube_secret_created` against the CronJob's `kube_cronjob_status_last_successful_time`.
"""

from __future__ import annotations

from typing import Any

from ksecrets.config.model import StackConfig
from ksecrets.manifests.facts import StackFacts
from ksecrets.manifests.plan import Manifest, Planned, metadata
from ksecrets.manifests.rotation import TOKEN_EXPIRATION_SECONDS
from ksecrets.manifests.snapshots import maintenance_cronjob, s3_args, s3_env
from ksecrets.manifests.workloads import CONTAINER_SECURITY_CONTEXT

NAME = "sealing-key-backup"
ROLE = "ksecrets-sealing-key-backup"
PVC = "sealing-key-backups"
CONFIGMAP = "sealing-key-backup-public-key"
MOUNT = "/backups"
KEY_DIR = "/etc/ksecrets/keybackup"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
ACTIVE_DEADLINE_SECONDS = 600


def enabled(cfg: StackConfig) -> bool:
    return cfg.sealed_secrets.key_backup is not None


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "ksecrets-sealing-key-backup", "app.kubernetes.io/component": "disaster-recovery"}


def objects(cfg: StackConfig, facts: StackFacts) -> list[Planned]:
    """`facts.key_backup_public_key`: the offline public key's PEM (read and checked by the caller)."""
    if not enabled(cfg):
        return []
    assert facts.key_backup_public_key is not None, "key backup on: the facts carry its public key"
    kb = cfg.sealed_secrets.key_backup
    assert kb is not None
    ns = cfg.sealed_secrets.controller_namespace
    labels = _labels()
    sa = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(NAME, ns, labels=labels),
        "automountServiceAccountToken": False,
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(ROLE, ns, labels=labels),
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(ROLE, ns, labels=labels),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": ns}],
    }
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(CONFIGMAP, ns, labels=labels),
        "data": {"public.pem": facts.key_backup_public_key},
    }
    pvc_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": kb.storage_size}},
    }
    if kb.storage_class:
        pvc_spec["storageClassName"] = kb.storage_class
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(PVC, ns, labels=labels),
        "spec": pvc_spec,
    }
    # The infrastructure layer, beside the controller it backs up: applied by Flux itself, so the
    # apps layer's applier never needs `list` on secrets to create this Role.
    return [Planned(o, "infrastructure") for o in (sa, role, binding, cm, pvc, cronjob(cfg))]


def cronjob(cfg: StackConfig) -> Manifest:
    kb = cfg.sealed_secrets.key_backup
    assert kb is not None
    ns = cfg.sealed_secrets.controller_namespace
    labels = _labels()
    container = {
        "name": "backup",
        "image": kb.image,
        "command": ["python", "-m", "ksecrets.sealing.keybackup"],
        "args": [
            "--namespace",
            ns,
            "--public-key",
            f"{KEY_DIR}/public.pem",
            "--dir",
            MOUNT,
            "--token-file",
            f"{SA_DIR}/token",
            "--ca-file",
            f"{SA_DIR}/ca.crt",
        ]
        + s3_args(kb.s3),
        "env": s3_env(kb.s3) + [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "backups", "mountPath": MOUNT},
            {"name": "public-key", "mountPath": KEY_DIR, "readOnly": True},
            {"name": "api-token", "mountPath": SA_DIR, "readOnly": True},
        ],
    }
    volumes = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "backups", "persistentVolumeClaim": {"claimName": PVC}},
        {"name": "public-key", "configMap": {"name": CONFIGMAP}},
        {
            "name": "api-token",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                ]
            },
        },
    ]
    return maintenance_cronjob(cfg, NAME, ns, labels, kb.schedule, ACTIVE_DEADLINE_SECONDS, container, volumes)
