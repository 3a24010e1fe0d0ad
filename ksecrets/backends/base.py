"""What differs between backends, in one interface: the layers above ask a stack's backend
(`ksecrets.backends.get(cfg.backend)`) instead of comparing its name.

Standard library only, in the base layer: the config model, the builders, the command line's parsers
and the policy pack read it. The flags say which of the project's value mechanisms a backend uses
(each runs code that lives in its own layer: the sealing port and its builder, the Vault port and
its builder, Pulumi's manual Secrets); the methods return the texts and raw-config defaults that
name a backend's own commands. A module per backend (`manual.py`, `sealed_secrets.py`, `vault.py`,
`sops.py`)
defines one `BackendSpec`; `__init__.py` lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BackendSpec:
    name: str
    # Values are SealedSecrets sealed into the stack file (`ksecrets seal`, `reseal`, `verify`): the
    # stack needs its sealing certificate, the builders emit the SealedSecrets, pods roll on a
    # ciphertext digest, rotate re-seals, adopt seals, `migrate --to vault` reads the entries.
    seals: bool = False
    # Values live in Vault KV (`ksecrets vault push`): the stack has a vault section (Vault and its
    # operator installed), every app a vault path, the builders emit VaultStaticSecrets, rotation
    # (PostgreSQL too) and snapshots run in the cluster, adopt pushes, `migrate --to vault` writes here.
    vault: bool = False
    # Values are Pulumi config secrets (`manualValues`), plain Secrets applied by `pulumi up` only and
    # never exported: the one backend whose Secrets may carry data under the policy pack.
    pulumi_values: bool = False
    # Values live in SOPS-encrypted Secret manifests committed per stack (`secrets/<stack>/`,
    # `ksecrets sops set`), exported to the apps layer as they are; kustomize-controller decrypts
    # them with the age key of `sops.keySecret` (the apps Kustomization's `decryption`); adopt
    # encrypts into them. Flux only: `pulumi up` does not apply them.
    sops_files: bool = False
    # The `vaultMigration` phases a stack of this backend may be in (`install`: still sealing,
    # Vault installed beside; `handover`: switched to Vault, the SealedSecrets still there;
    # `release`: its objects (a manual stack's: Pulumi) let go of their Secrets for the next
    # backend; `uninstall`: switched away from Vault, Vault and the operator still installed until
    # `migrate --finish`).
    migration_phases: tuple[str, ...] = ()
    # `ksecrets migrate`: every Secret's values can be read out of this backend (with the source's
    # key material: `migrate_material`), and written into it (after which the stack file is
    # switched: `migrate_switch`). The reading and writing run in `usecases/migrate.py`, by the
    # mechanism flags above (the sealing port, SOPS, the Vault port, Pulumi config).
    migrate_out: bool = False
    migrate_in: bool = False

    # --- texts that name the backend's own commands -------------------------------------------

    def values_hint(self, stack: str, secret: str) -> str:
        """`ksecrets doctor`: how to give a Secret no backend provides its values."""
        raise NotImplementedError(self.name)

    def put_values(self, stack: str, secret: str, paths: Iterable[str]) -> tuple[str, str]:
        """`ksecrets seal --stack` on a stack that does not seal: (the command that does, where the
        values are)."""
        raise NotImplementedError(self.name)

    def cannot_rotate(self, secret: str, key: str) -> str:
        """`ksecrets rotate` on a backend it cannot write (neither `seals` nor `vault`): how to."""
        raise NotImplementedError(self.name)

    @property
    def adopts(self) -> bool:
        """`ksecrets adopt` writes into it, by its mechanism: seals, pushes to Vault, or encrypts
        SOPS files (`ksecrets/adopt.py`)."""
        return self.seals or self.vault or self.sops_files

    def cannot_adopt(self) -> str:
        """`ksecrets adopt` into a backend it cannot write (not `seals`, `vault` nor `sops_files`): why."""
        raise NotImplementedError(self.name)

    # --- `ksecrets migrate` ---------------------------------------------------------------------

    def migrate_material(self) -> str:
        """What `migrate` needs to read every value out of a stack of this backend."""
        raise NotImplementedError(self.name)

    def migrate_apply(self, stack: str) -> str:
        """How a `migrate` phase of a stack of this backend reaches the cluster (`--prepare`'s next step)."""
        return f"ksecrets export --stack {stack}, commit"

    def migrate_release(self, stack: str) -> str:
        """After the switch away from this backend: what lets go of its Secrets for the new one ("" when
        the new backend's own objects do, through Git)."""
        return ""

    def migrate_switch(
        self, config: MutableMapping[str, Any], stack: str, prefix: str, keys: dict[tuple[str, str], list[str]]
    ) -> None:
        """The stack's config made this backend's, once every value was written in: `backend:`
        and what the backend needs to serve them. `keys` maps an app's (namespace, name) to the keys of
        its Secret that were written. The old backend's values stay where they were, so switching back is one line."""
        config[prefix + "backend"] = self.name
        config.pop(prefix + "vaultMigration", None)

    # --- `ksecrets stack new` and `ksecrets app add` ------------------------------------------

    def stack_new(self, config: MutableMapping[str, Any], stack: str, prefix: str) -> None:
        """The new stack's config (copied from another stack, without values; keys `prefix + name`)
        made this backend's: by default no certificate, no Vault section, no app vault paths or
        PostgreSQL rotations (they need Vault)."""
        ss = config.setdefault(prefix + "sealedSecrets", {})
        ss.pop("certificate", None)
        for app in _apps(config, prefix):
            if "vault" in app:
                app.pop("vault")
                app["rotation"] = [r for r in app.get("rotation") or [] if r.get("generator", "random") != "postgres"]
                if not app["rotation"]:
                    app.pop("rotation")
        config.pop(prefix + "vault", None)

    def stack_new_steps(self, stack: str, secrets: Iterable[str]) -> list[str]:
        """`ksecrets stack new`'s next steps that put values in (before doctor and CI)."""
        return []

    def app_add_steps(self, stack: str, secret: str, app: dict[str, Any]) -> list[str]:
        """`ksecrets app add`'s next steps that put the new app's values in."""
        return []


def _apps(config: MutableMapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [app for app in config.get(prefix + "apps") or [] if isinstance(app, dict)]
