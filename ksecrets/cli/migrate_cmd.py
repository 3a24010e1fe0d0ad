"""`ksecrets migrate --stack S --to vault (--recovery-private-key K | --backup F)`.

Unseals the stack's sealed entries in memory, pushes them to Vault, and only when every push
succeeded switches the stack file to the vault backend (see `ksecrets.vault.migrate`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ksecrets.cli.flags import add_recovery_flags



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="move a sealed-secrets stack to Vault with no value lost",
                       description="Unseal every sealed entry of the stack in memory, push each Secret to "
                                   "<kvMount>/<app.vault.path>, then switch the stack file's backend to vault.")
    p.add_argument("--stack", required=True, help="the stack (Pulumi.<stack>.yaml)")
    p.add_argument("--to", required=True, choices=("vault",), help="the new backend")
    add_recovery_flags(p)
    p.add_argument("--root", default=".", type=Path, help="where the stack files are (default: .)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ksecrets.sealing.cliutil import recovery_keys

    from ksecrets.config.load import load_stack_file
    from ksecrets.config.model import VaultConfig
    from ksecrets.vault.client import make_client
    from ksecrets.vault.migrate import migrate_to_vault

    path = Path(args.root) / f"Pulumi.{args.stack}.yaml"
    cfg = load_stack_file(path)  # bad stack names and files fail before any key is read
    keys = recovery_keys(args)
    client = make_client(cfg.vault or VaultConfig())
    report = migrate_to_vault(client, path, keys)
    for line in report.lines():
        print(line)
    if report.switched:
        print(f"next: ksecrets export --stack {args.stack} (VaultStaticSecrets replace the SealedSecrets), "
              f"then ksecrets vault bootstrap --stack {args.stack}")
    return 0
