"""Small I/O helpers shared by the sealing subcommands (stdin, output formats, certificates, the
recovery-key flags)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ksecrets import yamlio
from ksecrets.errors import KsecretsError
from ksecrets.fileio import read_bytes
from ksecrets.sealing.certs import SealingCert, parse_certificate

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


def cert_from_args(path: str | None, ca_file: str | None = None, *, allow_not_yet_valid: bool = False) -> SealingCert:
    """`--cert` (or $SEALED_SECRETS_CERT): a PEM file, a file:// or an https:// URL."""
    from ksecrets.sealing.certfetch import read_cert_source

    path = path or os.environ.get(CERT_ENV)
    if not path:
        raise KsecretsError(f"no certificate: pass --cert FILE (or set {CERT_ENV}); ksecrets never asks a cluster")
    data, source = read_cert_source(path, ca_file=ca_file)
    return parse_certificate(data, source, allow_not_yet_valid=allow_not_yet_valid)


def recovery_keys(args, jobs: int = 1) -> list:
    """The private keys of --recovery-private-key and --backup. With `jobs` > 1, their RSA
    consistency checks (about 0.25 s of CPU per 4096-bit key) run in that many processes."""
    from ksecrets.sealing.backup import get_passphrase, read_backup
    from ksecrets.sealing.keys import check_private_keys, keys_from_secrets, load_recovery_keys

    validate = jobs <= 1
    keys: list[tuple[Any, str]] = []
    for item in args.recovery_private_key:
        for path in filter(None, item.split(",")):
            data = read_file_bytes(path, "private key file")
            keys.extend((k, path) for k in load_recovery_keys(data, path, validate=validate))
    if args.backup:
        passphrase = get_passphrase(confirm=False)
        for path in args.backup:
            keys.extend((k, path) for k in keys_from_secrets(read_backup(path, passphrase), path, validate=validate))
    if not keys:
        raise KsecretsError("no private key: pass --recovery-private-key FILE or --backup FILE")
    if not validate:
        check_private_keys(keys, jobs)
    return [k for k, _ in keys]
