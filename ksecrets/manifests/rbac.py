"""Least privilege per app: a ServiceAccount, a Role that may `get` exactly the app's own
Secrets by name, and the RoleBinding between them.

Never `list` or `watch` on secrets: listing returns every Secret's data in the namespace, so a
Role with `list` is a Role that reads all of them.
"""

from __future__ import annotations

from ksecrets.config.model import App, StackConfig
from ksecrets.manifests.plan import Manifest, Planned, metadata


def secret_names(app: App) -> list[str]:
    names = {app.secret_name}
    if app.vault:
        names |= {d.name for d in app.vault.dynamic}
    return sorted(names)


def service_account(app: App) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(app.service_account, app.namespace, labels={"app.kubernetes.io/instance": app.name}),
    }


def role(app: App) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(
            f"{app.name}-secret-reader", app.namespace, labels={"app.kubernetes.io/instance": app.name}
        ),
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": secret_names(app), "verbs": ["get"]}],
    }


def role_binding(app: App) -> Manifest:
    name = f"{app.name}-secret-reader"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(name, app.namespace, labels={"app.kubernetes.io/instance": app.name}),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": app.service_account, "namespace": app.namespace}],
    }


def app_rbac(cfg: StackConfig) -> list[Planned]:
    out: list[Planned] = []
    for app in cfg.apps:
        out += [Planned(service_account(app), "apps"), Planned(role(app), "apps"), Planned(role_binding(app), "apps")]
    return out
