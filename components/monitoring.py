"""The stack's PrometheusRule: alerts on metrics that exist."""

from components.kube import ObjectGroup


class Monitoring(ObjectGroup):
    TYPE = "k8s-secrets:monitoring:Monitoring"
