"""`ksecrets migrate --stack S --to B [--prepare | --finish] [key material]`.

sealed-secrets -> vault: `--prepare` adds Vault and the operator to the sealed-secrets stack (no
Vault needed). Then, with the recovery keys, the stack's sealed entries are unsealed in memory and
pushed to Vault, and only when every push succeeded is the stack file switched to the vault
backend. `--finish` ends the handover. See `ksecrets.usecases.vault_migrate`.

Every other pair (sealed-secrets, sops, vault; manual as a source): `ksecrets.usecases.migrate`.
The source's key material: --recovery-private-key/--backup (sealed-secrets), --age-key-file or
SOPS_AGE_KEY_FILE (sops), VAULT_ADDR/VAULT_TOKEN (vault), the `pulumi` CLI (manual). A manual
stack's phases reach the cluster through `pulumi up` (`BackendSpec.migrate_apply`, `migrate_release`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ksecrets import backends
from ksecrets.cli.flags import add_recovery_flags, add_root_flag, add_stack_flag
from ksecrets.errors import KsecretsError

KEY_FILE_ENV = "SOPS_AGE_KEY_FILE"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrate",
        help="move a stack's values to another backend with no value lost",
        description="Read every value of the stack out of its backend (in memory), write each into the "
        "new backend, read back, then switch the stack file's backend.",
    )
    add_stack_flag(p)
    p.add_argument(
        "--to",
        required=True,
        choices=[b.name for b in backends.all_specs() if b.migrate_in],
        help="the new backend",
    )
    phase = p.add_mutually_exclusive_group()
    phase.add_argument(
        "--prepare",
        action="store_true",
        help="phase 1: the stack's Secrets are kept for the next backend to take over in place (SealedSecrets "
        "release them; SOPS files and VaultStaticSecrets are left by Flux; Pulumi retains manual Secrets); a "
        "sealed-secrets stack --to vault also installs Vault and the operator",
    )
    phase.add_argument(
        "--finish", action="store_true", help="phase 3: end the handover once the VaultStaticSecrets have synced"
    )
    p.add_argument(
        "--no-cluster-check",
        action="store_true",
        help="--finish away from Vault: do not ask the stack's cluster (kubectl, its kubernetes:context) whether "
        "VaultStaticSecrets are left; you checked that `kubectl get vaultstaticsecret -A` lists none",
    )
    add_recovery_flags(p)
    p.add_argument(
        "--age-key-file",
        action="append",
        default=[],
        metavar="FILE",
        help=f"the sops stack's age key (default: {KEY_FILE_ENV}); repeatable",
    )
    p.add_argument(
        "--age-recipient",
        action="append",
        default=[],
        metavar="AGE1...",
        help="--to sops: an age public key the SOPS files are encrypted for (added to sops.recipients)",
    )
    add_root_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ksecrets.cli.util import recovery_keys
    from ksecrets.config.load import load_stack_file, stack_path
    from ksecrets.config.model import VaultConfig
    from ksecrets.usecases.vault_migrate import migrate_to_vault
    from ksecrets.vault.client import make_client

    path = stack_path(args.stack, args.root)
    cfg = load_stack_file(path)  # bad stack names and files fail before any key is read
    if args.no_cluster_check and not args.finish:
        raise KsecretsError("--no-cluster-check: only with --finish")
    if not (cfg.spec.seals and backends.get(args.to).vault):
        return _generic(args, cfg)
    if args.prepare or args.finish:
        return _phase(args, path)
    keys = recovery_keys(args)
    client = make_client(cfg.vault or VaultConfig())
    report = migrate_to_vault(client, path, keys)
    for line in report.lines():
        print(line)
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if report.switched:
        print(
            f"next: ksecrets export --stack {args.stack} (VaultStaticSecrets take over the SealedSecrets' Secrets), "
            f"commit; once `kubectl get vaultstaticsecret -A` shows them synced: "
            f"ksecrets migrate --stack {args.stack} --to vault --finish"
        )
    return 0


def _phase(args: argparse.Namespace, path: Path) -> int:
    from ksecrets.usecases.vault_migrate import finish, prepare

    if args.recovery_private_key or args.backup:
        raise KsecretsError("--prepare and --finish need no keys")
    if args.prepare:
        wrote = prepare(path)
        print(f"{path.name}: vaultMigration: install" + ("" if wrote else " (file unchanged)"))
        print(
            f"next: ksecrets export --stack {args.stack}, commit (Flux installs Vault and the operator); "
            f"initialise and unseal Vault; ksecrets vault bootstrap --stack {args.stack}; "
            f"ksecrets migrate --stack {args.stack} --to vault --recovery-private-key K (or --backup F)"
        )
    else:
        wrote = finish(path)
        print(f"{path.name}: vaultMigration removed" + ("" if wrote else " (file unchanged)"))
        print(f"next: ksecrets export --stack {args.stack}, commit")
    return 0


def _generic(args: argparse.Namespace, cfg) -> int:
    import os

    from ksecrets.cli.util import recovery_keys
    from ksecrets.config.model import VaultConfig
    from ksecrets.usecases import migrate
    from ksecrets.usecases.vault_migrate import finish
    from ksecrets.vault.operator import static_secrets

    target = backends.get(args.to)
    if args.finish:
        wrote = finish(_path(args), static_secrets=None if args.no_cluster_check else static_secrets)
        print(f"{_path(args).name}: vaultMigration removed" + ("" if wrote else " (file unchanged)"))
        print(f"next: ksecrets export --stack {args.stack}, commit")
        return 0
    key_files = args.age_key_file or ([os.environ[KEY_FILE_ENV]] if os.environ.get(KEY_FILE_ENV) else [])
    if args.prepare:
        if args.recovery_private_key or args.backup:
            raise KsecretsError("--prepare needs no sealing key")
        identities = migrate.identities_of(key_files) if cfg.spec.sops_files else []
        what, written = migrate.prepare(args.root, args.stack, args.to, identities)
        print(f"{what}: {', '.join(written) if written else 'nothing to change'}")
        print(
            f"next: {cfg.spec.migrate_apply(args.stack)}, so the Secrets are released to the next backend; "
            f"then ksecrets migrate --stack {args.stack} --to {args.to} with the stack's keys"
        )
        return 0
    migrate.refuse_dynamic(cfg, args.to)  # before any key material is asked for
    material = migrate.Material(age_recipients=tuple(args.age_recipient))
    if cfg.spec.seals:
        material.private_keys = recovery_keys(args)
    if cfg.spec.sops_files or (target.sops_files and key_files):
        material.age_identities = migrate.identities_of(key_files)
    if cfg.spec.vault or target.vault:
        from ksecrets.vault.client import make_client

        material.vault_client = make_client(cfg.vault or VaultConfig())
    report = migrate.migrate(args.root, args.stack, args.to, material)
    for line in report.lines():
        print(line)
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if report.switched:
        then = (
            "; once `kubectl get vaultstaticsecret -A` shows them synced: "
            if target.vault
            else "; once Flux has applied it (the old objects pruned)"
            + (", and the VaultStaticSecrets deleted as the warning says: " if cfg.spec.vault else ": ")
        ) + f"ksecrets migrate --stack {args.stack} --to {args.to} --finish"
        release = cfg.spec.migrate_release(args.stack)
        print(f"next: ksecrets export --stack {args.stack}, commit{'; then ' + release if release else ''}{then}")
    return 0


def _path(args: argparse.Namespace) -> Path:
    from ksecrets.config.load import stack_path

    return Path(stack_path(args.stack, args.root))
