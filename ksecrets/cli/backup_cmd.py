"""`ksecrets backup` and `ksecrets restore`: the controller's sealing keys in an encrypted file.

    kubectl get secret -n kube-system -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml \\
      | ksecrets backup --out ~/safe/keys-2026-11.ksbackup
    ksecrets restore --backup ~/safe/keys-2026-11.ksbackup | kubectl apply -f -

The passphrase comes from KSECRETS_BACKUP_PASSPHRASE or a prompt on the terminal.
"""

from __future__ import annotations

import argparse
import sys

from ksecrets.cli.flags import add_format_flag



def register(subparsers) -> None:
    p = subparsers.add_parser("backup", help="encrypt the controller's key Secrets (stdin) into a backup file",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="FILE", help="the backup file (mode 0600, never overwritten)")
    p.set_defaults(func=run_backup)

    r = subparsers.add_parser("restore", help="print the key Secrets of a backup file, for kubectl apply",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--backup", required=True, metavar="FILE")
    add_format_flag(r, default="yaml")
    r.set_defaults(func=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    from ksecrets.sealing.backup import backup_plaintext, get_passphrase, log2_n_from_env, write_backup
    from ksecrets.sealing.cliutil import read_stdin_text
    from ksecrets.sealing.keys import fingerprint_of_private, keys_from_secrets
    from ksecrets.sealing.secret_input import load_document

    doc = load_document(read_stdin_text("stdin"), "stdin")
    plaintext = backup_plaintext(doc, "stdin")
    passphrase = get_passphrase(confirm=True)
    write_backup(args.out, plaintext, passphrase, log2_n=log2_n_from_env())
    import json

    items = json.loads(plaintext)["items"]
    fps = [fingerprint_of_private(k) for k in keys_from_secrets(items, "stdin")]
    sys.stderr.write(f"{args.out}: {len(items)} key(s) backed up, encrypted (mode 0600): {', '.join(fps)}\n")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from ksecrets import yamlio
    from ksecrets.sealing.backup import get_passphrase, read_backup
    from ksecrets.sealing.cliutil import render

    secrets_ = read_backup(args.backup, get_passphrase(confirm=False))
    if args.format == "json":
        sys.stdout.write(render({"apiVersion": "v1", "kind": "List", "items": secrets_}, "json"))
    else:
        sys.stdout.write(yamlio.dump_all(secrets_))
    return 0
