"""The Deployments that consume the apps' Secrets."""

from components.kube import ObjectGroup


class Workloads(ObjectGroup):
    TYPE = "k8s-secrets:workloads:Workloads"
