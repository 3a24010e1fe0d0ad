"""Issue 9, flow 3: least privilege, asked of the real authorizer.

Real: kube-apiserver's RBAC authorizer answering SubjectAccessReviews (what `kubectl auth can-i
--as` asks) for the Roles and RoleBindings each stack exports, applied as Flux applies them.
Expected grants come from the stack file (ksecrets' config model), not from the exported RBAC, so
an over-broad or missing rule in the builders fails here.
"""

from __future__ import annotations

import pytest

from ksecrets.config.load import load_stack
from ksecrets.manifests.rotation import rotator_service_account_name
from tests.e2e.harness import ROOT
from tests.e2e.harness.gitops import apply_stack
from tests.e2e.harness.kube import sa_user

STACKS = sorted(p.name for p in (ROOT / "k8s").iterdir() if (p / "apps").is_dir())
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


@pytest.fixture(scope="module", params=STACKS)
def stack(request, cluster_factory):
    cluster = cluster_factory(f"rbac-{request.param}")
    apply_stack(cluster, ROOT / "k8s" / request.param)
    return load_stack(request.param, ROOT), cluster


def _granted_secrets(app) -> set[str]:
    names = {app.secret_name}
    if app.vault is not None:
        names |= {d.name for d in app.vault.dynamic}
    return names


def test_each_app_reads_its_own_secret_and_nothing_else(stack):
    cfg, cluster = stack
    assert cfg.apps, "no app to check"
    all_secrets = {n for a in cfg.apps for n in _granted_secrets(a)} | {"some-other-secret", "sealed-secrets-key"}
    for app in cfg.apps:
        user = sa_user(app.service_account, app.namespace)
        mine = _granted_secrets(app)
        for name in sorted(mine):
            assert cluster.can_i("get", "secrets", app.namespace, user=user, name=name), f"{user} cannot get {name}"
        for name in sorted(all_secrets - mine):
            assert not cluster.can_i("get", "secrets", app.namespace, user=user, name=name), f"{user} may get {name}"
        for verb in ("list", "watch", *WRITE_VERBS):
            assert not cluster.can_i(verb, "secrets", app.namespace, user=user), f"{user} may {verb} secrets"
            for name in sorted(mine):
                if verb not in ("list", "watch"):
                    assert not cluster.can_i(verb, "secrets", app.namespace, user=user, name=name), (
                        f"{user} may {verb} {name}"
                    )
        # Nothing in any other namespace, including the controllers' (sealing keys, Vault's TLS).
        for ns in ("kube-system", "default", cfg.vault.namespace if cfg.vault else "vault"):
            assert not cluster.can_i("get", "secrets", ns, user=user, name=app.secret_name), f"{user} reaches {ns}"


def test_rotator_has_no_secret_access(stack):
    """The rotator talks to Vault with its projected token; in Kubernetes it needs nothing."""
    cfg, cluster = stack
    rotating = [a for a in cfg.apps if a.rotation]
    if not rotating:
        pytest.skip(f"{cfg.stack}: no app rotates in the cluster")
    for app in rotating:
        user = sa_user(rotator_service_account_name(app), app.namespace)
        for verb in ("get", "list", "watch", *WRITE_VERBS):
            assert not cluster.can_i(verb, "secrets", app.namespace, user=user), f"{user} may {verb} secrets"
            assert not cluster.can_i(verb, "secrets", app.namespace, user=user, name=app.secret_name)


def test_kubectl_auth_can_i_agrees(stack):
    """The same answers through the real `kubectl auth can-i --as` a person would type."""
    cfg, cluster = stack
    app = cfg.apps[0]
    user = sa_user(app.service_account, app.namespace)
    yes = cluster.kubectl(
        "auth", "can-i", "get", f"secrets/{app.secret_name}", "-n", app.namespace, f"--as={user}", check=False
    )
    no = cluster.kubectl("auth", "can-i", "list", "secrets", "-n", app.namespace, f"--as={user}", check=False)
    assert (yes.returncode, yes.stdout.strip()) == (0, "yes")
    assert (no.returncode, no.stdout.strip()) == (1, "no")
