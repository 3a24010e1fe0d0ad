"""Vault configured by `pulumi up`: the same `ksecrets.usecases.vault_bootstrap` as `ksecrets vault bootstrap`,
as a Pulumi dynamic resource.

State holds only what the stack file already says (the Vault part of the config and the apps),
the Kubernetes host and CA (public), and the report (item names). The Vault token and the
database admin password are read from the environment inside the provider, at create/update
time (`VAULT_TOKEN` or ~/.vault-token, `KSECRETS_DB_ADMIN_PASSWORD`), so they never enter the
inputs, the outputs or the state file. Were any output to carry one, it would be listed in
`additional_secret_outputs`; none does, so `SECRET_OUTPUTS` is empty by design and a test holds it so.

Delete leaves Vault as it is: removing a kv mount would destroy every value in it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pulumi
import pulumi.dynamic
from pydantic import TypeAdapter

from ksecrets.config.model import App, StackConfig, VaultConfig

TYPE_NAME = "k8s-secrets:vault:Bootstrap"  # pulumi registers dynamic resources under its own token
SECRET_OUTPUTS: list[str] = []


# --- config ↔ plain data (inputs must be plain JSON) -------------------------------------------
# The model's own dump by field name (`kv_mount`, lists for tuples), and back through the model's
# constructor, which checks the types and rebuilds the nested classes.
_VAULT = TypeAdapter(VaultConfig)
_APPS = TypeAdapter(tuple[App, ...])


def bootstrap_inputs(
    cfg: StackConfig, *, kube_host: str | None = None, kube_ca_pem: str | None = None
) -> dict[str, Any]:
    """The provider's inputs for a stack: plain, deterministic, nothing secret."""
    if cfg.vault is None:
        raise ValueError(f"{cfg.source}: the stack has no vault section")
    from ksecrets.usecases.vault_bootstrap import DEFAULT_KUBE_HOST

    return {
        "stack": cfg.stack,
        "source": cfg.source,
        "backend": cfg.backend,
        "vault": _VAULT.dump_python(cfg.vault, mode="json"),
        "apps": _APPS.dump_python(tuple(a for a in cfg.apps if a.vault is not None), mode="json"),
        "kubeHost": kube_host or DEFAULT_KUBE_HOST,
        "kubeCaPem": kube_ca_pem or "",
    }


def config_from_inputs(props: dict[str, Any]) -> StackConfig:
    return StackConfig(
        stack=props["stack"],
        source=props["source"],
        root=".",
        backend=props["backend"],
        vault=_VAULT.validate_python(props["vault"]),
        apps=_APPS.validate_python(props["apps"]),
    )


_INPUT_KEYS = ("stack", "source", "backend", "vault", "apps", "kubeHost", "kubeCaPem")


def _inputs_digest(props: dict[str, Any]) -> str:
    plain = {k: props.get(k) for k in _INPUT_KEYS}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


class VaultBootstrapProvider(pulumi.dynamic.ResourceProvider):
    """create/update run the idempotent bootstrap; diff compares the inputs."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        # Tests pass an environment; a real run reads os.environ at call time (not at pickling).
        self._env = env

    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        from ksecrets.usecases.vault_bootstrap import bootstrap
        from ksecrets.vault.client import make_client

        env = self._env if self._env is not None else dict(os.environ)
        cfg = config_from_inputs(props)
        client = make_client(cfg.vault, env=env)
        report = bootstrap(
            client,
            cfg,
            kube_host=props["kubeHost"],
            kube_ca_pem=props["kubeCaPem"] or None,
            db_admin_password=env.get("KSECRETS_DB_ADMIN_PASSWORD") or None,
        )
        return {
            **{k: props[k] for k in _INPUT_KEYS},
            "inputsDigest": _inputs_digest(props),
            "changed": list(report.changed),
            "unchanged": list(report.unchanged),
        }

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._apply(props)
        return pulumi.dynamic.CreateResult(id_=f"vault-bootstrap-{props['stack']}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = [k for k in _INPUT_KEYS if olds.get(k) != news.get(k)]
        # A different Vault (address or mounts) is still configured in place: nothing to replace.
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._apply(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # see the module docstring: never destroy Vault data from a `pulumi destroy`


class VaultBootstrap(pulumi.dynamic.Resource):
    """Vault configured for one stack (kv-v2, kubernetes auth, policies, roles, audit, database)."""

    changed: pulumi.Output[list[str]]
    unchanged: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        *,
        kube_host: str | None = None,
        kube_ca_pem: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            **bootstrap_inputs(cfg, kube_host=kube_host, kube_ca_pem=kube_ca_pem),
            "inputsDigest": None,
            "changed": None,
            "unchanged": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS))
        super().__init__(VaultBootstrapProvider(), name, props, opts)
