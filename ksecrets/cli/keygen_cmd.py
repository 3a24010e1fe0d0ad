"""`ksecrets keygen --stack S`: a controller-compatible sealing key pair for a sealed-secrets stack,
or the age key of a sops stack.

sealed-secrets: writes the public certificate to the stack's certificate path (default
`certs/<stack>.pem`) and the private key only into an encrypted backup file; `--print-secret` also
prints the `kubernetes.io/tls` key Secret for bringing your own key to a cluster:

    ksecrets keygen --stack staging --backup-file ~/safe/staging.ksbackup --print-secret | kubectl apply -f -

sops: adds the key's recipient (age1...) to `k8s-secrets:sops.recipients` and writes the identity
only into the encrypted backup (and `--age-key-out`, outside the repository); `--print-secret`
prints the Secret the apps Kustomization's `decryption.secretRef` names (`age.agekey`). A second
key (a person joining) needs `--add` and keeps the first; then `ksecrets sops updatekeys`:

    ksecrets keygen --stack dev --backup-file ~/safe/dev-age.ksbackup --print-secret | kubectl apply -f -
    ksecrets keygen --stack dev --add --backup-file ~/safe/dev-alice.ksbackup --age-key-out ~/.config/dev.agekey
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ksecrets.errors import KsecretsError
from ksecrets.cli.flags import add_root_flag, add_stack_flag


def register(subparsers) -> None:
    from ksecrets.cli import SUBCOMMANDS

    p = subparsers.add_parser(
        "keygen",
        help=SUBCOMMANDS["keygen"][1],
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
    p.add_argument(
        "--add",
        action="store_true",
        help="sops: add a key to a stack that has recipients already (they are kept; then sops updatekeys)",
    )
    p.add_argument(
        "--age-key-out",
        metavar="FILE",
        default=None,
        help="sops: also write the age key file (mode 0600, never inside the repository), for SOPS_AGE_KEY_FILE",
    )
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


def _is_sops_stack(root: Path, stack: str) -> bool:
    from ksecrets import backends
    from ksecrets.config.load import stack_path
    from ksecrets.config.stackfile import BACKEND, load_round_trip

    path = stack_path(stack, root)
    if not path.is_file():
        return False
    doc, _, _ = load_round_trip(path)
    spec = backends.find(str(((doc or {}).get("config") or {}).get(BACKEND)))
    return spec is not None and spec.sops_files


def run_age(args: argparse.Namespace, root: Path) -> int:
    from ksecrets import yamlio
    from ksecrets.sealing.backup import get_passphrase, log2_n_from_env
    from ksecrets.usecases.sops_keys import keygen_age

    if args.force:
        raise KsecretsError("--force: a sops stack's recipients are never replaced; use --add")
    done = keygen_age(
        root,
        args.stack,
        backup_file=args.backup_file,
        passphrase=get_passphrase(confirm=True),
        log2_n=log2_n_from_env(),
        add=args.add,
        key_out=args.age_key_out,
    )
    sys.stderr.write(f"Pulumi.{args.stack}.yaml: k8s-secrets:sops.recipients += {done.recipient}\n")
    sys.stderr.write(f"{args.backup_file}: age key saved, encrypted (mode 0600)\n")
    if args.age_key_out:
        sys.stderr.write(f"{args.age_key_out}: age key file (mode 0600): export SOPS_AGE_KEY_FILE={args.age_key_out}\n")
    if done.files:
        sys.stderr.write(
            f"{len(done.files)} SOPS file(s) are not encrypted for the new key yet: "
            f"ksecrets sops updatekeys --stack {args.stack} --age-key-file <a key they are encrypted for>\n"
        )
    if args.print_secret:
        sys.stdout.write(yamlio.dump(done.manifest))
    return 0


def run(args: argparse.Namespace) -> int:
    from ksecrets import yamlio
    from ksecrets.sealing.backup import get_passphrase
    from ksecrets.usecases.keygen import check_targets, generate

    root = Path(args.root)
    if _is_sops_stack(root, args.stack):
        return run_age(args, root)
    if args.add or args.age_key_out:
        raise KsecretsError("--add and --age-key-out are for sops stacks (age keys)")
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
