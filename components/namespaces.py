"""The stack's Namespaces (Pod Security `restricted` enforced)."""

from components.kube import ObjectGroup


class Namespaces(ObjectGroup):
    TYPE = "k8s-secrets:namespaces:Namespaces"
