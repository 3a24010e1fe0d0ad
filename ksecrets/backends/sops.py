"""Backend `sops`: values live in SOPS-encrypted Secret manifests (age) committed per stack under
`secrets/<stack>/<secretName>.sops.yaml`, written by `ksecrets sops set`; `ksecrets export` puts
them into the apps layer as they are and kustomize-controller decrypts them with the age key in
the Secret `sops.keySecret` (the apps Kustomization's `decryption`). Flux only: `pulumi up` does
not apply them."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

from ksecrets.backends.base import BackendSpec

# Where a stack's encrypted Secrets live, relative to the repository root (the one home of the name).
SECRETS_DIR = "secrets"
FILE_SUFFIX = ".sops.yaml"


def secret_file(stack: str, secret: str) -> str:
    """The committed SOPS file of one Secret of a stack, relative to the repository root."""
    return f"{SECRETS_DIR}/{stack}/{secret}{FILE_SUFFIX}"


class Sops(BackendSpec):
    def values_hint(self, stack: str, secret: str) -> str:
        return f"encrypt it: ksecrets sops set --stack {stack} --name {secret} --from-env-file F"

    def put_values(self, stack: str, secret: str, paths: Iterable[str]) -> tuple[str, str]:
        how = f"ksecrets sops set --stack {stack} --name {secret} --from-env-file FILE"
        return how, f"are SOPS files ({secret_file(stack, secret)})"

    def cannot_rotate(self, secret: str, key: str) -> str:
        return f"backend {self.name} keeps values in SOPS files; rotate with `ksecrets sops set` and commit"

    def migrate_material(self) -> str:
        return "the stack's age key: --age-key-file FILE or SOPS_AGE_KEY_FILE"

    def migrate_switch(
        self, config: MutableMapping[str, Any], stack: str, prefix: str, keys: dict[tuple[str, str], list[str]]
    ) -> None:
        super().migrate_switch(config, stack, prefix, keys)
        # `handover` until `migrate --finish`: the pod templates keep the sealed checksum (no
        # rollout at the switch) and the Flux applier keeps its rights to prune the SealedSecrets.
        config[prefix + "vaultMigration"] = "handover"
        if config.get(prefix + "sops") is None:
            config[prefix + "sops"] = {"recipients": []}

    def stack_new(self, config: MutableMapping[str, Any], stack: str, prefix: str) -> None:
        super().stack_new(config, stack, prefix)
        section = config.setdefault(prefix + "sops", {})
        section.setdefault("recipients", [])  # filled by `stack new --age-recipient` or by hand

    def stack_new_steps(self, stack: str, secrets: Iterable[str]) -> list[str]:
        return [
            f"age key: ksecrets keygen --stack {stack} --backup-file ~/safe/{stack}-age.ksbackup --print-secret "
            "| kubectl apply -f - (the recipient goes into k8s-secrets:sops.recipients, the key only into the "
            "encrypted backup and the cluster's Secret)",
            *(f"values: ksecrets sops set --stack {stack} --name {s} --from-env-file .env.{stack}" for s in secrets),
        ]

    def app_add_steps(self, stack: str, secret: str, app: dict[str, Any]) -> list[str]:
        return [f"ksecrets sops set --stack {stack} --name {secret} --from-env-file .env.{stack}"]


BACKEND = Sops("sops", sops_files=True, migration_phases=("handover", "uninstall"), migrate_out=True, migrate_in=True)
