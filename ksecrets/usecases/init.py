"""`ksecrets init`'s workflow: from the guide's answers to the files of a project's environments.

It calls the other use cases as they are: `stack_new.py` (`stack new`), `keygen.py`, `adopt.py`
(its hint) and scan.

`plan` checks every answer and decides everything first (the backend of each environment by the
guide's matrix, `usecases/choose.py`; which files exist and are kept); `apply` then writes, in one
`fileio.Transaction`, so an error or Ctrl-C leaves no file half-written and no new file behind:

- a stack file per new environment, through `stack new`'s use case (`stack_new.stack_new`: validated
  and rendered as `make render` does before it is written), with the matrix's reason as a comment;
- a sealing key pair per new sealed-secrets stack, through `keygen`'s use case (the private key only
  in an encrypted backup under `--backup-dir`, outside the repository);
- `.sops.yaml` creation rules for the sops stacks (their age recipients);
- the `.gitignore` entries (plaintext env files, age keys, key backups);
- a CI workflow running the project's guardrails when the repository has none.

It never overwrites: an environment whose stack file exists is kept as it is (so is its
certificate), and so are an existing `.sops.yaml` (the rule to add is printed) and CI workflow.
Plaintext that `scan` finds is reported with the `ksecrets adopt` command that takes it in.
"""

from __future__ import annotations

import dataclasses
import os
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ksecrets import backends
from ksecrets.config.model import default_secret_name
from ksecrets.errors import KsecretsError
from ksecrets.usecases.choose import Answers, Choice, choose_all

# Lines `init` makes sure `.gitignore` has: plaintext env files (the names are scan's
# `is_env_file_name`; its templates stay trackable), age private keys and sealing-key backups.
# The project's own .gitignore has every one (tests/cli/test_init.py).
GITIGNORE = (
    ".[eE][nN][vV]",
    ".[eE][nN][vV].*",
    "*.[eE][nN][vV]",
    "!*.example",
    "!*.sample",
    "!*.template",
    "!*.dist",
    "!*.tmpl",
    "*.agekey",
    "*.ksbackup",
)
GITIGNORE_HEADER = "# ksecrets init: plaintext env files, age keys and key backups are never committed"

SOPS_CONFIG = ".sops.yaml"
# The workflow a repository gets when it has none (`.github/workflows/ci.yml` is the project's own:
# its checks job runs the same commands, and it previews every stack file, so init adds nothing).
PROJECT_WORKFLOW = ".github/workflows/ci.yml"
PROJECT_MATRIX = ".ci/stacks.py"  # its preview and up matrices, one entry per stack file
WORKFLOW = ".github/workflows/ksecrets.yml"
# The guardrails CI runs on every change (the project's ci.yml runs each; tests/cli/test_init.py).
CI_CHECKS = (
    ("k8s/ is what `make render` writes", "ksecrets export --check"),
    ("sealed values open with each stack's certificate", "ksecrets verify"),
    ("no secret material in the tracked files", "ksecrets scan"),
    ("every namespace, ServiceAccount and Secret a stack references exists", "ksecrets doctor"),
)


class MissingAnswer(KsecretsError):
    """An answer the choices made necessary (a sops environment's recipient, a folder for the sealing
    keys' backups): the command line asks it, or names its flag."""

    def __init__(self, flag: str, why: str, prompt: str, env: str | None) -> None:
        super().__init__(f"{flag}: missing; {why}")
        self.flag = flag
        self.prompt = prompt
        self.env = env


@dataclass(frozen=True)
class InitRequest:
    root: Path
    answers: Answers
    environments: tuple[str, ...]
    production: tuple[str, ...]
    cluster: str = "managed"
    ci: str = "github"
    secret_kinds: tuple[str, ...] = ()
    age_recipients: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    backup_dir: Path | None = None
    ksecrets_package: str = "ksecrets"


