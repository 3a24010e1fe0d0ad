"""Per app: ServiceAccount, a Role that may `get` only the app's own Secrets, the RoleBinding."""

from components.kube import ObjectGroup


class AppAccess(ObjectGroup):
    TYPE = "k8s-secrets:rbac:AppAccess"
