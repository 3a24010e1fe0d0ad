"""Backend `vault`: values live in Vault KV v2 (`ksecrets vault push`); the Vault Secrets Operator
writes each app's Secret, the stack installs Vault and the operator, rotation runs in the cluster."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, cast

from ksecrets.backends.base import BackendSpec, _apps


def default_vault_path(app_name: str, path: str | None = None) -> str:
    """An app's kv-v2 path under the stack's mount: `path` when given, else the app's name. The one
    home of that default: the model (`App`), `stack new`, `app add` and `migrate` all call it."""
    return path or app_name


def raw_vault_entry(app: Mapping[str, Any], path: str | None = None) -> dict[str, Any]:
    """The `vault:` entry a stack file gets for an app that has none (its raw mapping)."""
    return {"path": default_vault_path(cast(str, app.get("name")), path)}  # as written (validated later)


class Vault(BackendSpec):
    def values_hint(self, stack: str, secret: str) -> str:
        return f"push it: ksecrets vault push --stack {stack} --path APP --from-env-file F"

    def put_values(self, stack: str, secret: str, paths: Iterable[str]) -> tuple[str, str]:
        how = "; ".join(f"ksecrets vault push --stack {stack} --path {p} --from-env-file FILE" for p in paths)
        return how, "live in Vault"

    def migrate_material(self) -> str:
        return "Vault: VAULT_ADDR and a token that reads the stack's kv paths (VAULT_TOKEN or ~/.vault-token)"

    def migrate_switch(
        self, config: MutableMapping[str, Any], stack: str, prefix: str, keys: dict[tuple[str, str], list[str]]
    ) -> None:
        super().migrate_switch(config, stack, prefix, keys)
        # `handover`: the operator takes over the Secrets that exist (destination.overwrite) and
        # the pod templates keep their checksum until `migrate --finish`.
        config[prefix + "vaultMigration"] = "handover"
        if config.get(prefix + "vault") is None:
            config[prefix + "vault"] = {}
        for app in _apps(config, prefix):
            if app.get("vault") is None:
                app["vault"] = {"path": str(app.get("name"))}
            wanted = keys.get((str(app.get("namespace")), str(app.get("name"))))
            if not app.get("keys") and wanted:
                app["keys"] = list(wanted)

    def stack_new(self, config: MutableMapping[str, Any], stack: str, prefix: str) -> None:
        config.setdefault(prefix + "sealedSecrets", {}).pop("certificate", None)
        for app in _apps(config, prefix):
            app.setdefault("vault", raw_vault_entry(app))

    def stack_new_steps(self, stack: str, secrets: Iterable[str]) -> list[str]:
        return [
            f"vault: ksecrets vault bootstrap --stack {stack}; then per app: "
            f"ksecrets vault push --stack {stack} --path APP --from-env-file .env.{stack}"
        ]

    def app_add_steps(self, stack: str, secret: str, app: dict[str, Any]) -> list[str]:
        return [
            f"ksecrets vault bootstrap --stack {stack} (its policy and role), then "
            f"ksecrets vault push --stack {stack} --path {app['vault']['path']} --from-env-file .env.{stack}"
        ]


BACKEND = Vault("vault", vault=True, migration_phases=("handover", "release"), migrate_out=True, migrate_in=True)