@dataclass
class Plan:
    request: InitRequest
    choices: list[Choice]
    new: list[Choice]  # environments whose stack file init writes
    kept: dict[str, str | None]  # environments whose stack file exists (never touched) -> its backend
    keygen: dict[str, Path]  # environment -> backup file (a certificate to make)
    certs_kept: list[str]  # new sealed stacks whose certificate exists already
    sops_rules: dict[str, tuple[str, ...]]  # new sops stacks -> recipients
    sops_config_text: str | None  # .sops.yaml to write (None: none needed, or it exists)
    sops_rules_to_add: list[str]  # an existing .sops.yaml lacks these stacks' rules
    gitignore_text: str | None  # the new .gitignore (None: nothing to add)
    workflow_text: str | None


@dataclass
class Outcome:
    written: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def stack_path(root: Path, env: str) -> Path:
    from ksecrets.config.stackfile import stack_file_path

    return stack_file_path(env, root)


def _cert(env: str) -> str:
    return f"certs/{env}.pem"  # what `stack new` points a sealed stack at (backends/sealed_secrets.py)


def sops_path_regex(env: str) -> str:
    from ksecrets.backends.sops import FILE_SUFFIX, SECRETS_DIR

    return f"^{SECRETS_DIR}/{re.escape(env)}/.*{re.escape(FILE_SUFFIX)}$"


def sops_config(rules: Mapping[str, Sequence[str]]) -> str:
    """`.sops.yaml`: one creation rule per sops stack, so `sops` itself encrypts a new file under
    `secrets/<stack>/` for the stack's recipients with the rule `ksecrets sops set` uses."""
    from ksecrets import yamlio
    from ksecrets.sopsrules import SECRET_ENCRYPTED_REGEX

    doc = {
        "creation_rules": [
            {
                "path_regex": sops_path_regex(env),
                "encrypted_regex": SECRET_ENCRYPTED_REGEX,
                "age": ",".join(recipients),
            }
            for env, recipients in rules.items()
        ]
    }
    return "# Written by `ksecrets init`: one rule per sops stack (k8s-secrets:sops.recipients).\n" + yamlio.dump(doc)


def workflow(package: str) -> str:
    """The CI workflow of a repository that has none: the project's guardrails on every change."""
    steps = "".join(f"      - name: {name}\n        run: {command}\n" for name, command in CI_CHECKS)
    return (
        "# Written by `ksecrets init`: the guardrails of k8s-secrets on every change (README: CI guardrails).\n"
        "# KSECRETS_PACKAGE: where pip installs ksecrets from (a version, a wheel or a git URL).\n"
        "name: ksecrets\n\n"
        "on:\n  pull_request:\n  push:\n    branches: [main]\n\n"
        "permissions:\n  contents: read\n\n"
        "jobs:\n  checks:\n    runs-on: ubuntu-latest\n    timeout-minutes: 15\n"
        f"    env:\n      KSECRETS_PACKAGE: {_yaml_scalar(package)}\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4.2.2\n        with:\n          persist-credentials: false\n"
        '      - uses: actions/setup-python@v5.3.0\n        with:\n          python-version: "3.11"\n'
        '      - name: Install ksecrets\n        run: python -m pip install "$KSECRETS_PACKAGE"\n' + steps
    )


