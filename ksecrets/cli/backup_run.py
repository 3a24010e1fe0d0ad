"""`ksecrets backup` and `ksecrets restore` at work (their parsers: `backup_cmd.py`, which loads
this module only when a command runs, through `ksecrets.cli.runs`, so `backup --help` stays cheap)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ksecrets import yamlio
from ksecrets.cli.util import read_stdin_text, render
from ksecrets.config.load import load_stack, load_stack_file, stack_name_from_path
from ksecrets.config.names import stack_files
from ksecrets.errors import KsecretsError
from ksecrets.fileio import atomic_write_bytes, read_bytes
from ksecrets.sealing import keybackup, sops
from ksecrets.sealing.backup import (
    backup_plaintext,
    describe_key_secrets,
    get_passphrase,
    log2_n_from_env,
    read_backup,
    write_backup,
)
from ksecrets.sealing.certs import load_certificate, public_key_fingerprint
from ksecrets.sealing.keys import fingerprint_of_private, keys_from_secrets, secrets_from_document
from ksecrets.sealing.secret_input import load_document
from ksecrets.usecases.sops_keys import write_key_file


def run_backup(args: argparse.Namespace) -> int:

    if args.check:
        return run_check(args)
    if args.import_:
        return run_import(args)
    if args.new_offline_key:
        return run_new_offline_key(args)
    doc = load_document(read_stdin_text("stdin"), "stdin")
    plaintext = backup_plaintext(doc, "stdin")
    passphrase = get_passphrase(confirm=True)
    write_backup(args.out, plaintext, passphrase, log2_n=log2_n_from_env())
    items = json.loads(plaintext)["items"]
    fps = describe_key_secrets(items, "stdin")
    sys.stderr.write(f"{args.out}: {len(items)} key(s) backed up, encrypted (mode 0600): {', '.join(fps)}\n")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    secrets_ = read_backup(args.backup, get_passphrase(confirm=False))
    if args.age_key_out:
        ids = [i for s in secrets_ if sops.is_key_secret(s) for i in sops.key_secret_identities(s, args.backup)]
        if not ids:
            raise KsecretsError(f"{args.backup}: holds no age key Secret")
        write_key_file(args.age_key_out, "".join(f"{i}\n" for i in ids), ".")
        sys.stderr.write(f"{args.age_key_out}: {len(ids)} age key(s) (mode 0600)\n")
        return 0
    if args.format == "json":
        sys.stdout.write(render({"apiVersion": "v1", "kind": "List", "items": secrets_}, "json"))
    else:
        sys.stdout.write(yamlio.dump_all(secrets_))
    return 0


# --- check -------------------------------------------------------------------------------------


def backed_up_fingerprints(paths: list[Path]) -> dict[str, str]:
    """Fingerprint -> where it is, for every key in the given backups. .kskey files need no key;
    a .ksbackup needs its passphrase."""
    found: dict[str, str] = {}
    for path in paths:
        if path.is_dir():  # the CronJob's .kskey files and passphrase .ksbackup files alike
            files = keybackup.key_files([path]) + sorted(path.glob("*.ksbackup"))
            if not files:
                raise KsecretsError(f"{path}: no {keybackup.SUFFIX} or .ksbackup files")
        else:
            files = [path]
        for f in files:
            data = read_bytes(f, "backup")
            if data.lstrip().startswith(b"{"):
                doc = keybackup.read_key_file(data, str(f))
                found.setdefault(doc["fingerprint"], str(f))
            else:
                # A sops stack's age key Secret (keygen of a sops stack) is no sealing key: not counted.
                held = [s for s in read_backup(f, get_passphrase(confirm=False)) if not sops.is_key_secret(s)]
                for key in keys_from_secrets(held, str(f)):
                    found.setdefault(fingerprint_of_private(key), str(f))
    return found


def expected_fingerprints(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(fingerprint, what) that a complete backup must hold."""
    if args.keys_from_stdin:
        doc = load_document(read_stdin_text("stdin"), "stdin")
        items = secrets_from_document(doc, "stdin")
        out = []
        for secret, key in zip(items, keys_from_secrets(items, "stdin")):
            name = (secret.get("metadata") or {}).get("name", "?")
            out.append((fingerprint_of_private(key), f"key Secret {name}"))
        return out
    names = args.stack or [stack_name_from_path(p) for p in stack_files(args.root)]
    out = []
    for name in names:
        cfg = load_stack(name, args.root)
        if not cfg.sealed_secrets.certificate:
            if args.stack:
                raise KsecretsError(f"{cfg.source}: sealedSecrets.certificate: not set; nothing to check")
            continue
        path = Path(cfg.root) / cfg.sealed_secrets.certificate
        cert = load_certificate(
            path, source=cfg.sealed_secrets.certificate, allow_expired=True, allow_not_yet_valid=True
        )
        out.append((cert.fingerprint, f"stack {name} ({cfg.sealed_secrets.certificate})"))
    if not out:
        raise KsecretsError(f"{args.root}: no stack has a sealing certificate; nothing to check")
    return out


