"""`ksecrets seal`: kubeseal's offline sealing, plus sealing straight into stack files.

    kubectl create secret generic app --from-env-file .env --dry-run=client -o yaml \\
      | ksecrets seal --cert certs/staging.pem -o yaml > app.sealed.yaml
    ksecrets seal --cert https://certs.example.com/staging.pem -f secret.yaml -w app.sealed.yaml
    ksecrets seal --raw --cert C --name N --namespace NS --from-file value.txt   # or the value on stdin
    ksecrets seal --stack staging --stack qa --name my-app-secrets --from-env-file .env   # or --all-stacks
    ksecrets seal --env production --name my-app-secrets --from-env-file .env   # every cluster of production

kubeseal's SEALED_SECRETS_<FLAG> environment variables set the flags not given on the command line
(SEALED_SECRETS_CERT, SEALED_SECRETS_FORMAT, SEALED_SECRETS_SCOPE, ...); --stack ignores them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ksecrets.cli.flags import (
    SCOPES,
    add_allow_future_cert_flag,
    add_allow_key_name_flag,
    add_root_flag,
    add_stacks_flag,
)
from ksecrets.errors import KsecretsError

ENV_PREFIX = "SEALED_SECRETS_"
# Flags kubeseal reads from SEALED_SECRETS_<FLAG> (pflagenv: the flag name upper-cased, - as _),
# with the argparse destination they fill here.
ENV_FLAGS = {
    "cert": "cert",
    "controller-name": "controller_name",
    "controller-namespace": "controller_namespace",
    "format": "format",
    "secret-file": "secret_file",
    "sealed-secret-file": "sealed_secret_file",
    "scope": "scope",
    "name": "name",
    "namespace": "namespace",
    "allow-empty-data": "allow_empty_data",
    "merge-into": "merge_into",
    "raw": "raw",
    "from-file": "from_file",
}
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


def register(subparsers) -> None:
    from ksecrets.cli import SUBCOMMANDS

    p = subparsers.add_parser(
        "seal", help=SUBCOMMANDS["seal"][1], description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="store_true", help="print the version and exit (like kubeseal --version)")
    p.add_argument(
        "--cert", help="sealing certificate: a PEM file, file:// or https:// URL; default $SEALED_SECRETS_CERT"
    )
    p.add_argument(
        "--cert-ca", metavar="FILE", help="CA (PEM) that signed the https server of --cert (default: system CAs)"
    )
    p.add_argument(
        "-o",
        "--format",
        choices=("json", "yaml"),
        default=None,
        help="output format (default json, yaml for a -w file ending .yaml/.yml, like kubeseal)",
    )
    p.add_argument("-f", "--secret-file", metavar="FILE", help="the Secret to seal (default: stdin)")
    p.add_argument(
        "-w",
        "--sealed-secret-file",
        metavar="FILE",
        help="write the result to FILE (atomically: a failed run leaves it as it was)",
    )
    p.add_argument(
        "--scope", choices=SCOPES, help="sealing scope (default: the Secret's scope annotations, else strict)"
    )
    p.add_argument("--merge-into", metavar="FILE", help="update only the given keys of an existing SealedSecret file")
    p.add_argument("--allow-empty-data", action="store_true", default=None, help="allow a Secret without data")
    p.add_argument(
        "--raw", action="store_true", default=None, help="print one encrypted value: --from-file, or the value on stdin"
    )
    p.add_argument("--name", help="Secret name (--raw, --stack)")
    p.add_argument("--namespace", "-n", help="Secret namespace (--raw; --stack: default from the app)")
    p.add_argument("--controller-name", help="kubeseal's; read for compatibility (ksecrets seals offline)")
    p.add_argument("--controller-namespace", help="kubeseal's; read for compatibility (ksecrets seals offline)")
    p.add_argument(
        "--from-file",
        action="append",
        default=None,
        metavar="[KEY=]PATH",
        help="--raw: the value to seal; --stack: a key from a file (key defaults to the file name)",
    )
    add_stacks_flag(
        p,
        "seal into Pulumi.<NAME>.yaml with that stack's certificate (repeatable)",
        all_stacks="seal into every stack whose backend is sealed-secrets",
        env=True,
    )
    p.add_argument(
        "--from-env-file",
        action="append",
        default=[],
        metavar="FILE",
        help="--stack: values from an env file (kubectl's rules)",
    )
    p.add_argument(
        "--from-literal",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--stack: one value (beware: visible in shell history and ps)",
    )
    add_allow_key_name_flag(p)
    add_allow_future_cert_flag(p)
    p.add_argument("--type", dest="secret_type", help="--stack: Secret type (default Opaque, or the entry's)")
    p.add_argument("--prune", action="store_true", help="--stack: drop keys of the entry that are not in the input")
    add_root_flag(p)
    p.set_defaults(func=run)


def apply_env(args: argparse.Namespace, environ=None) -> None:
    """Fill flags not given on the command line from SEALED_SECRETS_<FLAG>, as kubeseal does."""
    environ = os.environ if environ is None else environ
    args.from_env = set()
    for flag, dest in ENV_FLAGS.items():
        var = ENV_PREFIX + flag.upper().replace("-", "_")
        if var not in environ or getattr(args, dest) not in (None, []):
            continue
        value = environ[var]
        if dest in ("raw", "allow_empty_data"):
            if value not in _TRUE | _FALSE:
                raise KsecretsError(f"{var}: expected true or false")
            value = value in _TRUE
        elif dest == "scope" and value not in SCOPES:
            raise KsecretsError(f"{var}: {value!r} is not a scope ({', '.join(SCOPES)})")
        elif dest == "format" and value not in ("json", "yaml"):
            raise KsecretsError(f"{var}: {value!r} is not json or yaml")
        elif dest == "from_file":
            value = [v for v in value.split(",") if v]
        setattr(args, dest, value)
        args.from_env.add(dest)


def run(args: argparse.Namespace) -> int:
    if args.version:
        from ksecrets import __version__

        sys.stdout.write(f"ksecrets version: {__version__}\n")
        return 0
    if args.stack or args.env or args.all_stacks:
        args.from_file = args.from_file or []
        return _seal_stack(args)
    apply_env(args)
    args.from_file = args.from_file or []
    if args.from_env_file or args.from_literal or args.prune or args.secret_type or args.allow_key_name:
        raise KsecretsError(
            "--from-env-file, --from-literal, --type, --prune and --allow-key-name need --stack, --env or --all-stacks"
        )
    if args.raw:
        return _seal_raw(args)
    if args.from_file:
        raise KsecretsError("--from-file needs --raw or --stack")
    return _seal_stdin(args)


def _emit(args: argparse.Namespace, text: str) -> None:
    """stdout, or -w FILE written atomically (kept mode, else 0644)."""
    if not args.sealed_secret_file:
        sys.stdout.write(text)
        return
    from ksecrets.fileio import atomic_write_text

    target = Path(args.sealed_secret_file)
    if target.is_dir():
        raise KsecretsError(f"{target}: is a directory")
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    atomic_write_text(target, text, mode)


def _out_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.sealed_secret_file and Path(args.sealed_secret_file).suffix in (".yaml", ".yml"):
        return "yaml"
    return "json"


def _seal_raw(args: argparse.Namespace) -> int:
    if args.merge_into:
        raise KsecretsError("--raw and --merge-into cannot be combined")
    from ksecrets.cli.util import cert_from_args, read_file_bytes
    from ksecrets.sealing import crypto
    from ksecrets.sealing.sealedsecret import check_names
    from ksecrets.sealing.secret_input import check_size

    if args.secret_file:
        raise KsecretsError("--raw seals one value from --from-file or stdin; -f/--secret-file is for a whole Secret")
    if len(args.from_file) > 1:
        raise KsecretsError("--raw takes only one --from-file")
    scope = args.scope or "strict"
    namespace, name = args.namespace or "", args.name or ""
    if not namespace and scope != "cluster-wide":
        raise KsecretsError(f"--raw with --scope {scope} needs --namespace")
    if not name and scope == "strict":
        raise KsecretsError("--raw with --scope strict needs --name")
    check_names(name, namespace, "--raw")
    cert = cert_from_args(args.cert, args.cert_ca, allow_not_yet_valid=args.allow_future_cert)
    if args.from_file:
        path = args.from_file[0].split("=", 1)[-1]
        value = read_file_bytes(path, "value file")
    else:
        path = "stdin"
        if sys.stdin.isatty():
            sys.stderr.write("(tty detected: expecting a secret to encrypt in stdin)\n")
        value = sys.stdin.buffer.read()
    check_size({path: value}, path, "--from-file" if args.from_file else "stdin")
    _emit(args, crypto.encrypt_value(cert.public_key, value, crypto.label_for(scope, namespace, name)))
    return 0


def _read_input(args: argparse.Namespace) -> tuple[str, str]:
    from ksecrets.cli.util import read_file_bytes, read_stdin_text

    if args.secret_file:
        data = read_file_bytes(args.secret_file, "Secret file")
        try:
            return data.decode("utf-8"), args.secret_file
        except UnicodeDecodeError:
            raise KsecretsError(f"{args.secret_file}: not UTF-8 text") from None
    return read_stdin_text("stdin"), "stdin"


def _seal_stdin(args: argparse.Namespace) -> int:
    from ksecrets.cli.util import cert_from_args, render
    from ksecrets.sealing.kubeconfig import current_namespace
    from ksecrets.sealing.sealedsecret import resolve_scope, seal_secret
    from ksecrets.sealing.secret_input import read_secret
    from ksecrets.usecases.seal_file import merge_into_file

    text, src = _read_input(args)
    secret = read_secret(text, src)
    if not secret.data and not args.allow_empty_data:
        raise KsecretsError(f"{src}: the Secret has no data or stringData (pass --allow-empty-data if intended)")
    cert = cert_from_args(args.cert, args.cert_ca, allow_not_yet_valid=args.allow_future_cert)
    if args.name:
        secret.name = args.name
    if args.namespace:
        _check_namespace_flag(args, secret.namespace, f"{src}: metadata.namespace")
        secret.namespace = args.namespace
    if not args.merge_into and not secret.namespace and resolve_scope(secret, args.scope) != "cluster-wide":
        # As kubeseal: a Secret without a namespace is sealed for the current kubectl context's
        # namespace, else "default" (`kubectl create secret ... --dry-run=client` writes none).
        secret.namespace, why = current_namespace()
        sys.stderr.write(
            f"ksecrets: {src}: no metadata.namespace; sealing for namespace {secret.namespace!r} "
            f"({why}), as kubeseal does; pass --namespace to choose\n"
        )
    if not args.merge_into:
        sealed = seal_secret(secret, cert, scope=args.scope, source=src)
        _check_size(sealed, src)
        _emit(args, render(sealed, _out_format(args)))
        return 0
    if args.sealed_secret_file:
        raise KsecretsError("--merge-into updates its file in place; -w/--sealed-secret-file does not apply")

    keys = merge_into_file(args.merge_into, secret, cert, scope=args.scope, fmt=args.format, source=src, render=render)
    sys.stderr.write(f"{args.merge_into}: sealed {', '.join(keys)}\n")
    return 0


def _check_namespace_flag(args: argparse.Namespace, declared: str, where: str) -> None:
    """`--namespace` (or SEALED_SECRETS_NAMESPACE) against the namespace the Secret declares.

    kubeseal binds `--namespace` to kubectl's client config: it only names the namespace of a
    Secret that declares none, and a Secret's own `metadata.namespace` wins without a word. Sealing
    for the flag's namespace instead would move the Secret silently; keeping the file's would
    ignore the flag silently. Both differ from what the user said, so a conflict is refused."""
    if not declared or declared == args.namespace:
        return
    flag = "SEALED_SECRETS_NAMESPACE" if "namespace" in getattr(args, "from_env", ()) else "--namespace"
    raise KsecretsError(
        f"{where} is {declared!r} but {flag} is {args.namespace!r}: refusing to move the Secret to another "
        f"namespace (kubeseal would seal it for {declared!r}); change metadata.namespace or drop {flag}"
    )


def _check_size(sealed: dict, source: str) -> None:
    from ksecrets.usecases.seal_file import check_size

    check_size(sealed, source)


def _stack_values(args: argparse.Namespace) -> dict[str, bytes]:
    from ksecrets.cli.util import read_file_bytes
    from ksecrets.envfile import check_key_name, parse_env_file, parse_literal
    from ksecrets.sealing.secret_input import check_key

    allowed = frozenset(args.allow_key_name)

    values: dict[str, bytes] = {}

    def add(key: str, value: bytes, source: str) -> None:
        if key in values:
            raise KsecretsError(f"{source}: key {key}: another key by that name already exists")
        values[key] = value

    for path in args.from_env_file:
        if os.path.isdir(path):
            raise KsecretsError(f"{path}: env file cannot be a directory")
        for key, value in parse_env_file(read_file_bytes(path, "env file"), path, allow_key_names=allowed).items():
            add(key, value, path)
    for spec in args.from_file:
        key, sep, path = spec.partition("=")
        if not sep:
            key, path = os.path.basename(spec), spec
        check_key(key, "--from-file", "key")
        check_key_name(key, None, f"--from-file {path}", allowed)
        add(key, read_file_bytes(path, "value file"), f"--from-file {path}")
    for literal in args.from_literal:
        key, value = parse_literal(literal, allow_key_names=allowed)
        add(key, value, "--from-literal")
    return values


def _seal_stack(args: argparse.Namespace) -> int:
    from ksecrets.config.selection import select, selector_of
    from ksecrets.sealing import churn
    from ksecrets.usecases.seal_stack import SealRequest, seal_into_stacks, sealed_stack_names

    if args.raw or args.merge_into or args.cert or args.secret_file or args.sealed_secret_file:
        raise KsecretsError(
            "--stack seals with each stack's certificate into its stack file; "
            "--raw, --merge-into, --cert, -f and -w do not apply"
        )
    if (args.stack or args.env) and args.all_stacks:
        raise KsecretsError("give --stack NAME / --env ENV (repeatable) or --all-stacks, not both")
    if not args.name:
        raise KsecretsError("--stack needs --name (the Secret's name)")
    if args.all_stacks:
        stacks = sealed_stack_names(args.root)
    elif args.env:  # every cluster of the environment: one that does not seal is an error, not skipped
        stacks = select(args.root, selector_of(args.stack, args.env, False), default_all=False) or []
    else:
        stacks = list(dict.fromkeys(args.stack))
    values = _stack_values(args)
    request = SealRequest(
        name=args.name,
        namespace=args.namespace,
        values=values,
        scope=args.scope,
        secret_type=args.secret_type,
        prune=args.prune,
        seal_key=churn.seal_key_from_env(),
        allow_not_yet_valid=args.allow_future_cert,
    )
    reports = seal_into_stacks(args.root, stacks, request)
    for report in reports:
        for line in report.lines():
            sys.stderr.write(line + "\n")
    return 0
