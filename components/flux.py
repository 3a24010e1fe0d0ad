"""Flux sources and releases: a HelmRepository and the HelmRelease installing a chart from it.

Under `pulumi up` the HelmRelease carries `pulumi.com/waitFor: condition=Ready`, so Pulumi
reports the release done only when helm-controller says Ready, and objects of the CRDs the chart
installs (SealedSecret, VaultStaticSecret...) are created after it (`depends_on`).
"""

from components.kube import ObjectGroup


class FluxHelmChart(ObjectGroup):
    """One chart installed by Flux: `HelmRepository` (source/v1) + `HelmRelease` (helm/v2)."""

    TYPE = "k8s-secrets:flux:HelmChart"
