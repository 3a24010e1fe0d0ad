"""`ksecrets init`: the guide's decision matrix as a table, scripted and interactive runs in fresh git
repositories followed by the project's own checks there, never an overwrite, nothing written on bad
answers or an interruption."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ksecrets.usecases import choose
from ksecrets.usecases.choose import Answers
from tests.conftest import ksecrets_in_process

ROOT = Path(__file__).resolve().parents[2]
AGE = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"  # age's own example recipient
PASSPHRASE = "init test passphrase"

# --- the matrix, one row per rule (and the rows that show which rule wins) --------------------------

A = Answers()
MATRIX = [
    # (answers, production?, backend, the rule that decides)
    (Answers(dynamic_secrets=True), True, "vault", "dynamic secrets"),
    (Answers(compliance="pci-dss"), True, "vault", "compliance"),
    (Answers(audit="access-log"), True, "vault", "audit"),
    (Answers(rotation="automated"), True, "vault", "rotation"),
    (Answers(security="high", team_size="large"), True, "vault", "security and team size"),
    (Answers(current="vault"), False, "vault", "Vault today"),
    (Answers(gitops="none"), False, "manual", "no GitOps"),
    (Answers(current="sops"), False, "sops", "SOPS today"),
    (A, False, "sealed-secrets", "GitOps"),
    (A, True, "sealed-secrets", "GitOps"),
    # production-only requirements leave the other environments on the GitOps backend
    (
        Answers(dynamic_secrets=True, compliance="hipaa", audit="access-log", rotation="automated"),
        False,
        "sealed-secrets",
        "GitOps",
    ),
    (Answers(compliance="soc2", current="sops"), False, "sops", "SOPS today"),
    (Answers(security="high", team_size="medium"), True, "sealed-secrets", "GitOps"),
    # the first rule that applies wins
    (Answers(dynamic_secrets=True, compliance="soc2"), True, "vault", "dynamic secrets"),
    (Answers(compliance="soc2", gitops="none"), True, "vault", "compliance"),
    (Answers(gitops="none", current="sops"), False, "manual", "no GitOps"),
]


@pytest.mark.parametrize("answers,production,backend,rule", MATRIX)
def test_the_matrix(answers, production, backend, rule):
    c = choose.choose(answers, "env", production)
    assert (c.backend, c.rule) == (backend, rule)
    assert c.why == next(r.why for r in choose.RULES if r.name == rule)


def test_every_rule_has_a_row_and_chooses_a_registered_backend():
    from ksecrets import backends

    assert {row[3] for row in MATRIX} == {r.name for r in choose.RULES}
    assert all(backends.find(r.backend) is not None for r in choose.RULES)
    assert choose.RULES[-1].applies(A, False) and choose.RULES[-1].applies(A, True)


# --- scripted runs in fresh repositories ----------------------------------------------------------


def flags(**answers: str) -> list[str]:
    base = {
        "environments": "dev,staging,production",
        "production": "production",
        "cluster": "managed",
        "ci": "github",
        "secrets": "app-config,database",
        "compliance": "none",
        "current": "plaintext",
        "team-size": "small",
        "security": "standard",
        "gitops": "flux",
        "rotation": "manual",
        "audit": "git",
        "dynamic-secrets": "no",
    } | {k.replace("_", "-"): v for k, v in answers.items()}
    return [f"--{k}={v}" for k, v in base.items() if v is not None]


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "repo"
    r.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(r)], check=True)
    return r


@pytest.fixture
def safe(tmp_path):
    s = tmp_path / "safe"
    s.mkdir()
    return s


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("KSECRETS_")}
    return e | {"KSECRETS_BACKUP_PASSPHRASE": PASSPHRASE, "KSECRETS_BACKUP_SCRYPT_LOG2N": "14"} | extra


def init(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return ksecrets_in_process("init", "--non-interactive", "--root", str(repo), *args, env=env())


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts[:1]
    }


def project_checks(repo: Path) -> None:
    """What `make render` runs (`ksecrets export`), then CI's guardrails (the workflow's commands)."""
    from ksecrets.usecases.init import CI_CHECKS

    res = ksecrets_in_process("export", "--root", str(repo), env=env())
    assert res.returncode == 0, res.stderr
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    for _, command in CI_CHECKS:
        argv = command.split()[1:]
        res = ksecrets_in_process(*argv, *([] if argv[0] == "scan" else ["--root", str(repo)]), cwd=repo, env=env())
        assert res.returncode == 0, (command, res.stdout, res.stderr)


ANSWER_SETS = {
    "sealed, small team": ({}, {"dev": "sealed-secrets", "staging": "sealed-secrets", "production": "sealed-secrets"}),
    "sops today, soc2": (
        {"current": "sops", "compliance": "soc2"},
        {"dev": "sops", "staging": "sops", "production": "vault"},
    ),
    "no GitOps": ({"gitops": "none", "environments": "dev,production"}, {"dev": "manual", "production": "manual"}),
}


@pytest.mark.parametrize("name", ANSWER_SETS)
def test_scripted_init_then_the_project_checks_pass(repo, safe, name):
    answers, expected = ANSWER_SETS[name]
    extra = [f"--age-recipient={e}={AGE}" for e, b in expected.items() if b == "sops"]
    res = init(repo, *flags(**answers), f"--backup-dir={safe}", *extra)
    assert res.returncode == 0, res.stderr
    for e, backend in expected.items():
        assert f"  {e}: {backend} (" in res.stdout
        text = (repo / f"Pulumi.{e}.yaml").read_text()
        config = yaml.safe_load(text)["config"]
        assert config["k8s-secrets:backend"] == backend
        assert config["ci:upOrder"] == list(expected).index(e) + 1  # CI's up job: in the given order
        assert f"# ksecrets init chose {backend} by the guide's matrix" in text
        sealed = backend == "sealed-secrets"
        assert (repo / f"certs/{e}.pem").is_file() == sealed
        assert (safe / f"{e}.ksbackup").is_file() == sealed
    sops = [e for e, b in expected.items() if b == "sops"]
    assert (repo / ".sops.yaml").exists() == bool(sops)
    if sops:
        rules = yaml.safe_load((repo / ".sops.yaml").read_text())["creation_rules"]
        assert [(r["path_regex"], r["age"]) for r in rules] == [(f"^secrets/{e}/.*\\.sops\\.yaml$", AGE) for e in sops]
    from ksecrets.usecases.init import GITIGNORE

    assert set(GITIGNORE) <= set((repo / ".gitignore").read_text().splitlines())
    assert (repo / ".github/workflows/ksecrets.yml").is_file()
    project_checks(repo)


def test_the_sops_rules_are_what_sops_set_encrypts_with(repo):
    """`.sops.yaml` names the folder and the rule of the files `ksecrets sops set` writes."""
    from ksecrets.backends.sops import secret_file
    from ksecrets.usecases.init import sops_config
    import re

    rule = yaml.safe_load(sops_config({"dev": (AGE,)}))["creation_rules"][0]
    assert re.search(rule["path_regex"], secret_file("dev", "web-secrets"))
    assert not re.search(rule["path_regex"], secret_file("dev2", "web-secrets"))
    from ksecrets.sopsrules import SECRET_ENCRYPTED_REGEX

    assert rule["encrypted_regex"] == SECRET_ENCRYPTED_REGEX


@pytest.mark.oracle
def test_the_workflow_passes_actionlint_and_runs_the_projects_guardrails(repo):
    from ksecrets.usecases.init import CI_CHECKS, workflow

    path = repo / "ksecrets.yml"
    path.write_text(workflow("ksecrets==1.0"))
    lint = shutil.which("actionlint") or str(ROOT / ".tools/bin/actionlint")
    res = subprocess.run([lint, str(path)], capture_output=True, text=True)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    project_ci = (ROOT / ".github/workflows/ci.yml").read_text()
    for _, command in CI_CHECKS:  # the same guardrails as the project's own CI
        assert f"run: .venv/bin/{command}\n" in project_ci, command
        assert f"run: {command}\n" in path.read_text()


def test_the_projects_gitignore_has_every_line_init_adds():
    from ksecrets.usecases.init import GITIGNORE

    assert set(GITIGNORE) <= set((ROOT / ".gitignore").read_text().splitlines())


# --- an existing project: never an overwrite -----------------------------------------------------


def test_init_twice_overwrites_nothing(repo, safe, tmp_path):
    first = init(repo, *flags(), f"--backup-dir={safe}")
    assert first.returncode == 0, first.stderr
    stack = repo / "Pulumi.dev.yaml"
    stack.write_text(stack.read_text() + "# the user's own line\n")
    (repo / ".gitignore").write_text((repo / ".gitignore").read_text() + "mine/\n")
    before = tree(repo)
    safe2 = tmp_path / "safe2"
    safe2.mkdir()
    again = init(repo, *flags(environments="dev,staging,production,qa"), f"--backup-dir={safe2}")
    assert again.returncode == 0, again.stderr
    after = tree(repo)
    assert {k: v for k, v in after.items() if k in before} == before  # every file byte for byte
    assert sorted(set(after) - set(before)) == ["Pulumi.qa.yaml", "certs/qa.pem"]
    for e in ("dev", "staging", "production"):
        assert f"note: Pulumi.{e}.yaml: exists, kept as it is" in again.stdout
    assert sorted(p.name for p in safe2.iterdir()) == ["qa.ksbackup"]


def test_in_the_projects_own_checkout_it_adds_the_new_environment_only(tmp_path, safe):
    """The template: staging and production exist, ci.yml previews every stack file."""
    copy = tmp_path / "copy"
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    before = tree(copy)
    res = init(copy, *flags(), f"--backup-dir={safe}")
    assert res.returncode == 0, res.stderr
    after = tree(copy)
    assert sorted(set(after) - set(before)) == ["Pulumi.dev.yaml", "certs/dev.pem"]
    assert {k: v for k, v in after.items() if k in before} == before
    assert "note: .github/workflows/ci.yml: exists, kept" in res.stdout
    # the matrix would choose sealed-secrets for production; its file says vault and stays
    assert "  production: sealed-secrets (GitOps)" in res.stdout
    assert "    kept: Pulumi.production.yaml exists (vault); init does not change it" in res.stdout
    subprocess.run(["git", "init", "-q", "-b", "main", str(copy)], check=True)
    project_checks(copy)


# --- bad answers: one line, exit 2, nothing written ----------------------------------------------

BAD = {
    "missing flag": (["--team-size"], "ksecrets: --team-size: missing"),
    "not a choice": (["--team-size=huge"], "ksecrets: --team-size 'huge': not one of small, medium, large"),
    "production not an environment": (["--production=prod"], "ksecrets: --production: prod is not one of"),
    "bad stack name": (["--environments=Dev_1"], "ksecrets: 'Dev_1': a stack name is"),
    "twice": (["--environments=dev,dev"], "ksecrets: --environments: dev is named twice"),
    "no backup dir": (["--backup-dir"], "ksecrets: --backup-dir DIR: missing; environment dev gets backend"),
    "backup inside": (["--backup-dir=INSIDE"], "inside the repository; keep key backups out of Git"),
    "sops without recipient": (["--current=sops"], "ksecrets: --age-recipient dev=AGE1...: missing"),
    "bad recipient": (["--current=sops", "--age-recipient=dev=age1nope"], "is not an age X25519 recipient"),
    "recipient for a sealed stack": ([f"--age-recipient=dev={AGE}"], "which encrypts no SOPS files"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_answers_are_one_line_and_write_nothing(repo, safe, case):
    changes, message = BAD[case]
    args = flags() + [f"--backup-dir={safe}"]
    for change in changes:
        key = change.split("=", 1)[0]
        args = [a for a in args if not a.startswith(key + "=")]
        if "=" in change:
            args.append(change.replace("INSIDE", str(repo)))
    if case == "sops without recipient" or case == "bad recipient":
        args = [a for a in args if not a.startswith("--current=")] + ["--current=sops"]
    res = init(repo, *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
    assert tree(repo) == {} and list(safe.iterdir()) == []


def test_an_interruption_half_way_leaves_nothing(repo, safe, monkeypatch):
    """Ctrl-C while the second stack is written: the first stack, the certificates, the backups and
    the folders init made are gone; an existing .gitignore has its bytes back."""
    from ksecrets.usecases import stack_new as stacks

    (repo / ".gitignore").write_text("mine/\n")
    real = stacks.stack_new
    calls = []

    def interrupted(*a, **k):
        calls.append(a)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(stacks, "stack_new", interrupted)
    res = init(repo, *flags(), f"--backup-dir={safe}")
    assert res.returncode == 130
    assert len(calls) == 2
    assert tree(repo) == {".gitignore": b"mine/\n"}
    assert not (repo / "certs").exists() and list(safe.iterdir()) == []


# --- plaintext: the adopt command it prints works --------------------------------------------------


def test_plaintext_found_gets_the_exact_adopt_command(repo, safe):
    (repo / ".env.dev").write_text("API_KEY=dev-api-0123456789\n")
    res = init(repo, *flags(), f"--backup-dir={safe}")
    assert res.returncode == 0, res.stderr
    line = next(l for l in res.stdout.splitlines() if l.startswith("plaintext: .env.dev"))
    command = line.split("take it in with: ", 1)[1]
    assert (
        command == "ksecrets app add --stack dev --name APP && ksecrets adopt .env.dev --stack dev --name APP-secrets"
    )
    res = subprocess.run(
        ["bash", "-euc", command.replace("APP", "my-app")],
        cwd=repo,
        env=env(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"),
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert not (repo / ".env.dev").exists()
    assert "my-app-secrets" in (repo / "Pulumi.dev.yaml").read_text()
    project_checks(repo)  # the stack renders with the adopted Secret


# --- interactive, through a real terminal ---------------------------------------------------------


def test_interactive_init_through_a_pty(repo, safe):
    """Every question on a terminal (python's pty): the answers (a wrong one asked again), the one
    the choices need (the folder for dev's sealing key), the confirmation, then the adopt of the
    plaintext it found, run on confirmation."""
    (repo / ".env.dev").write_text("API_KEY=dev-api-0123456789\n")
    answers = {
        "Your environments": "dev,production",
        "Which of them are production": "production",
        "Where do the clusters run": "local",
        "Your CI": "none",
        "The kinds of secrets": "api-keys",
        "Compliance requirements": "hipaa",
        "Secrets management in use today": "plaintext",
        "Team size": "wrong",  # asked again
        "Security requirements": "high",
        "GitOps": "flux",
        "Secret rotation": "manual",
        "Audit": "git",
        "Dynamic secrets": "no",
        "Where the sealing keys' encrypted backups go": str(safe),
        "Write the files?": "y",
        "Run it now?": "y",
        "The app's name": "my-app",
    }
    pid, fd = pty.fork()
    if pid == 0:  # the child: ksecrets on the terminal
        os.chdir(repo)
        os.execve(sys.executable, [sys.executable, "-m", "ksecrets", "init"], env(COLUMNS="200"))
    out = b""
    asked: list[str] = []
    team_asked = 0
    deadline = time.monotonic() + 120
    status = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            last = out.decode(errors="replace").rsplit("\n", 1)[-1]
            if not last.endswith(": "):  # a prompt waits after ": "
                continue
            prompt = next((p for p in answers if last.lstrip().startswith(p)), None)
            assert prompt is not None, last
            asked.append(prompt)
            reply = answers[prompt]
            if prompt == "Team size":
                team_asked += 1
                reply = "wrong" if team_asked == 1 else "large"
            os.write(fd, reply.encode() + b"\n")
            out += b"\n"
        _, status = os.waitpid(pid, 0)
    finally:
        if status is None:  # stopped by its PID, even when the test failed half-way
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert team_asked == 2 and "--team-size 'wrong': not one of small, medium, large" in text
    assert "dev: sealed-secrets (GitOps)" in text and "production: vault (compliance)" in text
    assert set(asked) == set(answers)
    assert (repo / "certs/dev.pem").is_file() and (safe / "dev.ksbackup").is_file()
    assert not (repo / ".github").exists()  # CI: none
    assert not (repo / ".env.dev").exists()  # adopted: sealed into the stack, the file removed
    sealed = yaml.safe_load((repo / "Pulumi.dev.yaml").read_text())["config"]["k8s-secrets:sealed"]
    assert [(e["name"], e["namespace"], sorted(e["encryptedData"])) for e in sealed] == [
        ("my-app-secrets", "my-app", ["API_KEY"])
    ]
    project_checks(repo)


def test_the_gitignore_it_writes_ignores_plaintext_and_keys_and_keeps_templates(repo, safe):
    (repo / ".gitignore").write_text("build/")  # the user's, without a final newline
    res = init(repo, *flags(environments="dev", production="dev"), f"--backup-dir={safe}")
    assert res.returncode == 0, res.stderr
    assert (repo / ".gitignore").read_text().startswith("build/\n\n# ksecrets init:")
    names = [".env", ".env.dev", "prod.env", "dev.agekey", "dev.ksbackup", ".env.example", "app.env.sample", "x.yaml"]
    out = subprocess.run(
        ["git", "-C", str(repo), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(names) + "\n",
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out == [".env", ".env.dev", "prod.env", "dev.agekey", "dev.ksbackup"]


def test_the_real_sops_encrypts_by_the_sops_yaml_it_writes_and_export_takes_the_file(repo):
    """`.sops.yaml` is real sops configuration: `sops encrypt` (v3, the e2e tool cache) picks the
    stack's rule by path and encrypts `data` for its recipient; `ksecrets export` takes the file;
    a path no rule names is refused by sops."""
    from ksecrets.sealing import sops
    from tests.e2e.harness import binaries, missing_binaries

    if missing_binaries(["sops"]):
        pytest.skip("the real sops is not built (make e2e-tools)")
    key = sops.generate_age_key()
    res = init(
        repo, *flags(current="sops", environments="dev", production="none"), f"--age-recipient=dev={key.recipient}"
    )
    assert res.returncode == 0, res.stderr
    assert ksecrets_in_process("app", "add", "--stack", "dev", "--name", "web", "--root", str(repo)).returncode == 0
    (repo / "dev.agekey").write_text(key.key_file())
    secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-secrets\n  namespace: web\ntype: Opaque\n"
    secret += "data:\n  PASSWORD: aHVudGVyMg==\n"
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(repo), "SOPS_DISABLE_VERSION_CHECK": "1"}
    for rel in ("secrets/dev/web-secrets.sops.yaml", "secrets/other/web-secrets.sops.yaml"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(secret)
    sops_bin = str(binaries()["sops"])
    enc = subprocess.run(
        [sops_bin, "encrypt", "--in-place", "secrets/dev/web-secrets.sops.yaml"],
        cwd=repo, env=run_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert enc.returncode == 0, enc.stderr[-500:]
    doc = yaml.safe_load((repo / "secrets/dev/web-secrets.sops.yaml").read_text())
    assert doc["data"]["PASSWORD"].startswith("ENC[AES256_GCM,") and doc["metadata"]["name"] == "web-secrets"
    assert doc["sops"]["encrypted_regex"] == "^(data|stringData)$"
    assert [a["recipient"] for a in doc["sops"]["age"]] == [key.recipient]
    other = subprocess.run(
        [sops_bin, "encrypt", "secrets/other/web-secrets.sops.yaml"],
        cwd=repo, env=run_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert other.returncode != 0 and "no matching creation rules" in other.stderr.lower()
    (repo / "secrets/other/web-secrets.sops.yaml").unlink()
    dec = subprocess.run(
        [sops_bin, "decrypt", "secrets/dev/web-secrets.sops.yaml"],
        cwd=repo, env=run_env | {"SOPS_AGE_KEY_FILE": str(repo / "dev.agekey")}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert dec.returncode == 0 and yaml.safe_load(dec.stdout)["data"] == {"PASSWORD": "aHVudGVyMg=="}
    (repo / "dev.agekey").unlink()
    project_checks(repo)
    assert (repo / "k8s/dev/apps/secret-web-secrets.sops.yaml").read_bytes() == (
        repo / "secrets/dev/web-secrets.sops.yaml"
    ).read_bytes()
