"""Deployments that consume an app's Secret, both ways the guide shows: `envFrom.secretRef`
(every key as a variable) and `env[].valueFrom.secretKeyRef` (one key, one variable)."""

from __future__ import annotations

import hashlib
from typing import Any

from ksecrets.config.model import App, Deployment, StackConfig
from ksecrets.manifests.plan import Manifest, Planned, metadata

# Restricted Pod Security Standard, field for field.
POD_SECURITY_CONTEXT = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
SECRET_CHECKSUM = "ksecrets.io/secret-checksum"


def secret_checksum(cfg: StackConfig, app: App) -> str | None:
    """A digest of the sealed ciphertexts: a re-sealed value rolls the pods, an unchanged one
    does not (sealing is churn-free). Vault apps restart through the operator instead.

    In the `handover` phase of a move to Vault the digest stays as it was: the switch changes no
    pod template, so no Deployment rolls before the operator has written the Secret (the
    operator then restarts them itself, `rolloutRestartTargets`)."""
    if not cfg.spec.seals and cfg.vault_migration != "handover":
        return None
    entry = cfg.sealed_entry(app.namespace, app.secret_name)
    if entry is None:
        return None
    digest = hashlib.sha256()
    for key, value in entry.encrypted_data:
        digest.update(f"{key}={value}\n".encode())
    return "sha256:" + digest.hexdigest()


def probe(path: str | None, *, period: int, failures: int, initial_delay: int = 0) -> dict[str, Any]:
    """The kubelet's check of the container's `http` port: GET `path` (2xx-3xx is healthy), or a
    TCP connect when the app names no path. Liveness waits longer and fails slower than readiness,
    so a slow start or a busy moment takes a pod out of the Service before it restarts it."""
    out: dict[str, Any] = {"httpGet": {"path": path, "port": "http"}} if path else {"tcpSocket": {"port": "http"}}
    if initial_delay:
        out["initialDelaySeconds"] = initial_delay
    out |= {"periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": failures}
    return out


def deployment(cfg: StackConfig, app: App, d: Deployment) -> Manifest:
    labels = {"app.kubernetes.io/name": d.name, "app.kubernetes.io/instance": app.name}
    container: dict[str, Any] = {"name": d.name, "image": d.image}
    if d.port:
        container["ports"] = [{"name": "http", "containerPort": d.port, "protocol": "TCP"}]
    if d.env_from:
        container["envFrom"] = [{"secretRef": {"name": app.secret_name}}]
    if d.env:
        container["env"] = [
            {"name": e.name, "valueFrom": {"secretKeyRef": {"name": app.secret_name, "key": e.key}}} for e in d.env
        ]
    if d.port:
        container["readinessProbe"] = probe(d.readiness_path, period=10, failures=3)
        container["livenessProbe"] = probe(d.liveness_path, period=20, failures=3, initial_delay=10)
    container["resources"] = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    container["securityContext"] = CONTAINER_SECURITY_CONTEXT
    container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    template_meta: dict[str, Any] = {"labels": labels}
    checksum = secret_checksum(cfg, app)
    if checksum:
        template_meta["annotations"] = {SECRET_CHECKSUM: checksum}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(d.name, app.namespace, labels=labels),
        "spec": {
            "replicas": d.replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "serviceAccountName": app.service_account,
                    # A numeric uid and gid: the kubelet refuses runAsNonRoot for an image whose
                    # USER is a name ("image has non-numeric user") unless runAsUser is set.
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": d.run_as_user,
                        "runAsGroup": d.run_as_group,
                        "seccompProfile": POD_SECURITY_CONTEXT["seccompProfile"],
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def deployments(cfg: StackConfig) -> list[Planned]:
    return [Planned(deployment(cfg, app, d), "apps") for app in cfg.apps for d in app.deployments]
