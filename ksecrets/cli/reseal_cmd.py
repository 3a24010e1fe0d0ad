"""`ksecrets reseal`: re-encrypt every sealed value of a stack for a new certificate, offline, in one write.

For the controller's 30-day key renewal and for moving to a new cluster:

    ksecrets reseal --stack staging --recovery-private-key old.key --cert certs/staging-new.pem --set-certificate
"""

from __future__ import annotations

import argparse
import sys

from ksecrets.cli.flags import add_allow_future_cert_flag, add_recovery_flags, add_root_flag, add_stack_flag


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reseal",
        help="re-encrypt all of a stack's sealed values for a new certificate",
        description="Decrypt every k8s-secrets:sealed value of a stack with the old keys and encrypt it for "
        "--cert. Entries already sealed for --cert are left alone (unless --force).",
    )
    add_stack_flag(p)
    add_recovery_flags(p)
    p.add_argument("--cert", required=True, help="the new sealing certificate (PEM)")
    p.add_argument(
        "--set-certificate",
        action="store_true",
        help="also point k8s-secrets:sealedSecrets.certificate at --cert (must be inside the repo)",
    )
    p.add_argument("--force", action="store_true", help="re-seal entries already sealed for --cert too")
    add_allow_future_cert_flag(p)
    add_root_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ksecrets.cli.util import recovery_keys
    from ksecrets.sealing import churn
    from ksecrets.sealing.certs import load_certificate
    from ksecrets.usecases.seal_stack import reseal_stack

    cert = load_certificate(args.cert, allow_not_yet_valid=args.allow_future_cert)
    keys = recovery_keys(args)
    report = reseal_stack(
        args.root,
        args.stack,
        private_keys=keys,
        cert=cert,
        set_certificate=args.set_certificate,
        cert_path=args.cert,
        seal_key=churn.seal_key_from_env(),
        force=args.force,
    )
    for line in report.lines():
        sys.stderr.write(line + "\n")
    return 0