def _yaml_scalar(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a YAML scalar


def _gitignore(root: Path) -> str | None:
    path = root / ".gitignore"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    have = {line.strip() for line in old.splitlines()}
    missing = [line for line in GITIGNORE if line not in have]
    if not missing:
        return None
    sep = "" if not old or old.endswith("\n") else "\n"
    return old + sep + ("\n" if old else "") + GITIGNORE_HEADER + "\n" + "".join(m + "\n" for m in missing)


def _backend_of(root: Path, env: str) -> str | None:
    """An existing stack's backend (None when its file does not load: init leaves it to the user)."""
    from ksecrets.config.load import load_stack

    try:
        return load_stack(env, root).backend
    except KsecretsError:
        return None


def in_effect(p: Plan) -> list[Choice]:
    """Each environment's backend after init: the matrix's for new stacks, the file's for kept ones."""
    out = []
    for c in p.choices:
        if c.environment not in p.kept:
            out.append(c)
        elif p.kept[c.environment] is not None:
            backend = str(p.kept[c.environment])
            out.append(
                Choice(
                    c.environment, backend, "kept", f"{stack_path(p.request.root, c.environment).name} says {backend}"
                )
            )
    return out


def plan(req: InitRequest) -> Plan:
    """Every check before any write: names, production environments, recipients, backups."""
    from ksecrets import validators
    from ksecrets.usecases.stack_new import check_new_stack_name

    root = req.root
    if not req.environments:
        raise KsecretsError("--environments: name at least one environment (e.g. staging,production)")
    seen: set[str] = set()
    for env in req.environments:
        check_new_stack_name(env)
        if env in seen:
            raise KsecretsError(f"--environments: {env} is named twice")
        seen.add(env)
    for env in req.production:
        if env not in seen:
            raise KsecretsError(f"--production: {env} is not one of --environments ({', '.join(req.environments)})")
    for env in req.age_recipients:
        if env not in seen:
            raise KsecretsError(f"--age-recipient {env}=...: {env} is not one of --environments")
    choices = choose_all(req.answers, req.environments, req.production)
    new = [c for c in choices if not stack_path(root, c.environment).exists()]
    kept = {c.environment: _backend_of(root, c.environment) for c in choices if c not in new}
    keygen: dict[str, Path] = {}
    certs_kept: list[str] = []
    sops_rules: dict[str, tuple[str, ...]] = {}
    for c in new:
        spec = backends.get(c.backend)
        if spec.sops_files:
            recipients = req.age_recipients.get(c.environment, ())
            if not recipients:
                raise MissingAnswer(
                    f"--age-recipient {c.environment}=AGE1...",
                    f"environment {c.environment} gets backend {c.backend}; give its age public key "
                    "(age-keygen -y KEYFILE)",
                    f"The age public key of {c.environment} (age1..., comma-separated for several)",
                    c.environment,
                )
            for r in recipients:
                problem = validators.age_recipient(r)
                if problem:
                    raise KsecretsError(f"--age-recipient {c.environment}: {problem}")
            sops_rules[c.environment] = recipients
        elif req.age_recipients.get(c.environment):
            raise KsecretsError(
                f"--age-recipient {c.environment}: environment {c.environment} gets backend {c.backend}, "
                "which encrypts no SOPS files"
            )
        if spec.seals:
            if (root / _cert(c.environment)).exists():
                certs_kept.append(c.environment)
                continue
            if req.backup_dir is None:
                raise MissingAnswer(
                    "--backup-dir DIR",
                    f"environment {c.environment} gets backend {c.backend}; its sealing key's encrypted backup "
                    "goes there (outside the repository)",
                    "Where the sealing keys' encrypted backups go (a folder outside the repository)",
                    None,
                )
            backup_dir = req.backup_dir
            if not backup_dir.is_dir():
                raise KsecretsError(f"--backup-dir {backup_dir}: not a directory")
            if os.path.commonpath([backup_dir.resolve(), root.resolve()]) == str(root.resolve()):
                raise KsecretsError(f"--backup-dir {backup_dir}: inside the repository; keep key backups out of Git")
            backup = backup_dir / f"{c.environment}.ksbackup"
            if backup.exists():
                raise KsecretsError(
                    f"{backup}: already exists; choose another --backup-dir (a backup is never overwritten)"
                )
            keygen[c.environment] = backup
    sops_text = None
    to_add: list[str] = []
    if sops_rules:
        existing = root / SOPS_CONFIG
        if existing.exists():
            text = existing.read_text(encoding="utf-8", errors="replace")
            to_add = [env for env in sops_rules if sops_path_regex(env) not in text]
        else:
            sops_text = sops_config(sops_rules)
    wf = None
    if req.ci == "github" and not (root / PROJECT_WORKFLOW).exists() and not (root / WORKFLOW).exists():
        wf = workflow(req.ksecrets_package)
    return Plan(req, choices, new, kept, keygen, certs_kept, sops_rules, sops_text, to_add, _gitignore(root), wf)


def apply(p: Plan, passphrase: Callable[[], str]) -> Outcome:
    """Write what the plan says, all or nothing (`fileio.Transaction`; directories it made go too)."""
    from ksecrets.fileio import Transaction, atomic_write_text
    from ksecrets.usecases.stack_new import stack_new
    from ksecrets.usecases import keygen as keygen_uc

    root = p.request.root
    out = Outcome()
    secret = passphrase() if p.keygen else ""
    made_dirs: list[Path] = []

    def mkdirs(path: Path) -> None:
        missing = [d for d in reversed(path.parents) if not d.exists() and root.resolve() in d.resolve().parents]
        for d in missing:
            d.mkdir()
            made_dirs.append(d)

    try:
        with Transaction() as tx:
            for env, backup in p.keygen.items():
                tx.keep(backup)
                cert = root / _cert(env)
                mkdirs(cert)
                tx.keep(cert)
                made = keygen_uc.generate(root, _cert(env), backup, secret)
                out.written.append(f"{_cert(env)}: {made.fingerprint}, expires {made.expires}")
                out.notes.append(f"{backup}: {env}'s sealing key, encrypted (mode 0600); keep it offline")
                out.next_steps.append(
                    f"{env}: ksecrets restore --backup {backup} | kubectl apply -f -   "
                    "(the key, before the controller starts)"
                )
            for c in p.new:
                path = stack_path(root, c.environment)
                tx.keep(path)
                made_stack = stack_new(
                    root,
                    c.environment,
                    c.backend,
                    age_recipients=p.sops_rules.get(c.environment, ()),
                    note=textwrap.wrap(
                        f"ksecrets init chose {c.backend} by the guide's matrix ({c.rule}): {c.why}", 98
                    ),
                    written_by="ksecrets init",
                    up_order=p.request.environments.index(c.environment) + 1,  # CI deploys in this order
                )
                out.written.append(f"{path.name}: backend {c.backend}")
                # init made the certificate, took the recipients; CI's steps are the project's ci.yml's
                done = ("certificate:", "age key:") + (() if (root / PROJECT_MATRIX).exists() else ("CI:",))
                out.next_steps += [s for s in made_stack.next_steps if not s.startswith(done)]
            if p.sops_config_text is not None:
                path = root / SOPS_CONFIG
                tx.keep(path)
                atomic_write_text(path, p.sops_config_text, 0o644)
                out.written.append(f"{SOPS_CONFIG}: creation rules for {', '.join(p.sops_rules)}")
            if p.gitignore_text is not None:
                path = root / ".gitignore"
                tx.keep(path)
                atomic_write_text(path, p.gitignore_text, 0o644)
                out.written.append(".gitignore: env files, age keys and key backups ignored")
            if p.workflow_text is not None:
                path = root / WORKFLOW
                mkdirs(path)
                tx.keep(path)
                atomic_write_text(path, p.workflow_text, 0o644)
                out.written.append(f"{WORKFLOW}: export --check, verify, scan, doctor on every change")
    except BaseException:
        for d in reversed(made_dirs):
            try:
                d.rmdir()
            except OSError:
                pass
        raise
    for env in p.kept:
        out.notes.append(f"{stack_path(root, env).name}: exists, kept as it is (init never overwrites a stack)")
    for env in p.certs_kept:
        out.notes.append(f"{_cert(env)}: exists, kept (no new key for {env})")
    for env in p.sops_rules_to_add:
        out.notes.append(
            f"{SOPS_CONFIG}: exists, kept; add the rule for {env}: path_regex {sops_path_regex(env)}, "
            f"age {','.join(p.sops_rules[env])}"
        )
    if p.request.ci == "github" and p.workflow_text is None:
        existing = PROJECT_WORKFLOW if (root / PROJECT_WORKFLOW).exists() else WORKFLOW
        out.notes.append(f"{existing}: exists, kept (the project's ci.yml previews every stack file: .ci/stacks.py)")
    for env in p.sops_rules:
        out.next_steps.append(
            f"{env}: kubectl -n flux-system create secret generic sops-age --from-file=age.agekey={env}.agekey "
            "(the age key whose public key you gave)"
        )
    return out


@dataclass(frozen=True)
class Plaintext:
    finding: str
    command: str | None  # what takes it in (commands joined by " && "), or None when nothing can
    why_not: str = ""


# The words of a printed command that the user fills in (the command line asks them before it runs).
APP = "APP"
SECRET_NAME = "SECRET-NAME"


def plaintext(root: Path, choices: Sequence[Choice]) -> list[Plaintext]:
    """What `scan` finds in clear under `root` (every file, tracked or not: a fresh repository tracks
    nothing yet), with the commands that take each file in: `ksecrets adopt` (after `ksecrets app
    add` in a stack init just wrote, which has no app yet to own the Secret's namespace), or the
    backend's own command where adopt cannot write (manual: `pulumi config set`)."""
    from ksecrets.usecases.adopt import collect, shell_quote
    from ksecrets.scan import ENV_FILE, SECRET_DATA, is_env_file_name, scan

    findings, _ = scan([str(root)], root=str(root))
    envs = {c.environment: c for c in choices}
    adopts = [c for c in choices if backends.get(c.backend).adopts]
    out: list[Plaintext] = []
    seen: set[str] = set()
    for f in findings:
        rel = os.path.relpath(f.path, root)
        shown = str(dataclasses.replace(f, path=rel))
        if f.kind not in (ENV_FILE, SECRET_DATA):  # what adopt takes in: env files, Secrets with data
            out.append(Plaintext(shown, None, "not something adopt takes in: remove it by hand"))
            continue
        if rel in seen:
            continue
        seen.add(rel)
        env_file = is_env_file_name(rel)
        named = envs.get(_env_of(rel)) if env_file else None  # .env.staging: for staging
        target = named or (adopts[0] if adopts else None)
        if target is None:
            why = backends.get(choices[0].backend).cannot_adopt() if choices else "no environment"
            out.append(Plaintext(shown, None, why))
            continue
        spec = backends.get(target.backend)
        stack = target.environment
        new = target.rule != "kept"  # a stack init wrote: no app yet
        quoted = shell_quote(rel)
        if not spec.adopts:  # adopt cannot write it: the backend's own command
            how, _ = spec.put_values(stack, SECRET_NAME, [APP])
            out.append(Plaintext(shown, how.replace("FILE", quoted)))
            continue
        adopt = f"ksecrets adopt {quoted} --stack {stack}"
        if env_file:
            if new:
                command = f"ksecrets app add --stack {stack} --name {APP} && {adopt} --name {default_secret_name(APP)}"
            else:
                command = f"{adopt} --name {SECRET_NAME}"
        else:
            command = adopt
            if new:
                try:
                    items = collect(root / rel)
                except KsecretsError:
                    items = []
                adds = [
                    f"ksecrets app add --stack {stack} --name {it.name} --namespace {it.namespace} "
                    f"--secret-name {it.name}"
                    for it in items
                    if it.namespace
                ]
                command = " && ".join([*adds, adopt])
        out.append(Plaintext(shown, command))
    return out


def _env_of(path: str) -> str:
    """The environment an env file is named for: `.env.staging` and `staging.env` are staging's."""
    name = os.path.basename(path).lower()
    if name.startswith(".env."):
        return name[len(".env.") :]
    return name[: -len(".env")] if name.endswith(".env") else ""
