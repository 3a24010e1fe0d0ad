"""Backend `manual`: plain Secrets from Pulumi config secrets, applied by `pulumi up` only."""

from components.kube import ObjectGroup


class ManualSecrets(ObjectGroup):
    TYPE = "k8s-secrets:manual:Secrets"
