"""`ksecrets sops set --stack S --name SECRET --from-env-file F`: put values into a sops stack's
committed SOPS-encrypted Secret (`secrets/<stack>/<SECRET>.sops.yaml`, the backend's one file per
Secret), creating it for the stack's age recipients or editing it with the stack's age key.

Editing goes through `ksecrets.sealing.sops.edit`: the MAC is verified first, the keys given are
set (a value equal to the one already there keeps its ciphertext), every other key keeps its
ciphertext byte for byte, and the MAC is written anew. Keys not in the file stay: the env file
adds and changes, it does not remove. Key names are checked like `ksecrets seal` checks them
(`envfile.check_key_name`). The file is written atomically under a lock; nothing is half-written.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Mapping

from ksecrets.backends.sops import secret_file
from ksecrets.config.load import load_stack
from ksecrets.envfile import check_key_name, config_map_key_problem, parse_env_file
from ksecrets.errors import KsecretsError
from ksecrets.fileio import atomic_write_text, locked, read_bytes
from ksecrets.manifests.plan import metadata
from ksecrets.sealing import sops
from ksecrets.usecases.seal_stack import resolve_namespace

# Where `sops` looks for the age key file (the command line reads it; named here for the errors).
KEY_FILE_ENV = "SOPS_AGE_KEY_FILE"


@dataclass
class SopsSetReport:
    path: str  # relative to the root
    namespace: str
    name: str
    created: bool
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        what = "created" if self.created else "edited"
        out = [f"{self.path}: {what} ({self.namespace}/{self.name})"]
        if self.changed:
            out.append(f"  set: {', '.join(self.changed)}")
        if self.unchanged:
            out.append(f"  unchanged: {', '.join(self.unchanged)}")
        return out


def read_identities(key_file: str | os.PathLike[str] | None) -> list[str]:
    """The age identities of `key_file` (an age-keygen file)."""
    if not key_file:
        raise KsecretsError(
            f"editing an existing SOPS file needs the stack's age key: --age-key-file FILE or {KEY_FILE_ENV}"
        )
    data = read_bytes(key_file, "age key file", source=str(key_file))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KsecretsError(f"{key_file}: not an age key file (not UTF-8)") from None
    return sops.identities_from_key_file(text, str(key_file))


def sops_set(
    root: str | os.PathLike[str],
    stack: str,
    *,
    name: str,
    values: Mapping[str, bytes],
    namespace: str | None = None,
    key_file: str | os.PathLike[str] | None = None,
    allow_key_names: Collection[str] = (),
) -> SopsSetReport:
    """Set `values` (key → bytes) in the stack's SOPS Secret `name`."""
    cfg = load_stack(stack, root)
    if not cfg.spec.sops_files:
        how, where = cfg.spec.put_values(stack, name, [name])
        raise KsecretsError(f"{cfg.source}: backend {cfg.backend}: values {where}; use {how}")
    if not values:
        raise KsecretsError(f"{cfg.source}: {name}: no values given")
    ns = resolve_namespace(cfg, name, namespace)
    rel = secret_file(stack, name)
    for key, value in values.items():
        problem = config_map_key_problem(key)
        if problem:
            raise KsecretsError(f"{rel}: data: key {key[:40]}: {problem}")
        check_key_name(key, value, f"{rel}: data", allow_key_names)
    encoded = {k: base64.b64encode(values[k]).decode("ascii") for k in sorted(values)}
    path = Path(root) / rel
    if not path.exists():
        if not cfg.sops.recipients:
            raise KsecretsError(
                f"{cfg.source}: k8s-secrets:sops.recipients: empty; add the stack's age public key (age1...)"
            )
        manifest = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(name, ns),
            "type": "Opaque",
            "data": encoded,
        }
        text = sops.encrypt_secret(manifest, list(cfg.sops.recipients), rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text, 0o644)
        return SopsSetReport(rel, ns, name, created=True, changed=sorted(encoded))
    identities = read_identities(key_file)
    with locked(path, "SOPS file", source=rel) as real:
        old_text = read_bytes(real, "SOPS file", source=rel, regular=True).decode("utf-8", "replace")
        doc = sops.parse(old_text, rel)
        meta: dict = doc.tree["metadata"] if isinstance(doc.tree.get("metadata"), dict) else {}
        if meta.get("namespace") != ns:
            raise KsecretsError(f"{rel}: metadata.namespace is not {ns}; pass --namespace")
        plain = sops.decrypt(old_text, identities, rel).get("data") or {}
        changed = [k for k in encoded if plain.get(k) != encoded[k]]
        new_text = sops.edit(old_text, identities, rel, set_values=encoded)
        atomic_write_text(real, new_text, 0o644)
    return SopsSetReport(rel, ns, name, created=False, changed=changed, unchanged=sorted(set(encoded) - set(changed)))


def sops_set_env_file(
    root: str | os.PathLike[str],
    stack: str,
    *,
    name: str,
    env_file: str | os.PathLike[str],
    namespace: str | None = None,
    key_file: str | os.PathLike[str] | None = None,
    allow_key_names: Collection[str] = (),
) -> SopsSetReport:
    source = str(env_file)
    data = read_bytes(env_file, "env file", source=source)
    values = parse_env_file(data, source, allow_key_names=allow_key_names)
    return sops_set(
        root, stack, name=name, values=values, namespace=namespace, key_file=key_file, allow_key_names=allow_key_names
    )
