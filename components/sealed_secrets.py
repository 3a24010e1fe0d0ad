"""Sealed Secrets: the controller (chart sealed-secrets via Flux) and the SealedSecrets."""

from components.flux import FluxHelmChart
from components.kube import ObjectGroup


class SealedSecretsController(FluxHelmChart):
    """The Bitnami controller in kube-system, named so kubeseal's defaults find it."""

    TYPE = "k8s-secrets:sealed-secrets:Controller"


class SealedSecrets(ObjectGroup):
    """One SealedSecret per sealed entry; each waits for the controller's HelmRelease."""

    TYPE = "k8s-secrets:sealed-secrets:SealedSecrets"