def run_check(args: argparse.Namespace) -> int:
    have = backed_up_fingerprints(args.check)
    want = expected_fingerprints(args)
    missing = 0
    for fp, what in want:
        if fp in have:
            print(f"ok: {what}: {fp} in {have[fp]}")
        else:
            missing += 1
            print(f"missing: {what}: {fp} is in no backup given")
    print(f"{len(want) - missing} of {len(want)} key(s) backed up" + (f"; {missing} missing" if missing else ""))
    return 1 if missing else 0


# --- import and the offline key -------------------------------------------------------------------


def _offline_passphrase(confirm: bool) -> str:
    return get_passphrase(confirm=confirm, env_var=keybackup.PASSPHRASE_ENV, prompt="Offline key passphrase: ")


def repository_fingerprints(root: Path) -> set[str]:
    """Every sealing-key fingerprint the repository vouches for: each stack's certificate
    (`sealedSecrets.certificate`) and every certificate a sealed entry records."""
    known: set[str] = set()
    for path in stack_files(root):
        cfg = load_stack_file(path)
        known |= {e.certificate_fingerprint for e in cfg.sealed if e.certificate_fingerprint}
        cert = cfg.sealed_secrets.certificate
        if cert and (Path(cfg.root) / cert).is_file():
            known.add(
                load_certificate(
                    Path(cfg.root) / cert, source=cert, allow_expired=True, allow_not_yet_valid=True
                ).fingerprint
            )
    return known


def run_import(args: argparse.Namespace) -> int:
    if args.offline_key is None:
        raise KsecretsError("--import needs --offline-key FILE (the private half of the key-backup key)")
    offline = keybackup.load_offline_private_key(
        read_bytes(args.offline_key, "offline key"), _offline_passphrase(False), str(args.offline_key)
    )
    files = keybackup.key_files(args.import_)
    if not files:
        raise KsecretsError(f"{' '.join(map(str, args.import_))}: no {keybackup.SUFFIX} files")
    # The offline PUBLIC key is committed: anyone who can write the backup folder or bucket can make
    # a well-formed key file. Only keys the repository vouches for are imported (unless told).
    known = set() if args.allow_unknown_key else repository_fingerprints(args.root)
    secrets_ = []
    for f in files:
        data = read_bytes(f, "key file")
        fingerprint = keybackup.read_key_file(data, str(f))["fingerprint"]
        if not args.allow_unknown_key and fingerprint not in known:
            sys.stderr.write(
                f"ksecrets: {f}: skipped: key {fingerprint} is not one the repository knows (no stack certificate "
                f"under {args.root} and no sealed entry has it): anyone who can write the backup folder can make "
                "such a file; pass --allow-unknown-key to import it anyway\n"
            )
            continue
        secrets_.append(keybackup.decrypt_key_file(data, offline, str(f)))
    if not secrets_:
        raise KsecretsError(
            f"{' '.join(map(str, args.import_))}: no key the repository knows; nothing imported "
            "(--allow-unknown-key imports the others)"
        )
    doc = {"apiVersion": "v1", "kind": "List", "items": secrets_}
    if args.import_out:
        write_backup(
            args.import_out, backup_plaintext(doc, "import"), get_passphrase(confirm=True), log2_n=log2_n_from_env()
        )
        sys.stderr.write(f"{args.import_out}: {len(secrets_)} key(s) imported, encrypted (mode 0600)\n")
    else:
        sys.stdout.write(yamlio.dump_all(secrets_))
    return 0


def run_new_offline_key(args: argparse.Namespace) -> int:
    if args.public_out is None or args.private_out is None:
        raise KsecretsError("--new-offline-key needs --public-out FILE and --private-out FILE")
    for path in (args.public_out, args.private_out):
        if path.exists():
            raise KsecretsError(f"{path}: already exists; a key file is never overwritten")
    passphrase = _offline_passphrase(True)
    key = keybackup.new_offline_key()
    atomic_write_bytes(args.private_out, keybackup.encrypted_private_pem(key, passphrase), 0o600)
    atomic_write_bytes(args.public_out, keybackup.public_pem(key), 0o644)
    print(
        f"{args.public_out}: offline public key {public_key_fingerprint(key.public_key())} (commit it); "
        f"{args.private_out}: its private key, passphrase-encrypted (keep it offline)"
    )
    return 0
