"""`ksecrets reseal`: re-encrypt every sealed value of a stack for a new certificate, offline, in one write.

For the controller's 30-day key renewal and for moving to a new cluster:

    ksecrets reseal --stack staging --recovery-private-key old.key --cert certs/staging-new.pem --set-certificate

For a fleet, each cluster stack for its own configured certificate (renewed certificates fetched
into place first), every cluster's old key given, in one all-or-nothing run on every core:

    ksecrets reseal --env production --backup prod-keys.ksbackup
"""

from __future__ import annotations

import argparse
import sys

from ksecrets.cli.flags import add_allow_future_cert_flag, add_recovery_flags, add_root_flag, add_stacks_flag


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reseal",
        help="re-encrypt all of a stack's sealed values for a new certificate",
        description="Decrypt every k8s-secrets:sealed value of a stack with the old keys and encrypt it for "
        "--cert (one stack), or of several stacks (--env, --all-stacks) each for its own configured "
        "certificate. Entries already sealed for that certificate are left alone (unless --force).",
    )
    add_stacks_flag(
        p,
        all_stacks="every stack with sealed values, each for its own certificate",
        env=True,
    )
    add_recovery_flags(p)
    p.add_argument(
        "--cert",
        default=None,
        help="the new sealing certificate (PEM) of the one --stack (default: each stack's "
        "k8s-secrets:sealedSecrets.certificate)",
    )
    p.add_argument(
        "--set-certificate",
        action="store_true",
        help="also point k8s-secrets:sealedSecrets.certificate at --cert (must be inside the repo)",
    )
    p.add_argument("--force", action="store_true", help="re-seal entries already sealed for --cert too")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="processes for the work of several stacks: their RSA, and reading, editing and checking each stack file "
        "(default: the CPUs this process may use)",
    )
    add_allow_future_cert_flag(p)
    add_root_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from ksecrets.cli.flags import selected_stacks
    from ksecrets.cli.util import recovery_keys
    from ksecrets.errors import KsecretsError
    from ksecrets.sealing import churn
    from ksecrets.sealing.certs import load_certificate
    from ksecrets.usecases.seal_stack import reseal_stack, reseal_stacks

    stacks = selected_stacks(args, default_all=False) or []
    if args.jobs is not None and args.jobs < 1:
        raise KsecretsError(f"--jobs {args.jobs}: must be at least 1")
    if args.set_certificate and args.cert is None:
        raise KsecretsError("--set-certificate needs --cert")
    if args.cert is not None:
        if len(stacks) != 1:
            raise KsecretsError(
                f"--cert is one cluster's certificate: name one stack (--stack), not {len(stacks)}; "
                "without --cert each stack is re-sealed for its own k8s-secrets:sealedSecrets.certificate"
            )
        cert = load_certificate(args.cert, allow_not_yet_valid=args.allow_future_cert)
        keys = recovery_keys(args)
        reports = [
            reseal_stack(
                args.root,
                stacks[0],
                private_keys=keys,
                cert=cert,
                set_certificate=args.set_certificate,
                cert_path=args.cert,
                seal_key=churn.seal_key_from_env(),
                force=args.force,
            )
        ]
    else:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        jobs = args.jobs or cpus
        keys = recovery_keys(args, jobs=jobs)  # one old key per cluster: checked on every core
        reports = reseal_stacks(
            args.root, stacks, private_keys=keys, seal_key=churn.seal_key_from_env(), force=args.force, jobs=jobs
        )
        if not reports:
            raise KsecretsError(f"{', '.join(stacks)}: nothing sealed to re-seal")
    for report in reports:
        for line in report.lines():
            sys.stderr.write(line + "\n")
    return 0
