"""Every reader of YAML goes through `ksecrets/yamlio.py` and gets bounded work there.

- No module of the program (ksecrets/, components/, policy/, __main__.py) imports a YAML library
  to read, except yamlio (read from the AST, like tests/test_layering.py; ruamel's `comments`
  types are data, not a reader), and no one calls a loader by another name.
- Every command that reads YAML, given an alias bomb or a deeply nested file where it reads one
  (a stack file, an included file, stdin, a scanned or adopted file, git's merge inputs), exits 2
  with one line naming the file, within a few seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.layers import imports

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    [*(ROOT / "ksecrets").rglob("*.py"), *(ROOT / "components").rglob("*.py"), *(ROOT / "policy").rglob("*.py")]
    + [ROOT / "__main__.py"]
)
HOME = ROOT / "ksecrets" / "yamlio.py"
READERS = ("yaml", "ruamel.yaml")
DATA_ONLY = ("ruamel.yaml.comments",)  # CommentedMap/CommentedSeq: the documents yamlio returns
CALLS = re.compile(r"\b(safe_load|load_all|full_load|unsafe_load|compose_all|YAML)\(|\byaml\.(load|compose|parse)\(")


def test_no_module_reads_yaml_except_through_yamlio():
    offences = []
    for path in SOURCES:
        if path == HOME:
            continue
        for mod, _type_only in imports(path, "x"):
            if any(mod == r or mod.startswith(r + ".") for r in READERS) and not any(
                mod == d or mod.startswith(d + ".") for d in DATA_ONLY
            ):
                offences.append(f"{path.relative_to(ROOT)}: imports {mod}")
        for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in CALLS.finditer(text):
                if not text[: m.start()].endswith("yamlio."):
                    offences.append(f"{path.relative_to(ROOT)}:{n}: {m.group(0)}")
    assert offences == []


def test_the_checker_sees_a_reader(tmp_path):
    sample = tmp_path / "s.py"
    sample.write_text("def f():\n    from ruamel.yaml import YAML\n    import yaml\n")
    assert {m for m, _ in imports(sample, "x")} >= {"ruamel.yaml", "yaml"}
    assert CALLS.search("doc = yaml.safe_load(text)") and CALLS.search("y = YAML(typ='rt')")


# --- hostile files, command by command ------------------------------------------------------------


def bomb(indent: str = "    ") -> str:
    """A billion laughs: ~500 bytes, 9^9 nodes once its aliases are expanded."""
    out = [f"{indent}- &a0 [x, x, x, x, x, x, x, x, x]"]
    out += [f"{indent}- &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(out) + "\n"


def deep(n: int = 30000) -> str:
    return "[" * n + "]" * n


def hostile_stack(kind: str) -> str:
    body = bomb() if kind == "bomb" else f"    - {deep()}\n"
    return "config:\n  k8s-secrets:backend: sealed-secrets\n  k8s-secrets:allowPlaceholders:\n" + body


def hostile_list(kind: str) -> str:
    """A `kind: List` of Secrets that nests itself (scan and adopt walk List items)."""
    if kind == "deep":
        return "apiVersion: v1\nkind: List\nitems: " + deep() + "  # of Secrets\n"
    lines = ["apiVersion: v1", "kind: List", "x0: &x0 {apiVersion: v1, kind: Secret, data: {a: YWJjZGVmZ2g=}}"]
    lines += [f"x{i}: &x{i} {{kind: List, items: [*x{i - 1}, *x{i - 1}, *x{i - 1}]}}" for i in range(1, 25)]
    return "\n".join(lines) + "\nitems: [*x24, *x24]\n"


def hostile_secret(kind: str) -> str:
    head = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: my-app\nstringData:\n  A: b\n"
    return head + ("x:\n" + bomb("  ") if kind == "bomb" else f"x: {deep()}\n")


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    for p in ROOT.glob("Pulumi*.yaml"):
        shutil.copy2(p, repo / p.name)
    shutil.copytree(ROOT / "certs", repo / "certs")
    (repo / ".env").write_text("API_KEY=abcdefgh12\n")
    return repo


# (name, where the hostile text goes, argv); `stdin` commands read it on stdin.
STACK_COMMANDS = [
    ("export", ["export", "--stack", "staging"]),
    ("doctor", ["doctor", "--stack", "staging"]),
    ("stack new --from", ["stack", "new", "qa", "--backend", "sealed-secrets", "--from", "staging"]),
    ("stack split", ["stack", "split", "--stack", "staging"]),
    ("app add", ["app", "add", "--stack", "staging", "--name", "zz", "--keys", "A"]),
    ("seal --stack", ["seal", "--stack", "staging", "--name", "my-app-secrets", "--from-literal", "A=b1234567"]),
    ("verify", ["verify", "--stack", "staging"]),
    ("rotate", ["rotate", "--stack", "staging", "--name", "my-app-secrets", "--key", "API_KEY"]),
    ("migrate", ["migrate", "--stack", "staging", "--to", "vault", "--prepare"]),
    ("vault push", ["vault", "push", "--stack", "staging", "--path", "my-app", "--from-env-file", ".env"]),
    ("keygen", ["keygen", "--stack", "staging", "--backup-file", "k.ksbackup"]),
    ("git textconv", ["git", "textconv", "Pulumi.staging.yaml"]),
    ("git merge", ["git", "merge", "base.yaml", "Pulumi.staging.yaml", "theirs.yaml", "Pulumi.staging.yaml"]),
]
INCLUDED_COMMANDS = [
    c for c in STACK_COMMANDS if c[0] in ("export", "doctor", "stack new --from", "seal --stack", "verify")
]
CASES = (
    [("stack file", name, argv) for name, argv in STACK_COMMANDS]
    + [("included file", name, argv) for name, argv in INCLUDED_COMMANDS]
    + [
        ("stdin", "seal", ["seal", "--cert", "certs/staging.pem"]),
        ("stdin", "backup", ["backup", "--out", "k.ksbackup"]),
        ("path", "scan", ["scan", "hostile.yaml"]),
        ("path", "adopt", ["adopt", "hostile.yaml", "--stack", "staging", "--keep"]),
    ]
)


@pytest.mark.parametrize("kind", ["bomb", "deep"])
@pytest.mark.parametrize(("where", "name", "argv"), CASES, ids=[f"{w}-{n}" for w, n, _ in CASES])
def test_every_yaml_reader_refuses_hostile_files_quickly(tmp_path, kind, where, name, argv):
    repo = _repo(tmp_path)
    stdin = None
    shown = "Pulumi.staging.yaml"
    if where == "stack file":
        (repo / "Pulumi.staging.yaml").write_text(hostile_stack(kind))
    elif where == "included file":
        text = (repo / "Pulumi.staging.yaml").read_text()
        (repo / "Pulumi.staging.yaml").write_text(
            text[: text.index("  k8s-secrets:sealed:")] + "  k8s-secrets:sealed: stacks/staging/sealed.yaml\n"
        )
        (repo / "stacks" / "staging").mkdir(parents=True)
        (repo / "stacks" / "staging" / "sealed.yaml").write_text(bomb("") if kind == "bomb" else f"- {deep()}\n")
        shown = "sealed.yaml"
    elif where == "stdin":
        stdin = hostile_secret(kind)
        shown = "stdin"
    else:
        (repo / "hostile.yaml").write_text(hostile_list(kind))
        shown = "hostile.yaml"
    if name == "git merge":
        shutil.copy2(ROOT / "Pulumi.staging.yaml", repo / "base.yaml")
        (repo / "theirs.yaml").write_text((ROOT / "Pulumi.staging.yaml").read_text() + "# theirs\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KSECRETS_", "VAULT_", "SEALED_SECRETS_"))}
    env.update(KSECRETS_BACKUP_PASSPHRASE="correct horse battery staple", VAULT_ADDR="http://127.0.0.1:9")
    start = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "ksecrets", *argv],
        cwd=repo,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    took = time.monotonic() - start
    assert took < 10, f"{name}: {took:.1f}s"
    if name == "git textconv":  # a diff filter never fails a diff: the text as it is, not expanded
        assert res.returncode == 0 and res.stdout == (repo / "Pulumi.staging.yaml").read_text()
        return
    if name == "git merge":  # git's contract: 1 is a conflict; the text merged with markers
        assert res.returncode == 1 and res.stderr.count("\n") == 1 and "not a readable stack file" in res.stderr
        return
    assert res.returncode == 2, (res.returncode, res.stdout[-500:], res.stderr[-500:])
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ksecrets: "), res.stderr[-800:]
    assert shown in lines[0] and ("alias" in lines[0] or "nested more than" in lines[0]), lines[0]
