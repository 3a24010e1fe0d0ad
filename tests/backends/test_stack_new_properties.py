"""`ksecrets stack new` asks the backend for its defaults (`BackendSpec.stack_new`) instead of
branching on its name: for any source stack and every backend, the new config is, key order
included, what the branches it replaced wrote (`_branches` below, the code as it was before the
backends were modules), and holds each backend's rules."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ksecrets import backends, yamlio
from ksecrets.config.names import PREFIX
from ksecrets.usecases.stack_new import CONTEXT_KEY, UP_ORDER_KEY, new_stack_config


def _branches(stack: str, backend: str, source: dict[str, Any] | None, context: str | None = None) -> dict[str, Any]:
    """`new_stack_config` before this change, verbatim: the oracle of the refactoring."""
    cfg: dict[str, Any] = {}
    if source:
        cfg = copy.deepcopy({k: v for k, v in source.items() if k.startswith(PREFIX)})
    monitoring = cfg.setdefault(PREFIX + "monitoring", {})
    if isinstance(monitoring, dict) and monitoring.get("enabled", True) and "prometheusOperator" not in monitoring:
        monitoring["prometheusOperator"] = False
    sealed = cfg.pop(PREFIX + "sealed", None) or []
    cfg.pop(PREFIX + "manualValues", None)
    cfg[PREFIX + "backend"] = backend
    flux = cfg.get(PREFIX + "flux")
    if isinstance(flux, dict) and flux.get("path"):
        flux["path"] = f"./k8s/{stack}"
    ss = cfg.setdefault(PREFIX + "sealedSecrets", {})
    ss.pop("certificate", None)
    if backend == "sealed-secrets":
        ss["certificate"] = f"certs/{stack}.pem"
    keys_of = {
        (e.get("namespace"), e.get("name")): sorted((e.get("encryptedData") or {}))
        for e in sealed
        if isinstance(e, dict)
    }
    for app in cfg.get(PREFIX + "apps") or []:
        if not isinstance(app, dict):
            continue
        secret = app.get("secretName") or f"{app.get('name')}-secrets"
        known = keys_of.get((app.get("namespace"), secret))
        if known and not app.get("keys"):
            app["keys"] = known
        if backend == "vault":
            app.setdefault("vault", {"path": app.get("name")})
        elif "vault" in app and backend != "vault":
            app.pop("vault")
            app["rotation"] = [r for r in app.get("rotation") or [] if r.get("generator", "random") != "postgres"]
            if not app["rotation"]:
                app.pop("rotation")
    if backend != "vault":
        cfg.pop(PREFIX + "vault", None)
    if backend == "sops":  # the fourth backend, added as one module after the refactoring
        cfg.setdefault(PREFIX + "sops", {}).setdefault("recipients", [])
    order = ["backend", "namespaces", "flux", "sealedSecrets", "vault", "apps", "rotation", "monitoring"]
    return (
        {CONTEXT_KEY: context or stack}
        | ({UP_ORDER_KEY: source[UP_ORDER_KEY]} if source and UP_ORDER_KEY in source else {})
        | {PREFIX + k: cfg[PREFIX + k] for k in order if PREFIX + k in cfg}
        | {k: v for k, v in cfg.items() if k[len(PREFIX) :] not in order}
    )


names = st.sampled_from(["web", "api", "db", "worker"])
keys = st.lists(st.sampled_from(["A", "B", "PASSWORD", "TOKEN"]), unique=True, max_size=3)
rotation = st.fixed_dictionaries(
    {"key": st.sampled_from(["A", "PASSWORD"])},
    optional={"generator": st.sampled_from(["random", "postgres"]), "schedule": st.just("@daily")},
)
app = st.fixed_dictionaries(
    {"name": names, "namespace": st.sampled_from(["shop", "web"])},
    optional={
        "secretName": st.sampled_from(["web-secrets", "shared", "db-secrets"]),
        "keys": keys,
        "vault": st.fixed_dictionaries({}, optional={"path": names}),
        "rotation": st.lists(rotation, max_size=3),
        "deployments": st.just([{"name": "web", "image": "nginx:1.27"}]),
    },
)
sealed_entry = st.fixed_dictionaries(
    {"name": st.sampled_from(["web-secrets", "shared", "api-secrets"]), "namespace": st.sampled_from(["shop", "web"])},
    optional={"encryptedData": st.dictionaries(st.sampled_from(["A", "B", "TOKEN"]), st.just("AgB..."), max_size=3)},
)
source = st.fixed_dictionaries(
    {},
    optional={
        PREFIX + "backend": st.sampled_from(list(backends.BACKENDS)),
        PREFIX + "apps": st.lists(app, max_size=4),
        PREFIX + "sealed": st.lists(sealed_entry, max_size=4),
        PREFIX + "sealedSecrets": st.fixed_dictionaries(
            {}, optional={"certificate": st.just("certs/old.pem"), "controllerNamespace": st.just("kube-system")}
        ),
        PREFIX + "vault": st.fixed_dictionaries({}, optional={"kvMount": st.just("kv"), "namespace": st.just("vault")}),
        PREFIX + "flux": st.fixed_dictionaries({}, optional={"path": st.just("./k8s/old")}),
        PREFIX + "manualValues": st.just({"web-secrets": {"A": "never copied"}}),
        PREFIX + "monitoring": st.fixed_dictionaries({}, optional={"enabled": st.booleans()}),
        PREFIX + "namespaces": st.just(["shop"]),
        UP_ORDER_KEY: st.integers(0, 3),
        CONTEXT_KEY: st.just("old-cluster"),
        "other:key": st.just("x"),
    },
)


@settings(max_examples=400, deadline=None)
@given(source=st.none() | source, backend=st.sampled_from(list(backends.BACKENDS)), context=st.none() | st.just("c"))
def test_stack_new_is_what_the_branches_wrote(source, backend, context):
    got = new_stack_config("fresh", backend, copy.deepcopy(source), context)
    want = _branches("fresh", backend, copy.deepcopy(source), context)
    assert yamlio.dump({"config": got}) == yamlio.dump({"config": want})  # values and key order
    spec = backends.get(backend)
    apps = got.get(PREFIX + "apps") or []
    assert ("certificate" in got[PREFIX + "sealedSecrets"]) == spec.seals
    assert all(("vault" in a) == spec.vault for a in apps)
    if not spec.vault:
        assert PREFIX + "vault" not in got
    if spec.sops_files:
        assert isinstance(got[PREFIX + "sops"]["recipients"], list)
    assert PREFIX + "manualValues" not in got and PREFIX + "sealed" not in got
