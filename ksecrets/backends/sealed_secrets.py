"""Backend `sealed-secrets`: values are sealed (Bitnami SealedSecrets) into the stack file with the
stack's public certificate and exported to k8s/; the controller in the cluster unseals them."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

from ksecrets.backends.base import BackendSpec


class SealedSecrets(BackendSpec):
    def values_hint(self, stack: str, secret: str) -> str:
        return f"seal it: ksecrets seal --stack {stack} --name {secret} --from-env-file F"

    def migrate_material(self) -> str:
        return "the sealing private key: --recovery-private-key FILE or --backup FILE (as `ksecrets unseal`)"

    def migrate_switch(
        self, config: MutableMapping[str, Any], stack: str, prefix: str, keys: dict[tuple[str, str], list[str]]
    ) -> None:
        super().migrate_switch(config, stack, prefix, keys)
        section = config.get(prefix + "sealedSecrets")
        if section is None:
            section = config[prefix + "sealedSecrets"] = {}
        section.setdefault("certificate", f"certs/{stack}.pem")

    def stack_new(self, config: MutableMapping[str, Any], stack: str, prefix: str) -> None:
        super().stack_new(config, stack, prefix)
        config[prefix + "sealedSecrets"]["certificate"] = f"certs/{stack}.pem"

    def stack_new_steps(self, stack: str, secrets: Iterable[str]) -> list[str]:
        return [
            f"certificate: kubeseal --fetch-cert --controller-namespace kube-system > certs/{stack}.pem "
            f"(from the new cluster), or ksecrets keygen --stack {stack} --backup-file ~/safe/{stack}.ksbackup",
            *(f"values: ksecrets seal --stack {stack} --name {s} --from-env-file .env.{stack}" for s in secrets),
        ]

    def app_add_steps(self, stack: str, secret: str, app: dict[str, Any]) -> list[str]:
        return [f"ksecrets seal --stack {stack} --name {secret} --from-env-file .env.{stack}"]


BACKEND = SealedSecrets(
    "sealed-secrets",
    seals=True,
    migration_phases=("install", "release", "uninstall"),
    migrate_out=True,
    migrate_in=True,
)
