"""`ksecrets backup` and `ksecrets restore`: the controller's sealing keys in an encrypted file.

    kubectl get secret -n kube-system -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml \\
      | ksecrets backup --out ~/safe/keys-2026-11.ksbackup
    ksecrets restore --backup ~/safe/keys-2026-11.ksbackup | kubectl apply -f -

Keeping backups current (the controller makes a new key every 30 days):

    ksecrets backup --new-offline-key --public-out certs/staging-keybackup.pub --private-out ~/safe/keybackup.key
    ksecrets backup --check ~/safe/keys.ksbackup [--stack S]        # which stack certificates it lacks
    kubectl get secret -n kube-system -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml \\
      | ksecrets backup --check /mnt/keybackup/ --keys-from-stdin     # which live keys it lacks
    ksecrets backup --import /mnt/keybackup/ --offline-key ~/safe/keybackup.key --import-out F.ksbackup

The passphrase of a .ksbackup comes from KSECRETS_BACKUP_PASSPHRASE or a prompt on the terminal;
the offline key's from KSECRETS_OFFLINE_KEY_PASSPHRASE or a prompt.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ksecrets.cli import runs
from ksecrets.cli.flags import add_format_flag, add_root_flag, add_stacks_flag

# The work is done in `backup_run.py` (module-level imports), loaded only when a command runs.
IMPL = "ksecrets.cli.backup_run"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "backup",
        help="encrypt the controller's key Secrets (stdin) into a backup file; check, import, offline key",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", metavar="FILE", help="the backup file (mode 0600, never overwritten)")
    mode.add_argument(
        "--check",
        nargs="+",
        type=Path,
        metavar="F",
        help="backups to check: .ksbackup files, .kskey files or directories of them",
    )
    mode.add_argument(
        "--import",
        dest="import_",
        nargs="+",
        type=Path,
        metavar="F",
        help=".kskey files or directories the key-backup CronJob wrote",
    )
    mode.add_argument(
        "--new-offline-key", action="store_true", help="make the offline key pair the key-backup CronJob encrypts to"
    )
    add_stacks_flag(p, "--check: this stack's certificate (repeatable; default every stack with one)")
    p.add_argument(
        "--keys-from-stdin",
        action="store_true",
        help="--check: the key Secrets on stdin (kubectl get secret -l ... -o yaml), not the stacks",
    )
    add_root_flag(p)
    p.add_argument("--offline-key", type=Path, metavar="FILE", help="--import: the offline private key")
    p.add_argument(
        "--allow-unknown-key",
        action="store_true",
        help="--import: also keys whose fingerprint no stack certificate and no sealed entry of --root has "
        "(by default they are skipped: anyone who can write the backup folder can make such a file)",
    )
    p.add_argument(
        "--import-out",
        dest="import_out",
        metavar="FILE",
        help="--import: write a .ksbackup instead of printing the Secrets",
    )
    p.add_argument("--public-out", type=Path, metavar="FILE", help="--new-offline-key: public key (commit it)")
    p.add_argument(
        "--private-out",
        type=Path,
        metavar="FILE",
        help="--new-offline-key: private key, passphrase-encrypted (keep it offline)",
    )
    p.set_defaults(func=runs(IMPL, "run_backup"))

    r = subparsers.add_parser(
        "restore",
        help="print the key Secrets of a backup file, for kubectl apply",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--backup", required=True, metavar="FILE")
    add_format_flag(r, default="yaml")
    r.add_argument(
        "--age-key-out",
        metavar="FILE",
        default=None,
        help="instead: write the age key file of the backup's age key Secret (a sops stack's key; mode 0600, "
        "never inside a repository), for SOPS_AGE_KEY_FILE",
    )
    r.set_defaults(func=runs(IMPL, "run_restore"))
