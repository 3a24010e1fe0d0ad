"""`stack new` (and `stack new --env`): a new environment's or cluster's stack file.

Every write goes through the config loader first (an invalid file is never written) and is atomic;
`stack new` also renders the new stack as `ksecrets export` would, so it never writes a stack that
`make render` refuses. CI's preview and up jobs list the stacks from the stack files present
(`.ci/stacks.py`), so a new stack file is all CI needs, with its `kubernetes:context`.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ksecrets import backends
from ksecrets.config.model import raw_secret_name
from ksecrets.config.names import PREFIX
from ksecrets.config.stackfile import stack_file_path
from ksecrets.errors import KsecretsError

CONTEXT_KEY = "kubernetes:context"  # the cluster a stack deploys to (components/cluster.py, .ci/stacks.py)
UP_ORDER_KEY = "ci:upOrder"  # where CI's up job deploys the stack in its sequence (.ci/stacks.py)
_STACK_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?$")


def check_new_stack_name(stack: str) -> str:
    """A new stack's name, or the one-line error (`stack new`, `init`)."""
    if not _STACK_NAME.match(stack):
        raise KsecretsError(f"{stack!r}: a stack name is lower-case letters, digits and '-' (at most 50)")
    return stack


def kubeconfig_secret(stack: str) -> str:
    return f"KUBECONFIG_{stack.upper().replace('-', '_')}_READONLY"


def validate_text(text: str, stack: str, source: str, root: str):
    from ksecrets.config.load import parse, raw_from_text

    return parse(raw_from_text(text, source), stack=stack, source=source, root=root)


def _dump(config: Mapping[str, Any], header: str) -> str:
    from ksecrets import yamlio

    return header + yamlio.dump({"config": dict(config)})


def new_stack_config(
    stack: str, backend: str, source: Mapping[str, Any] | None, context: str | None = None
) -> dict[str, Any]:
    """The `config:` map of a new stack: its `kubernetes:context` (default: the stack's name), the
    source stack's apps and settings without any value (no sealed ciphertext: it is sealed for
    another cluster's key; no manual values), or defaults that render."""
    cfg: dict[str, Any] = {}
    if source:
        cfg = copy.deepcopy({k: v for k, v in source.items() if k.startswith(PREFIX)})
    monitoring = cfg.setdefault(PREFIX + "monitoring", {})
    if isinstance(monitoring, dict) and monitoring.get("enabled", True) and "prometheusOperator" not in monitoring:
        # Export refuses an undeclared operator (preflight.check_prerequisites); a new cluster
        # is not assumed to run it. Set true once it does.
        monitoring["prometheusOperator"] = False
    sealed = cfg.pop(PREFIX + "sealed", None) or []
    cfg.pop(PREFIX + "manualValues", None)
    cfg[PREFIX + "backend"] = backend
    flux = cfg.get(PREFIX + "flux")
    if isinstance(flux, dict) and flux.get("path"):
        flux["path"] = f"./k8s/{stack}"
    keys_of = {
        (e.get("namespace"), e.get("name")): sorted((e.get("encryptedData") or {}))
        for e in sealed
        if isinstance(e, dict)
    }
    for app in cfg.get(PREFIX + "apps") or []:
        if not isinstance(app, dict):
            continue
        known = keys_of.get((app.get("namespace"), raw_secret_name(app)))
        if known and not app.get("keys"):
            app["keys"] = known  # the key names travel (the values never do)
    backends.get(backend).stack_new(cfg, stack, PREFIX)  # its certificate, vault section, app paths
    order = ["backend", "namespaces", "flux", "sealedSecrets", "vault", "apps", "rotation", "monitoring"]
    return (
        {CONTEXT_KEY: context or stack}
        | ({UP_ORDER_KEY: source[UP_ORDER_KEY]} if source and UP_ORDER_KEY in source else {})
        | {PREFIX + k: cfg[PREFIX + k] for k in order if PREFIX + k in cfg}
        | {k: v for k, v in cfg.items() if k[len(PREFIX) :] not in order}
    )


@dataclass
class NewStack:
    path: Path
    context: str
    next_steps: list[str] = field(default_factory=list)


