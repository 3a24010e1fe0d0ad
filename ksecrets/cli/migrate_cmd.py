"""`ksecrets migrate --stack S --to vault [--prepare | --finish | --recovery-private-key K | --backup F]`.

`--prepare` adds Vault and the operator to the sealed-secrets stack (no Vault needed). Then,
with the recovery keys, the stack's sealed entries are unsealed in memory and pushed to Vault, and
only when every push succeeded is the stack file switched to the vault backend. `--finish` ends
the handover. See `ksecrets.usecases.vault_migrate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ksecrets.cli.flags import add_recovery_flags, add_root_flag, add_stack_flag
from ksecrets.errors import KsecretsError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrate",
        help="move a sealed-secrets stack to Vault with no value lost",
        description="Unseal every sealed entry of the stack in memory, push each Secret to "
        "<kvMount>/<app.vault.path>, then switch the stack file's backend to vault.",
    )
    add_stack_flag(p)
    p.add_argument("--to", required=True, choices=("vault",), help="the new backend")
    phase = p.add_mutually_exclusive_group()
    phase.add_argument(
        "--prepare",
        action="store_true",
        help="phase 1: the sealed-secrets stack also installs Vault and the operator (no Vault needed)",
    )
    phase.add_argument(
        "--finish", action="store_true", help="phase 3: end the handover once the VaultStaticSecrets have synced"
    )
    add_recovery_flags(p)
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
