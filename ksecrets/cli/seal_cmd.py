"""`ksecrets seal`: kubeseal's offline sealing, plus sealing straight into a stack file.

    kubectl create secret generic app --from-env-file .env --dry-run=client -o yaml \\
      | ksecrets seal --cert certs/staging.pem -o yaml > app.sealed.yaml
    ksecrets seal --raw --cert C --name N --namespace NS --from-file value.txt
    ksecrets seal --stack staging --name my-app-secrets --from-env-file .env.staging
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ksecrets.errors import KsecretsError
from ksecrets.fileio import atomic_write_text
from ksecrets.sealing import churn, crypto
from ksecrets.sealing.cliutil import add_format_flag, cert_from_args, read_file_bytes, read_stdin_text, render
from ksecrets.sealing.envfile import parse_env_file, parse_literal
from ksecrets.sealing.secret_input import SCOPE_ANNOTATIONS, check_key, check_size, read_secret
from ksecrets.sealing.sealedsecret import merge_sealed, parse_sealed_secret, sealed_scope, seal_secret


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "seal", help="seal a Secret (stdin) into a SealedSecret, offline; or seal values into a stack",
        description="Seal a v1 Secret (YAML or JSON on stdin) into a SealedSecret with a certificate, "
                    "offline. With --stack, seal values straight into Pulumi.<stack>.yaml.")
    p.add_argument("--cert", help=f"sealing certificate (PEM); default ${'SEALED_SECRETS_CERT'}")
    add_format_flag(p, default=None)
    p.add_argument("--scope", choices=crypto.SCOPES,
                   help="sealing scope (default: the Secret's scope annotations, else strict)")
    p.add_argument("--merge-into", metavar="FILE", help="update only the given keys of an existing SealedSecret file")
    p.add_argument("--allow-empty-data", action="store_true", help="allow a Secret without data")
    p.add_argument("--raw", action="store_true", help="print one encrypted value (needs --from-file)")
    p.add_argument("--name", help="Secret name (--raw, --stack)")
    p.add_argument("--namespace", "-n", help="Secret namespace (--raw; --stack: default from the app)")
    p.add_argument("--from-file", action="append", default=[], metavar="[KEY=]PATH",
                   help="--raw: the value to seal; --stack: a key from a file (key defaults to the file name)")
    p.add_argument("--stack", help="seal into Pulumi.<stack>.yaml with the stack's certificate")
    p.add_argument("--from-env-file", action="append", default=[], metavar="FILE",
                   help="--stack: values from an env file (kubectl's rules)")
    p.add_argument("--from-literal", action="append", default=[], metavar="KEY=VALUE",
                   help="--stack: one value (beware: visible in shell history and ps)")
    p.add_argument("--type", dest="secret_type", help="--stack: Secret type (default Opaque, or the entry's)")
    p.add_argument("--prune", action="store_true", help="--stack: drop keys of the entry that are not in the input")
    p.add_argument("--root", default=".", help="directory of the stack files (default .)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.stack:
        return _seal_stack(args)
    if args.from_env_file or args.from_literal or args.prune or args.secret_type:
        raise KsecretsError("--from-env-file, --from-literal, --type and --prune need --stack")
    if args.raw:
        return _seal_raw(args)
    if args.from_file:
        raise KsecretsError("--from-file needs --raw or --stack")
    return _seal_stdin(args)


def _seal_raw(args: argparse.Namespace) -> int:
    if args.merge_into:
        raise KsecretsError("--raw and --merge-into cannot be combined")
    if len(args.from_file) != 1:
        raise KsecretsError("--raw needs exactly one --from-file")
    scope = args.scope or "strict"
    namespace, name = args.namespace or "", args.name or ""
    if not namespace and scope != "cluster-wide":
        raise KsecretsError(f"--raw with --scope {scope} needs --namespace")
    if not name and scope == "strict":
        raise KsecretsError("--raw with --scope strict needs --name")
    path = args.from_file[0].split("=", 1)[-1]
    value = read_file_bytes(path, "value file")
    check_size({path: value}, path, "--from-file")
    cert = cert_from_args(args.cert)
    sys.stdout.write(crypto.encrypt_value(cert.public_key, value, crypto.label_for(scope, namespace, name)))
    return 0


def _seal_stdin(args: argparse.Namespace) -> int:
    secret = read_secret(read_stdin_text("stdin"), "stdin")
    if not secret.data and not args.allow_empty_data:
        raise KsecretsError("stdin: the Secret has no data or stringData (pass --allow-empty-data if intended)")
    cert = cert_from_args(args.cert)
    if args.name:
        secret.name = args.name
    if args.namespace:
        secret.namespace = args.namespace
    if not args.merge_into:
        sealed = seal_secret(secret, cert, scope=args.scope, source="stdin")
        _check_size(sealed, "stdin")
        sys.stdout.write(render(sealed, args.format or "json"))
        return 0

    target = Path(args.merge_into)
    text = read_file_bytes(args.merge_into, "SealedSecret file").decode("utf-8", "replace")
    orig = parse_sealed_secret(text, args.merge_into)
    # As kubeseal: the values are sealed for the file's name and namespace.
    secret.name = orig["metadata"]["name"]
    secret.namespace = orig["metadata"].get("namespace") or ""
    scope = args.scope
    if scope is None and not any(k in secret.annotations for k in SCOPE_ANNOTATIONS.values()):
        scope = sealed_scope(orig)
    update = seal_secret(secret, cert, scope=scope, source="stdin")
    merged = merge_sealed(orig, update, args.merge_into)
    _check_size(merged, args.merge_into)  # all keys of the file, not only this run's
    fmt = args.format or ("json" if text.lstrip().startswith("{") else "yaml")
    atomic_write_text(target, render(merged, fmt), target.stat().st_mode & 0o777)
    sys.stderr.write(f"{args.merge_into}: sealed {', '.join(sorted(update['spec']['encryptedData']))}\n")
    return 0


def _check_size(sealed: dict, source: str) -> None:
    from ksecrets.preflight import size_problem

    problem = size_problem(sealed)
    if problem:
        raise KsecretsError(f"{source}: SealedSecret {sealed['metadata'].get('name', '')}: {problem}; nothing written")


def _stack_values(args: argparse.Namespace) -> dict[str, bytes]:
    values: dict[str, bytes] = {}

    def add(key: str, value: bytes, source: str) -> None:
        if key in values:
            raise KsecretsError(f"{source}: key {key}: another key by that name already exists")
        values[key] = value

    for path in args.from_env_file:
        if os.path.isdir(path):
            raise KsecretsError(f"{path}: env file cannot be a directory")
        for key, value in parse_env_file(read_file_bytes(path, "env file"), path).items():
            add(key, value, path)
    for spec in args.from_file:
        key, sep, path = spec.partition("=")
        if not sep:
            key, path = os.path.basename(spec), spec
        check_key(key, "--from-file", "key")
        add(key, read_file_bytes(path, "value file"), f"--from-file {path}")
    for literal in args.from_literal:
        key, value = parse_literal(literal)
        add(key, value, "--from-literal")
    return values


def _seal_stack(args: argparse.Namespace) -> int:
    from ksecrets.sealing.stack import seal_into_stack

    if args.raw or args.merge_into or args.cert:
        raise KsecretsError("--stack seals with the stack's certificate; --raw, --merge-into and --cert do not apply")
    if not args.name:
        raise KsecretsError("--stack needs --name (the Secret's name)")
    values = _stack_values(args)
    report = seal_into_stack(args.root, args.stack, name=args.name, namespace=args.namespace, values=values,
                             scope=args.scope, secret_type=args.secret_type, prune=args.prune,
                             seal_key=churn.seal_key_from_env())
    for line in report.lines():
        sys.stderr.write(line + "\n")
    return 0
