"""`ksecrets migrate --stack S --to vault`: move a sealed-secrets stack to Vault with no value lost,
on a cluster that has no Vault yet, without a moment where an app's Secret is missing.

Three steps, each a stack-file edit that `ksecrets export` turns into one Flux apply:

- `--prepare` (phase `install`, no Vault needed): the sealed-secrets stack also installs Vault
  and the operator (`vaultMigration: install`, a `vault:` section, `vault.path` and `keys` per
  app). Its SealedSecrets now tell the controller to drop its ownerReference from their Secrets
  and keep managing them by annotation (`HANDOVER_ANNOTATIONS`): pruning a SealedSecret later
  leaves its Secret in place. No pod template changes, so nothing rolls.
- the switch (below; phase `handover`): values pushed, `backend: vault`. The export has
  VaultStaticSecrets with `destination.overwrite: true` (the operator takes over the existing
  Secret of the same name and becomes its owner) and no SealedSecrets (Flux prunes them; their
  Secrets stay). Pod templates keep their sealed checksum annotation, so the apply rolls no
  Deployment: the operator restarts them (`rolloutRestartTargets`) after it wrote the Secret.
- `--finish` (once `kubectl get vaultstaticsecret` shows them synced): `vaultMigration` goes;
  the pod templates drop the sealed checksum (one rollout, onto the operator's Secret).

The switch:
1. Unseal every sealed entry of the stack in memory with the recovery keys (nothing is written
   to disk); every entry must belong to an app (its `secretName` and namespace), or we stop: an
   entry no app consumes would have nowhere to go.
2. Check every value is UTF-8 text (kv-v2 holds JSON strings) before anything is pushed.
3. Push each Secret to `<kvMount>/<app.vault.path>` (check-and-set, only when it differs) and read
   it back; any failure stops here with the stack file untouched.
4. Only then edit the stack file: `backend: vault`, `vault: {path: ...}` on each app that lacks
   it and the Secret's keys as `keys:` where the app declared none (the vault backend knows keys
   only from config). The `sealed:` entries stay, so switching back is one line.

The next `ksecrets export` then writes VaultStaticSecrets where the SealedSecrets were.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ksecrets.backends.vault import raw_vault_entry
from ksecrets.config import stackfile
from ksecrets.config.load import load_stack_file, parse, raw_from_stack_file, raw_from_text
from ksecrets.config.names import PREFIX
from ksecrets.config.model import App, SealedEntry, StackConfig, raw_secret_name
from ksecrets.errors import KsecretsError
from ksecrets.fileio import locked
from ksecrets.manifests.sealed_secrets import sealed_secret
from ksecrets.sealing.sealedsecret import unseal
from ksecrets.vault import kv, operator
from ksecrets.vault.client import VaultClient
from ksecrets.vault.operator import StaticSecret


@dataclass
class MigrationReport:
    pushed: list[str] = field(default_factory=list)  # "<mount>/data/<path>: version N (added: ...)"
    switched: bool = False
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return self.pushed + (["backend switched to vault"] if self.switched else ["stack file unchanged"])


def app_for_entry(cfg: StackConfig, entry: SealedEntry) -> App | None:
    for app in cfg.apps:
        if app.namespace == entry.namespace and app.secret_name == entry.name:
            return app
    return None


def vault_path(app: App) -> str:
    return app.vault.path if app.vault else app.name


def unsealed_values(cfg: StackConfig, private_keys: Iterable[Any]) -> list[tuple[App, dict[str, str]]]:
    """(app, key → text value) for each sealed entry, decrypted in memory."""
    keys = list(private_keys)
    out: list[tuple[App, dict[str, str]]] = []
    orphans = []
    for i, entry in enumerate(cfg.sealed):
        app = app_for_entry(cfg, entry)
        if app is None:
            orphans.append(f"{entry.namespace}/{entry.name}")
            continue
        where = f"{cfg.source}: sealed[{i}] ({entry.namespace}/{entry.name})"
        if entry.type != "Opaque":
            # The operator creates Opaque Secrets; a typed one (TLS, docker config) would change kind.
            raise KsecretsError(
                f"{where}: type {entry.type} is not Opaque, which the Vault Secrets Operator "
                "creates; move it by hand; nothing was pushed"
            )
        secret = unseal(sealed_secret(cfg, entry), keys, where)
        values: dict[str, str] = {}
        for key, b64 in sorted((secret.get("data") or {}).items()):
            try:
                values[key] = base64.b64decode(b64).decode("utf-8")
            except UnicodeDecodeError:
                raise KsecretsError(
                    f"{where}: key {key}: the value is not UTF-8 text, which Vault kv cannot hold; nothing was pushed"
                ) from None
        out.append((app, values))
    if orphans:
        raise KsecretsError(
            f"{cfg.source}: sealed entries no app uses ({', '.join(orphans)}): give them an app "
            "(secretName, namespace) or remove them; nothing was pushed"
        )
    paths: dict[str, App] = {}
    for app, _ in out:
        p = vault_path(app)
        if p in paths and paths[p] is not app:
            raise KsecretsError(
                f"{cfg.source}: apps {paths[p].name} and {app.name} would share Vault path {p!r}; "
                "set vault.path on one of them; nothing was pushed"
            )
        paths[p] = app
    return out


MIGRATION = PREFIX + "vaultMigration"
VAULT = PREFIX + "vault"


def _set_after_backend(config: CommentedMap, key: str, value: Any) -> None:
    if key in config:
        config[key] = value
        return
    keys = list(config.keys())
    pos = keys.index(stackfile.BACKEND) + 1 if stackfile.BACKEND in keys else len(keys)
    config.insert(pos, key, value)


def _switch(config: CommentedMap, keys_by_app: dict[tuple[str, str], list[str]]) -> None:
    config[stackfile.BACKEND] = "vault"
    _set_after_backend(config, MIGRATION, "handover")
    _add_app_vault(config, keys_by_app)


def _add_app_vault(config: CommentedMap, keys_by_app: dict[tuple[str, str], list[str]]) -> None:
    for app in config.get(stackfile.APPS) or []:
        if not isinstance(app, CommentedMap):
            continue
        ident = (str(app.get("namespace")), str(app.get("name")))
        if app.get("vault") is None:
            v = CommentedMap()
            v["path"] = str(app.get("name"))
            app["vault"] = v
        if not app.get("keys") and keys_by_app.get(ident):
            seq = CommentedSeq(keys_by_app[ident])
            seq.fa.set_flow_style()
            app["keys"] = seq


def migrate_to_vault(
    client: VaultClient, stack_file: str | os.PathLike[str], private_keys: Iterable[Any]
) -> MigrationReport:
    """Locked from the read to the switch: a `seal --stack` meanwhile cannot be lost."""
    path = Path(stack_file)
    with locked(path, "stack file", source=path.name):
        return _migrate(client, path, private_keys)


def _migrate(client: VaultClient, path: Path, private_keys: Iterable[Any]) -> MigrationReport:
    cfg = load_stack_file(path)
    if cfg.spec.vault:
        raise KsecretsError(f"{cfg.source}: backend: already vault; nothing to migrate")
    if not cfg.spec.seals:
        raise KsecretsError(
            f"{cfg.source}: backend: {cfg.backend} stacks migrate by pushing values "
            "(`ksecrets vault push`), not from sealed entries"
        )
    # The Vault settings the stack will have once switched (defaults if it has no vault section).
    target = _as_vault_stack(path, cfg)
    entries = unsealed_values(cfg, private_keys)
    report = MigrationReport()
    mount = target.vault.kv_mount if target.vault else "secret"
    for app, values in entries:
        result = kv.write_if_changed(client, mount, vault_path(app), values)
        back, version = kv.read_current(client, mount, vault_path(app))
        if back != values:
            raise KsecretsError(
                f"{kv.data_path(mount, vault_path(app))}: version {version} does not hold what was "
                "pushed (changed concurrently?); the stack file is unchanged"
            )
        where = kv.data_path(mount, vault_path(app))
        report.pushed.append(
            f"{where}: version {result.version} ({'written' if result.changed else 'already there'}; "
            f"keys: {', '.join(sorted(values))})"
        )
    keys_by_app = {(app.namespace, app.name): sorted(values) for app, values in entries}

    report.switched = stackfile.update_stack_file(path, lambda c: _switch(c, keys_by_app), check=_check_edit(cfg))
    if cfg.vault_migration != "install":
        report.warnings.append(
            f"{cfg.source}: the stack skipped `migrate --prepare`: its Secrets are still owned by their "
            "SealedSecrets, so when Flux prunes those the Secrets are deleted until the operator writes them "
            "again; apply `--prepare` first on a live cluster"
        )
    return report


def _check_edit(cfg: StackConfig):
    """The edited file must load (read by the loader's own reader, prefix and all), or nothing is written."""

    def check(text: str) -> None:
        parse(raw_from_text(text, cfg.source), stack=cfg.stack, source=cfg.source, root=cfg.root)

    return check


def prepare(stack_file: str | os.PathLike[str]) -> bool:
    """Phase `install`: the sealed-secrets stack installs Vault and the operator, and its
    SealedSecrets release their Secrets. Needs no Vault and no keys. Returns whether it wrote."""
    path = Path(stack_file)
    with locked(path, "stack file", source=path.name):  # read to write, as every edit
        cfg = load_stack_file(path)
        if not cfg.spec.seals:
            raise KsecretsError(f"{cfg.source}: backend: {cfg.backend}; --prepare is for a sealed-secrets stack")
        keys_by_app = {}
        for app in cfg.apps:
            entry = cfg.sealed_entry(app.namespace, app.secret_name)
            if entry is not None:
                keys_by_app[(app.namespace, app.name)] = list(entry.keys)

        def mutate(config: CommentedMap) -> None:
            _set_after_backend(config, MIGRATION, "install")
            if config.get(VAULT) is None:
                config[VAULT] = CommentedMap()
            _add_app_vault(config, keys_by_app)

        return stackfile.update_stack_file(path, mutate, check=_check_edit(cfg))


def kube_context(path: Path) -> str | None:
    """The stack file's `kubernetes:context` (the cluster it deploys to); None when it names none
    (then kubectl's current context, as the Pulumi kubernetes provider does)."""
    from ksecrets import yamlio
    from ksecrets.config.load import read_stack_bytes

    doc = yamlio.load(read_stack_bytes(path, path.name).decode("utf-8", "replace"), path.name)
    config = doc.get("config") if isinstance(doc, dict) else None
    context = config.get("kubernetes:context") if isinstance(config, dict) else None
    return context if isinstance(context, str) and context else None


def finish(
    stack_file: str | os.PathLike[str],
    *,
    static_secrets: Callable[[str | None], list[StaticSecret]] | None = operator.static_secrets,
) -> bool:
    """After the handover: the operator owns the Secrets; the stack becomes a plain vault stack. After
    a switch away from Vault (`uninstall`): the export no longer installs Vault and the operator.

    `uninstall` first asks the stack's cluster (`static_secrets`, with the stack's kubeconfig context)
    for the VaultStaticSecrets left: uninstalling the operator removes its CRDs, which deletes every
    VaultStaticSecret, and the garbage collector then deletes the Secrets they own, the ones the new
    backend took over. While any is left it refuses, naming each and the command that deletes it
    without its Secret. `static_secrets=None` (`--no-cluster-check`) skips the question: the user
    says they checked."""
    path = Path(stack_file)
    cfg = load_stack_file(path)
    if cfg.vault_migration == "uninstall" and static_secrets is not None:
        context = kube_context(path)
        left = static_secrets(context)
        if left:
            where = f"context {context}" if context else "the current kubectl context"
            raise KsecretsError(
                f"{cfg.source}: --finish uninstalls the Vault Secrets Operator, which deletes the "
                f"VaultStaticSecrets left in the cluster ({where}) and the garbage collector the Secrets they own: "
                + ", ".join(f"{s.namespace}/{s.name} (Secret {s.secret or '?'})" for s in left)
                + "; once the new backend wrote those Secrets, delete each without its Secret: "
                + "; ".join(s.orphan_command(context) for s in left)
                + "; the stack file is unchanged"
            )
    with locked(path, "stack file", source=path.name):  # read to write, as every edit
        cfg = load_stack_file(path)
        if cfg.vault_migration not in ("handover", "uninstall"):
            raise KsecretsError(
                f"{cfg.source}: vaultMigration: is {cfg.vault_migration or 'not set'}; --finish follows "
                "the switch (`ksecrets migrate --to vault`), once the VaultStaticSecrets have synced"
            )

        def mutate(config: CommentedMap) -> None:
            del config[MIGRATION]

        return stackfile.update_stack_file(path, mutate, check=_check_edit(cfg))


def _as_vault_stack(path: Path, cfg: StackConfig) -> StackConfig:
    """The stack parsed as if already switched (validates paths, gives the kv mount)."""
    raw = raw_from_stack_file(path)
    raw["backend"] = "vault"
    raw["vaultMigration"] = "handover"
    apps = []
    for app in raw.get("apps") or []:
        app = dict(app)
        app.setdefault("vault", raw_vault_entry(app))
        if not app.get("keys"):
            entry = cfg.sealed_entry(str(app.get("namespace")), str(raw_secret_name(app)))
            if entry is not None:
                app["keys"] = list(entry.keys)
        apps.append(app)
    if apps:
        raw["apps"] = apps
    return parse(raw, stack=cfg.stack, source=cfg.source, root=cfg.root)
