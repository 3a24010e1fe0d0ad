"""The stack's own cluster: an explicit Kubernetes provider, and a read that proves it answers.

- Each stack names its cluster in its own config (`kubernetes:context`, and optionally
  `kubernetes:kubeconfig`); the program never falls back to the current kubeconfig context, so
  `pulumi up -s production` cannot land on whatever cluster the shell points at.
- A preview that never reached the cluster must not go green: the provider only warns when the
  cluster is unreachable and plans with unknowns. Reading `kube-system` (a `get`, run during
  preview too) fails the preview when the cluster cannot be reached, the credentials are refused,
  or they may not read.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from ksecrets.errors import ConfigError

CHECK_NAMESPACE = "kube-system"


def cluster_provider(stack: str) -> k8s.Provider:
    conf = pulumi.Config("kubernetes")
    context = conf.get("context")
    if not context:
        raise ConfigError(
            f"Pulumi.{stack}.yaml",
            "kubernetes:context",
            "is required: each stack names its own cluster "
            "(pulumi config set kubernetes:context <context>); the current context is never used",
        )
    return k8s.Provider(f"{stack}-cluster", context=context, kubeconfig=conf.get("kubeconfig"))


def check_cluster(stack: str, provider: k8s.Provider) -> k8s.core.v1.Namespace:
    """Read (never own) kube-system through the stack's provider: fails when it cannot."""
    return k8s.core.v1.Namespace.get(
        f"{stack}-cluster-check", CHECK_NAMESPACE, opts=pulumi.ResourceOptions(provider=provider)
    )
