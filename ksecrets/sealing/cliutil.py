"""Small I/O helpers shared by the sealing subcommands (stdin, output formats, certificates)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ksecrets import yamlio
from ksecrets.errors import KsecretsError
from ksecrets.fileio import read_bytes
from ksecrets.sealing.certs import SealingCert, load_certificate

CERT_ENV = "SEALED_SECRETS_CERT"  # kubeseal reads the same variable


def read_stdin_text(source: str = "stdin") -> str:
    if sys.stdin.isatty():  # as kubeseal does: say what is expected instead of waiting silently
        sys.stderr.write("(tty detected: expecting a JSON or YAML Kubernetes object on stdin)\n")
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise KsecretsError(f"{source}: not UTF-8 text") from None


def read_file_bytes(path: str, what: str = "file") -> bytes:
    return read_bytes(path, what)


def render(obj: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    return yamlio.dump(obj)


def cert_from_args(path: str | None) -> SealingCert:
    path = path or os.environ.get(CERT_ENV)
    if not path:
        raise KsecretsError(f"no certificate: pass --cert FILE (or set {CERT_ENV}); ksecrets never asks a cluster")
    return load_certificate(path)


def add_format_flag(parser, default: str | None = "json") -> None:
    parser.add_argument("-o", "--format", choices=("json", "yaml"), default=default,
                        help=f"output format (default {default or 'that of the file'}, like kubeseal)")


def add_recovery_flags(parser) -> None:
    parser.add_argument("--recovery-private-key", action="append", default=[], metavar="FILE[,FILE]",
                        help="private key (PEM) or key Secret(s) (YAML/JSON); repeatable; every key is tried")
    parser.add_argument("--backup", action="append", default=[], metavar="FILE",
                        help="an encrypted backup from `ksecrets backup` or `keygen` (passphrase from "
                             "KSECRETS_BACKUP_PASSPHRASE or a prompt)")


def recovery_keys(args) -> list:
    from ksecrets.sealing.backup import get_passphrase, read_backup
    from ksecrets.sealing.keys import keys_from_secrets, load_recovery_keys

    keys = []
    for item in args.recovery_private_key:
        for path in filter(None, item.split(",")):
            keys.extend(load_recovery_keys(read_file_bytes(path, "private key file"), path))
    if args.backup:
        passphrase = get_passphrase(confirm=False)
        for path in args.backup:
            keys.extend(keys_from_secrets(read_backup(path, passphrase), path))
    if not keys:
        raise KsecretsError("no private key: pass --recovery-private-key FILE or --backup FILE")
    return keys
