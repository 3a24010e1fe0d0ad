"""Backend `manual`: values are Pulumi config secrets (`k8s-secrets:manualValues`), applied as plain
Secrets by `pulumi up` and never exported to k8s/."""

from __future__ import annotations

from collections.abc import Iterable

from ksecrets.backends.base import BackendSpec


class Manual(BackendSpec):
    def values_hint(self, stack: str, secret: str) -> str:
        return "set it with pulumi config set --secret"

    def put_values(self, stack: str, secret: str, paths: Iterable[str]) -> tuple[str, str]:
        how = f"pulumi config set --secret --path 'manualValues.{secret}.KEY' VALUE --stack {stack}"
        return how, "are Pulumi config secrets"

    def cannot_rotate(self, secret: str, key: str) -> str:
        return (
            f"backend {self.name} keeps values in Pulumi config; rotate with "
            f"`pulumi config set --secret --path 'k8s-secrets:manualValues.{secret}.{key}'` "
            "and `pulumi up`"
        )

    def migrate_material(self) -> str:
        return "the stack's Pulumi config secrets: the `pulumi` CLI, logged in, with PULUMI_CONFIG_PASSPHRASE if the stack uses one"

    def cannot_adopt(self) -> str:
        return f"backend {self.name} keeps values in Pulumi config; adopt seals (sealed-secrets) or pushes (vault)"


BACKEND = Manual("manual", pulumi_values=True, migrate_out=True)
