"""The Sealed Secrets controller (a Flux HelmRelease) and one SealedSecret per sealed entry."""

from __future__ import annotations

from typing import Any

from ksecrets.config.model import SealedEntry, StackConfig
from ksecrets.manifests import flux
from ksecrets.manifests.plan import MANAGED_BY, Manifest, Planned

REPOSITORY = "sealed-secrets"
RELEASE = "sealed-secrets"
# Phase `install` of a move to Vault: the controller stops setting itself as the Secret's owner
# (and drops the ownerReference it set), and keeps managing the Secret by this annotation instead.
# Pruning the SealedSecret later then leaves the Secret in place for the Vault operator to take
# over (pkg/apis/sealedsecrets/v1alpha1: SealedSecretSkipSetOwnerReferencesAnnotation,
# SealedSecretManagedAnnotation; pkg/controller: isAnnotatedToBeManaged).
MANAGED_ANNOTATION = {"sealedsecrets.bitnami.com/managed": "true"}  # the controller takes over an existing Secret
HANDOVER_ANNOTATIONS = {
    **MANAGED_ANNOTATION,
    "sealedsecrets.bitnami.com/skip-set-owner-references": "true",
}


def release_id(cfg: StackConfig) -> str:
    return f"{flux.HELM_API}/HelmRelease/{cfg.flux.namespace}/{RELEASE}"


def controller_values(cfg: StackConfig) -> dict[str, Any]:
    """Chart values; every key exists in the chart's values.yaml (a test checks)."""
    ss = cfg.sealed_secrets
    values: dict[str, Any] = {
        # kubeseal looks for sealed-secrets-controller in kube-system by default; keep that name.
        "fullnameOverride": ss.controller_name,
        "keyrenewperiod": ss.key_renew_period or "",
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
    }
    if cfg.monitoring.operator_objects:
        values["metrics"] = {
            "serviceMonitor": {
                "enabled": True,
                "namespace": ss.controller_namespace,
                "labels": dict(cfg.monitoring.rule_labels),
            }
        }
    return values


def controller(cfg: StackConfig) -> list[Planned]:
    ss = cfg.sealed_secrets
    ns = cfg.flux.namespace
    return [
        Planned(flux.helm_repository(REPOSITORY, ns, ss.chart_repository), "infrastructure"),
        Planned(
            flux.helm_release(
                RELEASE,
                ns,
                chart="sealed-secrets",
                version=ss.chart_version,
                repository=REPOSITORY,
                target_namespace=ss.controller_namespace,
                values=controller_values(cfg),
            ),
            "infrastructure",
        ),
    ]


def sealed_secret(cfg: StackConfig, entry: SealedEntry) -> Manifest:
    from ksecrets.sealing.sealedsecret import build_sealed_secret

    annotations = dict(entry.annotations)
    if cfg.vault_migration in ("install", "release"):
        annotations.update(HANDOVER_ANNOTATIONS)
    return build_sealed_secret(
        name=entry.name,
        namespace=entry.namespace,
        scope=entry.scope,
        encrypted_data=dict(entry.encrypted_data),
        secret_type=entry.type,
        labels=dict(entry.labels) or None,
        annotations=annotations or None,
        immutable=entry.immutable,
        fingerprint=entry.certificate_fingerprint,
        own_labels=MANAGED_BY,  # the SealedSecret's, as every exported object's; the Secret keeps entry.labels
    )


def sealed_secrets(cfg: StackConfig) -> list[Planned]:
    needs = (release_id(cfg),)
    return [Planned(sealed_secret(cfg, e), "apps", needs) for e in cfg.sealed]
