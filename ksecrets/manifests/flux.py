"""Flux sources and releases: HelmRepository (source/v1), HelmRelease (helm/v2), and the
Kustomizations (kustomize/v1) that make the `apps` layer wait for `infrastructure`.

The guide's `helm.toolkit.fluxcd.io/v2beta1` is no longer served by Flux 2.x; v2 is the only
version the current CRD defines.
"""

from __future__ import annotations

from typing import Any, Mapping

from ksecrets.config.model import StackConfig
from ksecrets.manifests.plan import Manifest, metadata

SOURCE_API = "source.toolkit.fluxcd.io/v1"
HELM_API = "helm.toolkit.fluxcd.io/v2"
KUSTOMIZE_API = "kustomize.toolkit.fluxcd.io/v1"


def helm_repository(name: str, namespace: str, url: str, interval: str = "1h") -> Manifest:
    return {
        "apiVersion": SOURCE_API,
        "kind": "HelmRepository",
        "metadata": metadata(name, namespace),
        "spec": {"interval": interval, "url": url},
    }


def helm_release(
    name: str,
    namespace: str,
    *,
    chart: str,
    version: str,
    repository: str,
    target_namespace: str,
    values: Mapping[str, Any],
    release_name: str | None = None,
    interval: str = "30m",
    timeout: str = "10m",
    depends_on: tuple[str, ...] = (),
) -> Manifest:
    """A HelmRelease pinned to one chart version, installing CRDs on install and upgrade.

    Remediation retries a failed install or upgrade three times, then rolls back: a broken
    controller upgrade must not leave the cluster without secrets.
    """
    spec: dict[str, Any] = {
        "interval": interval,
        "timeout": timeout,
        "releaseName": release_name or name,
        "targetNamespace": target_namespace,
        "chart": {
            "spec": {
                "chart": chart,
                "version": version,
                "sourceRef": {"kind": "HelmRepository", "name": repository, "namespace": namespace},
                "interval": "1h",
            }
        },
        "install": {"crds": "CreateReplace", "createNamespace": False, "remediation": {"retries": 3}},
        "upgrade": {"crds": "CreateReplace", "remediation": {"retries": 3, "strategy": "rollback"}},
    }
    if depends_on:
        spec["dependsOn"] = [{"name": d} for d in depends_on]
    spec["values"] = dict(values)
    return {
        "apiVersion": HELM_API,
        "kind": "HelmRelease",
        "metadata": metadata(name, namespace),
        "spec": spec,
    }


def layer_kustomizations(cfg: StackConfig) -> list[Manifest]:
    """The two Flux Kustomizations of a stack: apps depends on infrastructure, both wait."""
    flux = cfg.flux

    def one(layer: str, depends: str | None) -> Manifest:
        spec: dict[str, Any] = {
            "interval": flux.interval,
            "retryInterval": "1m",
            "timeout": "10m",
            "path": f"{cfg.flux_path}/{layer}",
            "prune": True,
            "wait": True,
            "sourceRef": {"kind": "GitRepository", "name": flux.source_name},
        }
        if depends:
            spec["dependsOn"] = [{"name": depends}]
        return {
            "apiVersion": KUSTOMIZE_API,
            "kind": "Kustomization",
            "metadata": metadata(f"{cfg.stack}-{layer}", flux.namespace),
            "spec": spec,
        }

    infra = f"{cfg.stack}-infrastructure"
    return [one("infrastructure", None), one("apps", infra)]
