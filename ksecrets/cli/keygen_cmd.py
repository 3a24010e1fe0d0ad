"""`ksecrets keygen --stack S`: a controller-compatible sealing key pair for a stack.

Writes the public certificate to the stack's certificate path (default `certs/<stack>.pem`) and the
private key only into an encrypted backup file; `--print-secret` also prints the
`kubernetes.io/tls` key Secret for bringing your own key to a cluster:

    ksecrets keygen --stack staging --backup-file ~/safe/staging.ksbackup --print-secret | kubectl apply -f -
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ksecrets.errors import KsecretsError
from ksecrets.cli.flags import add_root_flag, add_stack_flag


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "keygen",
        help="make a sealing key pair for a stack (cert in certs/, key in a backup)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_stack_flag(p)
    p.add_argument(
        "--backup-file",
        required=True,
        metavar="FILE",
        help="where the encrypted private key goes (keep it outside Git); never overwritten",
    )
    p.add_argument(
        "--print-secret",
        action="store_true",
        help="print the kubernetes.io/tls key Secret (plaintext private key!) to stdout",
    )
    p.add_argument("--force", action="store_true", help="replace an existing certificate (then run reseal)")
    add_root_flag(p)
    p.set_defaults(func=run)


def _stack_settings(root: Path, stack: str) -> tuple[str, str, bool]:
    """(certificate path as configured or default, controller namespace, stack file needs the path set)."""
    from ksecrets.config.load import stack_name, stack_path

    path = stack_path(stack, root)
    problem = stack_name(stack)
    if problem:
        raise KsecretsError(f"--stack: {problem}")
    if not path.exists():
        from ksecrets.config.fields import did_you_mean
        from ksecrets.config.names import stack_files

        known = [p.name[len("Pulumi.") : -len(".yaml")] for p in stack_files(root)]
        raise KsecretsError(
            f"--stack {stack}: no stack file {path.name} in {root}{did_you_mean(stack, known)}; "
            f"create it first: ksecrets stack new {stack} --backend sealed-secrets"
        )
    from ksecrets.config.stackfile import SEALED_SECRETS, load_round_trip

    doc, _, _ = load_round_trip(path)
    section = ((doc or {}).get("config") or {}).get(SEALED_SECRETS) or {}
    cert = section.get("certificate")
    from ksecrets.usecases.keygen import DEFAULT_CONTROLLER_NAMESPACE

    return cert or f"certs/{stack}.pem", section.get("controllerNamespace") or DEFAULT_CONTROLLER_NAMESPACE, not cert


def run(args: argparse.Namespace) -> int:
    from ksecrets import yamlio
    from ksecrets.sealing.backup import get_passphrase
    from ksecrets.usecases.keygen import check_targets, generate

    root = Path(args.root)
    rel, namespace, set_path = _stack_settings(root, args.stack)
    backup = Path(args.backup_file)
    check_targets(root, rel, backup, force=args.force)
    passphrase = get_passphrase(confirm=True)
    made = generate(root, rel, backup, passphrase, namespace=namespace, force=args.force)
    if set_path:
        from ksecrets.config.stackfile import set_certificate_path, stack_path, update_stack_file

        update_stack_file(stack_path(args.stack, root), lambda c: set_certificate_path(c, rel))
    sys.stderr.write(f"{rel}: {made.fingerprint}, expires {made.expires}\n")
    sys.stderr.write(f"{backup}: private key saved, encrypted (mode 0600)\n")
    if made.backup_inside_root:
        sys.stderr.write(f"warning: {backup} is inside {root.resolve()}; keep key backups out of Git\n")
    if args.print_secret:
        sys.stdout.write(yamlio.dump(made.manifest))
    return 0