def stack_new(
    root: str | os.PathLike[str],
    stack: str,
    backend: str,
    source: str | None = None,
    context: str | None = None,
    *,
    age_recipients: Sequence[str] = (),
    note: Sequence[str] = (),
    written_by: str = "ksecrets stack new",
    up_order: int | None = None,
) -> NewStack:
    from ksecrets import yamlio
    from ksecrets.config import includes
    from ksecrets.fileio import atomic_write_text, read_bytes

    root = Path(root)
    check_new_stack_name(stack)
    if backends.find(backend) is None:
        raise KsecretsError(f"--backend: {backend!r} is not one of {', '.join(backends.BACKENDS)}")
    path = stack_file_path(stack, root)
    if path.exists():
        raise KsecretsError(f"{path.name}: already exists")
    src_config = None
    if source:
        src_path = stack_file_path(source, root)
        doc = yamlio.load(read_bytes(src_path, "stack file", source=src_path.name).decode("utf-8"), src_path.name)
        src_config = (doc or {}).get("config") or {}
        src_config = includes.inline(src_config, source=src_path.name, root=root)  # its apps, even in a file
    if context is not None and (not context.strip() or any(c.isspace() or ord(c) < 32 for c in context)):
        raise KsecretsError(f"--context {context!r}: a kubeconfig context name, without blanks")
    config = new_stack_config(stack, backend, src_config, context)
    if up_order is not None:  # where CI's up job deploys it (after the source's or in init's order)
        config = {CONTEXT_KEY: config.pop(CONTEXT_KEY), UP_ORDER_KEY: up_order} | config
    if age_recipients:
        if not backends.get(backend).sops_files:
            raise KsecretsError(f"--age-recipient: backend {backend} does not encrypt SOPS files")
        config[PREFIX + "sops"] = {**(config.get(PREFIX + "sops") or {}), "recipients": list(age_recipients)}
    context = config[CONTEXT_KEY]
    header = (
        f"# {stack}: backend {backend}"
        + (f", apps and settings from {source} (no values)" if source else "")
        + f". Written by `{written_by}`.\n"
        + "".join(f"# {line}\n" for line in note)
        + f"# {CONTEXT_KEY}: the kubeconfig context of this stack's cluster"
        + " (CI's preview and up use a context of that name).\n"
    )
    text = _dump(config, header)
    # Never write a stack the loader or `ksecrets export` refuses: the same checks as `make render`.
    from ksecrets.usecases.export import render

    render(validate_text(text, stack, path.name, str(root)))
    atomic_write_text(path, text, 0o644)
    secrets = [raw_secret_name(app) for app in config.get(PREFIX + "apps") or []]
    steps = backends.get(backend).stack_new_steps(stack, secrets)
    steps.append(f"check: ksecrets doctor --stack {stack}; make render")
    steps.append(
        f"CI: previews and deploys every stack file (.ci/stacks.py); add the repository secret "
        f"{kubeconfig_secret(stack)} (a read-only kubeconfig with a context named {context}) and a GitHub "
        f"environment {stack} with the secret KUBECONFIG (the deploying kubeconfig)"
    )
    return NewStack(path, context, steps)


# --- stack new --env: a cluster of an environment ------------------------------------------------

# What a cluster keeps for itself when its environment file is made from an existing stack.
_PER_CLUSTER = {"sealedSecrets": ("certificate",), "flux": ("path",)}


