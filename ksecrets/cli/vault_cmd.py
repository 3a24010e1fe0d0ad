"""`ksecrets vault bootstrap|push --stack S`: configure Vault for a stack, push an env file to it.

The token is never an argument: `VAULT_TOKEN`, or the file `vault login` writes (~/.vault-token).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ksecrets.cli.flags import add_allow_key_name_flag, add_root_flag, add_stack_flag
from ksecrets.errors import KsecretsError

DB_PASSWORD_ENV = "KSECRETS_DB_ADMIN_PASSWORD"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vault",
        help="configure Vault for a stack and push values to it",
        description="Vault backend. Address: VAULT_ADDR or the stack's vault.address; token: "
        "VAULT_TOKEN or ~/.vault-token; VAULT_CACERT, VAULT_NAMESPACE as for the Vault CLI.",
    )
    vsub = p.add_subparsers(dest="vault_command", required=True, parser_class=type(p))

    # No abbreviations: `--token` must stay an error (a token is never an argument), not a
    # prefix of --token-reviewer-jwt-file.
    b = vsub.add_parser(
        "bootstrap", help="kv-v2, kubernetes auth, per-app policies and roles, audit (idempotent)", allow_abbrev=False
    )
    add_stack_flag(b)
    b.add_argument(
        "--kube-host",
        default=None,
        metavar="URL",
        help="Kubernetes API URL as Vault reaches it (default https://kubernetes.default.svc:443)",
    )
    b.add_argument(
        "--kube-ca-file",
        default=None,
        metavar="FILE",
        help="the API server's CA (PEM); default: Vault in the cluster uses its pod's CA",
    )
    b.add_argument(
        "--token-reviewer-jwt-file",
        default=None,
        metavar="FILE",
        help="for a Vault outside the cluster: a service-account token allowed to create TokenReviews "
        "(system:auth-delegator); Vault checks login tokens with it. Default: Vault in the cluster "
        "uses its pod's own token",
    )
    add_root_flag(b)
    b.set_defaults(func=run_bootstrap)

    u = vsub.add_parser("push", help="write an env file to the app's kv-v2 path when a value changed")
    add_stack_flag(u)
    u.add_argument("--path", required=True, metavar="APP", help="the app's Vault path (or app name)")
    u.add_argument("--from-env-file", required=True, metavar="FILE", help="KEY=value lines, as kubectl reads them")
    add_allow_key_name_flag(u)
    add_root_flag(u)
    u.set_defaults(func=run_push)

    sn = vsub.add_parser("snapshot", help="save or restore a raft snapshot (disaster recovery)")
    ssub = sn.add_subparsers(dest="snapshot_command", required=True, parser_class=type(p))
    save = ssub.add_parser("save", help="stream a raft snapshot into a new file (atomic)")
    save.add_argument("--out", required=True, type=Path, metavar="FILE", help="never overwritten")
    save.set_defaults(func=run_snapshot_save)
    rest = ssub.add_parser("restore", help="replace ALL of Vault's data with a snapshot's")
    rest.add_argument("--file", required=True, type=Path, metavar="FILE")
    rest.add_argument("--yes", action="store_true", help="confirm: every change since the snapshot is lost")
    rest.add_argument(
        "--force",
        action="store_true",
        help="snapshot-force: the snapshot comes from another cluster (other unseal keys)",
    )
    rest.set_defaults(func=run_snapshot_restore)


def run_snapshot_save(args: argparse.Namespace) -> int:
    from ksecrets.vault import snapshot
    from ksecrets.vault.client import make_client

    size = snapshot.save(make_client(None), args.out)
    print(f"{args.out}: raft snapshot saved ({size} bytes)")
    return 0


def run_snapshot_restore(args: argparse.Namespace) -> int:
    from ksecrets.vault import snapshot
    from ksecrets.vault.client import make_client

    if not args.yes:
        raise KsecretsError(
            f"{args.file}: restoring replaces all of Vault's data with the snapshot's; add --yes to confirm"
        )
    if not args.file.is_file():
        raise KsecretsError(f"{args.file}: no such file")
    snapshot.restore(make_client(None), args.file, force=args.force)
    print(
        f"{args.file}: restored{' (forced)' if args.force else ''}; unseal with the keys of the snapshot's "
        "cluster if Vault asks"
    )
    return 0


def _vault_stack(args: argparse.Namespace):
    from ksecrets.config.load import load_stack

    cfg = load_stack(args.stack, args.root)
    if cfg.vault is None:
        raise KsecretsError(f"{cfg.source}: backend: {cfg.backend}; the vault commands need a vault stack")
    return cfg


def run_bootstrap(args: argparse.Namespace) -> int:
    from ksecrets.usecases.vault_bootstrap import DEFAULT_KUBE_HOST, bootstrap
    from ksecrets.vault.client import make_client

    cfg = _vault_stack(args)
    ca = None
    if args.kube_ca_file:
        try:
            ca = Path(args.kube_ca_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KsecretsError(
                f"{args.kube_ca_file}: cannot read the CA file ({getattr(exc, 'strerror', None) or 'not text'})"
            ) from None
        if "-----BEGIN CERTIFICATE-----" not in ca:
            raise KsecretsError(f"{args.kube_ca_file}: not a PEM certificate")
    jwt = _read_jwt(args.token_reviewer_jwt_file) if args.token_reviewer_jwt_file else None
    client = make_client(cfg.vault)
    report = bootstrap(
        client,
        cfg,
        kube_host=args.kube_host or DEFAULT_KUBE_HOST,
        kube_ca_pem=ca,
        db_admin_password=os.environ.get(DB_PASSWORD_ENV) or None,
        token_reviewer_jwt=jwt,
    )
    for line in report.lines():
        print(line)
    return 0


def _read_jwt(path: str) -> str:
    """The token reviewer JWT: one line, three dot-separated parts; never echoed in an error."""
    try:
        jwt = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KsecretsError(
            f"{path}: cannot read the token reviewer JWT file ({getattr(exc, 'strerror', None) or 'not text'})"
        ) from None
    if not jwt:
        raise KsecretsError(f"{path}: the token reviewer JWT file is empty")
    if len(jwt.split(".")) != 3 or any(c.isspace() for c in jwt):
        raise KsecretsError(
            f"{path}: not a JWT (expected one line of three dot-separated parts, as `kubectl create token` prints)"
        )
    return jwt


def run_push(args: argparse.Namespace) -> int:
    from ksecrets.usecases.vault_push import push_env_file
    from ksecrets.vault.client import make_client

    cfg = _vault_stack(args)
    client = make_client(cfg.vault)
    result = push_env_file(
        client, cfg, path=args.path, env_file=args.from_env_file, allow_key_names=frozenset(args.allow_key_name)
    )
    for line in result.lines():
        print(line)
    return 0
