"""Backend `manual`: values are Pulumi config secrets (`k8s-secrets:manualValues`), applied as plain
Secrets by `pulumi up` and never exported to k8s/.

`ksecrets migrate` reads them out with the `pulumi` CLI. Its phase `release` (`migrate --prepare`)
hands the Secrets over in place: `pulumi up` records `retainOnDelete` on them (and writes the
sealed-secrets controller's `managed` annotation: manifests/manual.py), so the `pulumi up` after the
switch forgets them instead of deleting them, and the new backend takes them over."""

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

    def migrate_apply(self, stack: str) -> str:
        return (
            f"pulumi up --stack {stack} (its state records retainOnDelete on the manual Secrets, and they get "
            "the sealed-secrets controller's managed annotation)"
        )

    def migrate_release(self, stack: str) -> str:
        return (
            f"pulumi up --stack {stack}: it forgets the manual Secrets (retainOnDelete, recorded by the "
            "`pulumi up` after --prepare) and leaves them for the new backend to take over"
        )

    def cannot_adopt(self) -> str:
        return f"backend {self.name} keeps values in Pulumi config; adopt seals (sealed-secrets) or pushes (vault)"


BACKEND = Manual("manual", pulumi_values=True, migration_phases=("release",), migrate_out=True)