def _environment_from(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keys a new stack's config would inherit, as an environment file holds them (no prefix,
    no per-cluster values: no sealed values, manual values, certificate or Flux path)."""
    from ksecrets.config import environments

    env: dict[str, Any] = {}
    own = dict(_PER_CLUSTER)
    for section, key in environments.PER_CLUSTER:  # never in an environment file (vault.authMount)
        own[section] = (*own.get(section, ()), key)
    for key, value in config.items():
        if not key.startswith(PREFIX) or key[len(PREFIX) :] in environments.NOT_INHERITED:
            continue
        name = key[len(PREFIX) :]
        if isinstance(value, dict) and name in own:
            value = {k: v for k, v in value.items() if k not in own[name]}
            if not value:
                continue
        env[name] = value
    return env


def stack_new_in_env(
    root: str | os.PathLike[str], stack: str, env: str, backend: str | None = None, context: str | None = None
) -> NewStack:
    """`stack new NAME --env ENV`: a cluster stack that extends environments/ENV.yaml and holds only
    what is its own (context, certificate). Without environments/ENV.yaml, it is made from stack
    ENV's apps and settings (no values), and stack ENV is left as it is."""
    from ksecrets import yamlio
    from ksecrets.config import environments, includes
    from ksecrets.config.load import check_stack_name
    from ksecrets.usecases.export import render
    from ksecrets.fileio import Transaction, atomic_write_text, read_bytes

    root = Path(root)
    if not _STACK_NAME.match(stack):
        raise KsecretsError(f"{stack!r}: a stack name is lower-case letters, digits and '-' (at most 50)")
    if not _STACK_NAME.match(env):
        raise KsecretsError(f"--env {env!r}: an environment name is lower-case letters, digits and '-'")
    path = stack_file_path(stack, root)
    if path.exists():
        raise KsecretsError(f"{path.name}: already exists")
    if context is not None and (not context.strip() or any(c.isspace() or ord(c) < 32 for c in context)):
        raise KsecretsError(f"--context {context!r}: a kubeconfig context name, without blanks")
    ref = f"{environments.FOLDER}/{env}.yaml"
    env_path = root / ref
    env_text = None
    if env_path.exists():
        env_raw, _, _ = environments.load_environment(
            ref,
            source=path.name,
            root=root,
            known=environments._known(),  # noqa: SLF001
        )
    else:
        src_path = stack_file_path(check_stack_name(env), root)
        if not src_path.exists():
            raise KsecretsError(f"--env {env}: neither {ref} nor a stack {env} ({src_path.name}) to make it from")
        doc = yamlio.load(read_bytes(src_path, "stack file", source=src_path.name).decode("utf-8"), src_path.name)
        src_config = includes.inline((doc or {}).get("config") or {}, source=src_path.name, root=root)
        src_backend = src_config.get(PREFIX + "backend") or backend or "sealed-secrets"
        env_raw = _environment_from(new_stack_config(stack, str(src_backend), src_config, context))
        env_text = (
            f"# Environment {env}: what its cluster stacks share (made from Pulumi.{env}.yaml by `ksecrets stack "
            f"new`, no values).\n# A stack file names it with `k8s-secrets:extends: {ref}` and overrides what is "
            "its own (README: Fleets).\n" + yamlio.dump(env_raw)
        )
    env_backend = env_raw.get("backend")
    if backend is not None and env_backend is not None and str(env_backend) not in (backend,):
        raise KsecretsError(f"--backend {backend}: environment {env} ({ref}) has backend {env_backend}")
    backend = str(env_backend or backend or "")
    spec = backends.find(backend)
    if spec is None:
        raise KsecretsError(f"--backend: {backend!r} is not one of {', '.join(backends.BACKENDS)}")
    config: dict[str, Any] = {CONTEXT_KEY: context or stack, PREFIX + environments.EXTENDS: ref}
    if not env_backend:
        config[PREFIX + "backend"] = backend
    if spec.seals:
        config[PREFIX + "sealedSecrets"] = {"certificate": f"certs/{stack}.pem"}
    flux = env_raw.get("flux")
    if isinstance(flux, Mapping) and flux.get("path"):
        config[PREFIX + "flux"] = {"path": f"./k8s/{stack}"}
    header = (
        f"# {stack}: a cluster of environment {env} ({ref}: apps and settings); this file holds what is\n"
        f"# this cluster's own. Written by `ksecrets stack new --env {env}`.\n"
    )
    text = _dump(config, header)
    pending = {os.path.realpath(env_path): env_text} if env_text is not None else {}
    with includes.pending(pending):
        cfg = validate_text(text, stack, path.name, str(root))
        render(cfg)  # never a stack `make render` refuses
    with Transaction() as tx:
        if env_text is not None:
            env_path.parent.mkdir(exist_ok=True)
            atomic_write_text(tx.keep(env_path), env_text, 0o644)
        atomic_write_text(tx.keep(path), text, 0o644)
    steps = []
    if env_text is not None:
        steps.append(
            f"{ref}: written from Pulumi.{env}.yaml; Pulumi.{env}.yaml is unchanged (to share it too, give it "
            f"`k8s-secrets:extends: {ref}` and drop the keys it repeats)"
        )
    if spec.vault:
        steps.append(f"vault: this cluster's own address and auth mount go in k8s-secrets:vault of {path.name}")
    steps += spec.stack_new_steps(stack, [app.secret_name for app in cfg.apps])
    steps.append(f"check: ksecrets doctor --stack {stack}; ksecrets export --env {env}; ksecrets drift --env {env}")
    steps.append(
        f"CI: add the repository secret {kubeconfig_secret(stack)} (a read-only kubeconfig, context {config[CONTEXT_KEY]})"
    )
    return NewStack(path, str(config[CONTEXT_KEY]), steps)
