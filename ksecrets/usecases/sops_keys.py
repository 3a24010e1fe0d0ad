"""A sops stack's age keys: `ksecrets keygen --stack S` (a new age key, its recipient in the stack
config, the identity only in an encrypted backup and the cluster's Secret) and `ksecrets sops
updatekeys` (every SOPS file of the selected stacks re-keyed for the stack's recipients).

keygen reuses the sealing keys' backup (`ksecrets.sealing.backup`: the same passphrase file, the
same `ksecrets restore`): what is backed up is the Secret `decryption.secretRef` names
(`sops.keySecret` in Flux's namespace, key `age.agekey`), so restoring it is `ksecrets restore
--backup F | kubectl apply -f -`. The identity is never written into the repository.

updatekeys is all or nothing: every file is read, its MAC verified and its data key re-encrypted
in memory first; one file that cannot be (not a recipient, a MAC mismatch) is a one-line error
naming it and nothing is written. Then the files are written in one Transaction (a failed write
puts every file already written back). Values, their ciphertexts, the MAC and `lastmodified` are
left as they are (sops updatekeys); the data key stays the same.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ksecrets.backends.sops import FILE_SUFFIX, SECRETS_DIR
from ksecrets.config.load import load_stack, stack_path
from ksecrets.config.names import PREFIX
from ksecrets.errors import KsecretsError
from ksecrets.fileio import Transaction, atomic_write_text, read_bytes
from ksecrets.sealing import sops
from ksecrets.sealing.backup import backup_plaintext, write_backup

SOPS_SECTION = PREFIX + "sops"


def inside_repository(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str | None:
    """The work tree `path` would be written into (the git work tree holding it, or `root`), or None."""
    target = Path(path).resolve().parent
    probe = target
    while not probe.exists():
        probe = probe.parent
    res = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=probe, capture_output=True, text=True)
    if res.returncode == 0 and res.stdout.strip():
        return res.stdout.strip()
    r = Path(root).resolve()
    return str(r) if target == r or r in target.parents else None


def write_key_file(path: str | os.PathLike[str], key_file: str, root: str | os.PathLike[str]) -> None:
    """An age key file (plaintext identity), mode 0600, never inside a repository, never overwritten."""
    repo = inside_repository(path, root)
    if repo:
        raise KsecretsError(f"{path}: inside the repository {repo}; keep age keys out of Git (choose another file)")
    if Path(path).exists():
        raise KsecretsError(f"{path}: already exists; choose another file (a key file is never overwritten)")
    atomic_write_text(path, key_file, 0o600)


@dataclass
class AgeKeygen:
    recipient: str
    manifest: dict  # the decryption Secret (plaintext identity: printed only when asked)
    key_file: str = field(repr=False)
    recipients: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # existing SOPS files, to re-key


def _set_recipients(recipients: list[str]):
    def mutate(config) -> None:
        from ruamel.yaml.comments import CommentedMap

        section = config.get(SOPS_SECTION)
        if section is None:
            section = config[SOPS_SECTION] = CommentedMap()
        if not isinstance(section, dict):
            raise KsecretsError(f"config: {SOPS_SECTION}: must be a mapping")
        section["recipients"] = list(recipients)

    return mutate


def stack_files(root: str | os.PathLike[str], stack: str) -> list[Path]:
    """The committed SOPS files of a stack (`secrets/<stack>/*.sops.yaml`), sorted."""
    folder = Path(root) / SECRETS_DIR / stack
    return sorted(p for p in folder.glob(f"*{FILE_SUFFIX}") if p.is_file()) if folder.is_dir() else []


def keygen_age(
    root: str | os.PathLike[str],
    stack: str,
    *,
    backup_file: str | os.PathLike[str],
    passphrase: str,
    log2_n: int,
    add: bool = False,
    key_out: str | os.PathLike[str] | None = None,
) -> AgeKeygen:
    """A new age key for a sops stack: backed up first (encrypted), then its recipient appended
    to `k8s-secrets:sops.recipients` (an existing recipient is kept; `add` is required then)."""
    cfg = load_stack(stack, root)
    if not cfg.spec.sops_files:
        raise KsecretsError(f"{cfg.source}: backend {cfg.backend}: not a sops stack")
    old = list(cfg.sops.recipients)
    if old and not add:
        raise KsecretsError(
            f"{cfg.source}: k8s-secrets:sops.recipients: already has {len(old)} recipient(s); pass --add to add "
            "another key (a person joining), then ksecrets sops updatekeys"
        )
    backup = Path(backup_file)
    if backup.exists():
        raise KsecretsError(f"{backup}: already exists; choose another file (a backup is never overwritten)")
    if key_out is not None:
        if inside_repository(key_out, root):
            raise KsecretsError(f"{key_out}: inside the repository; keep age keys out of Git (choose another file)")
        if Path(key_out).exists():
            raise KsecretsError(f"{key_out}: already exists; choose another file (a key file is never overwritten)")
    key = sops.generate_age_key()
    key_file = key.key_file()
    manifest = sops.key_secret_manifest(key_file, cfg.sops.key_secret, cfg.flux.namespace)
    # The backup first: a recipient must never be in the config without its key safe somewhere.
    write_backup(backup, backup_plaintext(manifest, str(backup)), passphrase, log2_n=log2_n)
    if key_out is not None:
        write_key_file(key_out, key_file, root)
    from ksecrets.config.stackfile import update_stack_file

    recipients = [*old, key.recipient]
    update_stack_file(stack_path(stack, root), _set_recipients(recipients))
    files = [os.path.relpath(p, root) for p in stack_files(root, stack)]
    return AgeKeygen(key.recipient, manifest, key_file, recipients, files)


# --- updatekeys -----------------------------------------------------------------------------------


@dataclass
class UpdateKeysReport:
    rekeyed: list[str] = field(default_factory=list)  # relative paths
    current: list[str] = field(default_factory=list)  # already for exactly the stack's recipients
    skipped: list[str] = field(default_factory=list)  # stacks of another backend

    def lines(self) -> list[str]:
        out = [f"{p}: re-keyed" for p in self.rekeyed]
        out += [f"{p}: already for the stack's recipients" for p in self.current]
        out += [f"{s}: not a sops stack, skipped" for s in self.skipped]
        out.append(f"{len(self.rekeyed)} file(s) re-keyed, {len(self.current)} unchanged")
        return out


def updatekeys(
    root: str | os.PathLike[str], stacks: Sequence[str], identities: Sequence[str], *, explicit: bool
) -> UpdateKeysReport:
    """Re-key every SOPS file of `stacks` for its stack's `sops.recipients`, all or nothing.
    `explicit`: the stacks were named (--stack): one of another backend is an error, not skipped."""
    report = UpdateKeysReport()
    pending: list[tuple[Path, str, int]] = []
    for stack in stacks:
        cfg = load_stack(stack, root)
        if not cfg.spec.sops_files:
            if explicit:
                raise KsecretsError(f"{cfg.source}: backend {cfg.backend}: not a sops stack")
            report.skipped.append(stack)
            continue
        recipients = list(cfg.sops.recipients)
        if not recipients:
            raise KsecretsError(f"{cfg.source}: k8s-secrets:sops.recipients: empty; nothing to re-key for")
        for path in stack_files(root, stack):
            rel = os.path.relpath(path, root)
            text = read_bytes(path, "SOPS file", source=rel, regular=True).decode("utf-8", "replace")
            doc = sops.parse(text, rel)
            if doc.recipients == recipients:
                report.current.append(rel)
                continue
            pending.append((path, sops.updatekeys(text, identities, recipients, rel), path.stat().st_mode & 0o777))
            report.rekeyed.append(rel)
    with Transaction() as tx:
        for path, text, mode in pending:
            atomic_write_text(tx.keep(path), text, mode)
    return report
