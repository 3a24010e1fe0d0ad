"""`ksecrets init`: the guide's questions, a backend per environment by its decision matrix, and the
files of those environments (stacks, sealing keys, .sops.yaml, .gitignore, CI).

Asks on the terminal what no flag answered (when stdin is a terminal); every answer is also a flag,
for scripts. `--non-interactive` (or stdin that is not a terminal) asks nothing: a missing answer is
a one-line error naming its flag, exit 2, nothing written.

    ksecrets init --non-interactive --environments staging,production --production production \\
      --cluster managed --ci github --secrets app-config,database --compliance soc2 --current plaintext \\
      --team-size medium --security standard --gitops flux --rotation manual --audit git \\
      --dynamic-secrets no --backup-dir ~/safe

It never overwrites: an environment whose stack file exists is kept, so are an existing
certificate, .sops.yaml and CI workflow. Sealing-key backups need KSECRETS_BACKUP_PASSPHRASE or a
prompt on the terminal.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from ksecrets.cli.flags import add_root_flag
from ksecrets.usecases import choose as matrix  # standard library only


@dataclass(frozen=True)
class Question:
    dest: str
    flag: str
    prompt: str
    choices: tuple[str, ...] | None  # None: free text; a list answer is comma-separated
    many: bool = False


YES_NO = ("yes", "no")
# The guide's closing questions and its matrix's factors, in the order they are asked.
QUESTIONS = (
    Question("environments", "--environments", "Your environments, in deploy order (comma-separated)", None, True),
    Question("production", "--production", "Which of them are production (comma-separated, or none)", None, True),
    Question("cluster", "--cluster", "Where do the clusters run", matrix.CLUSTERS),
    Question("ci", "--ci", "Your CI", matrix.CI),
    Question("secrets", "--secrets", "The kinds of secrets (comma-separated)", matrix.SECRET_KINDS, True),
    Question("compliance", "--compliance", "Compliance requirements", matrix.COMPLIANCE),
    Question("current", "--current", "Secrets management in use today", matrix.CURRENT),
    Question("team_size", "--team-size", "Team size (small 1-5, medium 6-20, large 21+)", matrix.TEAM_SIZES),
    Question("security", "--security", "Security requirements", matrix.SECURITY),
    Question("gitops", "--gitops", "GitOps (Flux reconciles the repository)", matrix.GITOPS),
    Question("rotation", "--rotation", "Secret rotation", matrix.ROTATION),
    Question("audit", "--audit", "Audit: who changed a secret (git) or who read it (access-log)", matrix.AUDIT),
    Question("dynamic_secrets", "--dynamic-secrets", "Dynamic secrets (short-lived database credentials)", YES_NO),
)


def register(subparsers) -> None:
    from ksecrets.cli import SUBCOMMANDS

    p = subparsers.add_parser(
        "init",
        help=SUBCOMMANDS["init"][1],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for q in QUESTIONS:
        what = f"one of {', '.join(q.choices)}" if q.choices else "names"
        p.add_argument(
            q.flag, dest=q.dest, default=None, metavar="LIST" if q.many else "ANSWER", help=f"{q.prompt}: {what}"
        )
    p.add_argument(
        "--age-recipient",
        dest="age_recipients",
        action="append",
        default=[],
        metavar="ENV=AGE1...",
        help="the age public key of a sops environment (repeatable)",
    )
    p.add_argument(
        "--backup-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the sealing keys' encrypted backups go (<env>.ksbackup; outside the repository)",
    )
    p.add_argument(
        "--ksecrets-package",
        default="ksecrets",
        metavar="SPEC",
        help="what the CI workflow pip-installs (a version, wheel or git URL; default ksecrets)",
    )
    p.add_argument("--non-interactive", action="store_true", help="ask nothing: a missing answer is an error")
    p.add_argument("--yes", action="store_true", help="write without asking for confirmation")
    add_root_flag(p, help="the repository to set up")
    p.set_defaults(func=run)


class _Asker:
    """Prompts on the terminal (stdin/stdout); in scripts, a missing answer names its flag."""

    def __init__(self, interactive: bool, why_not: str = "") -> None:
        self.interactive = interactive
        self.why_not = why_not  # why nothing is asked (named in the error)

    def ask(self, flag: str, prompt: str, choices: tuple[str, ...] | None = None, default: str | None = None) -> str:
        from ksecrets.errors import KsecretsError

        if not self.interactive:
            raise KsecretsError(f"{flag}: missing ({self.why_not}: give every answer as a flag)")
        shown = f" [{'/'.join(choices)}]" if choices else ""
        shown += f" ({default})" if default else ""
        while True:
            sys.stdout.write(f"{prompt}{shown}: ")
            sys.stdout.flush()
            line = sys.stdin.readline()
            if not line:
                raise KsecretsError(f"{flag}: no answer (end of input)")
            answer = line.strip() or (default or "")
            if answer:
                return answer

    def confirm(self, prompt: str, default: bool) -> bool:
        if not self.interactive:
            return default
        answer = self.ask("--yes", f"{prompt} [{'Y/n' if default else 'y/N'}]", None, "y" if default else "n")
        return answer.lower().startswith("y")


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _check(q: Question, value: str) -> str | None:
    """The one-line problem with an answer, or None."""
    items = _split(value) if q.many else (value.strip(),)
    if not items or not all(items):
        return f"{q.flag}: empty"
    if q.choices:
        bad = [i for i in items if i not in q.choices]
        if bad:
            return f"{q.flag} {bad[0]!r}: not one of {', '.join(q.choices)}"
    return None


def _answer(asker: _Asker, q: Question, given: str | None) -> str:
    from ksecrets.errors import KsecretsError

    if given is not None:
        problem = _check(q, given)
        if problem:
            raise KsecretsError(problem)
        return given
    while True:
        value = asker.ask(q.flag, q.prompt, q.choices)
        problem = _check(q, value)
        if not problem:
            return value
        sys.stdout.write(f"  {problem}\n")


def _recipients(values: list[str]) -> dict[str, tuple[str, ...]]:
    from ksecrets.errors import KsecretsError

    out: dict[str, tuple[str, ...]] = {}
    for v in values:
        env, sep, key = v.partition("=")
        if not sep or not env or not key:
            raise KsecretsError(f"--age-recipient {v[:80]!r}: expected ENV=AGE1...")
        out[env] = (*out.get(env, ()), key)
    return out


def run(args: argparse.Namespace) -> int:
    from ksecrets.usecases import init
    from ksecrets.errors import KsecretsError
    from ksecrets.sealing.backup import get_passphrase

    asker = _Asker(
        not args.non_interactive and sys.stdin.isatty(),
        "--non-interactive asks nothing" if args.non_interactive else "stdin is not a terminal",
    )
    answers = {q.dest: _answer(asker, q, getattr(args, q.dest)) for q in QUESTIONS}
    recipients = _recipients(args.age_recipients)
    req = init.InitRequest(
        root=Path(args.root),
        answers=matrix.Answers(
            team_size=answers["team_size"],
            security=answers["security"],
            compliance=answers["compliance"],
            gitops=answers["gitops"],
            rotation=answers["rotation"],
            audit=answers["audit"],
            dynamic_secrets=answers["dynamic_secrets"] == "yes",
            current=answers["current"],
        ),
        environments=_split(answers["environments"]),
        production=() if answers["production"].strip() == "none" else _split(answers["production"]),
        cluster=answers["cluster"],
        ci=answers["ci"],
        secret_kinds=_split(answers["secrets"]),
        age_recipients=recipients,
        backup_dir=args.backup_dir.expanduser() if args.backup_dir else None,
        ksecrets_package=args.ksecrets_package,
    )
    while True:  # the answers that depend on the choices: asked, or named as a missing flag
        try:
            p = init.plan(req)
            break
        except init.MissingAnswer as missing:
            if not asker.interactive:
                raise
            value = asker.ask(missing.flag, missing.prompt)
            if missing.env is None:
                req = _replace(req, backup_dir=Path(value).expanduser())
            else:
                req = _replace(req, age_recipients={**req.age_recipients, missing.env: _split(value)})
    print("The guide's matrix, per environment:")
    for c in p.choices:
        print(f"  {c.environment}: {c.backend} ({c.rule}): {c.why}")
        if c.environment in p.kept:
            has = p.kept[c.environment] or "a stack file that does not load"
            print(f"    kept: {init.stack_path(req.root, c.environment).name} exists ({has}); init does not change it")
    if not args.yes and not asker.confirm("Write the files?", True):
        raise KsecretsError("init: nothing written (not confirmed)")
    outcome = init.apply(p, lambda: get_passphrase(confirm=True))
    for line in outcome.written:
        print(f"written: {line}")
    for line in outcome.notes:
        print(f"note: {line}")
    for line in dict.fromkeys(outcome.next_steps):
        print(f"next: {line}")
    found = init.plaintext(req.root, init.in_effect(p))
    code = 0
    for item in found:
        if not item.command:
            print(f"plaintext: {item.finding}; {item.why_not}")
            continue
        print(f"plaintext: {item.finding}; take it in with: {item.command}")
        if "ksecrets adopt " in item.command and asker.confirm("Run it now?", False):
            code = _adopt(asker, item.command, req.root) or code
    print("then: make render")
    sys.stdout.flush()
    return code


def _adopt(asker: _Asker, command: str, root: Path) -> int:
    """Run a printed `ksecrets app add && ksecrets adopt` as written, from the repository as the
    user would, after asking what its placeholder stands for; stops at the first that fails."""
    import os
    import shlex

    from ksecrets.cli import main
    from ksecrets.usecases.init import APP, SECRET_NAME

    values: dict[str, str] = {}
    for word, prompt in (
        (APP, "The app's name (its namespace, and its Secret APP-secrets)"),
        (SECRET_NAME, "The Secret's name"),
    ):
        if any(a == word or a.startswith(word + "-") for a in shlex.split(command)):
            values[word] = asker.ask(word, prompt)
    here = os.getcwd()
    os.chdir(root)
    try:
        for part in command.split(" && "):
            argv = shlex.split(part)[1:]
            for word, value in values.items():
                argv = [value + a[len(word) :] if a == word or a.startswith(word + "-") else a for a in argv]
            sys.stdout.flush()
            code = main(argv)
            if code:
                return code
        return 0
    finally:
        os.chdir(here)


def _replace(req, **changes):
    import dataclasses

    return dataclasses.replace(req, **changes)
