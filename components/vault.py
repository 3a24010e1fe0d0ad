"""Vault in HA (raft) and the Vault Secrets Operator via Flux, and the operator's objects."""

from components.flux import FluxHelmChart
from components.kube import ObjectGroup


class VaultPlatform(FluxHelmChart):
    """HelmRepository `hashicorp`, HelmReleases `vault` and `vault-secrets-operator`."""

    TYPE = "k8s-secrets:vault:Platform"


class VaultSecrets(ObjectGroup):
    """VaultConnection, VaultAuth, VaultStaticSecret and VaultDynamicSecret objects."""

    TYPE = "k8s-secrets:vault:Secrets"
