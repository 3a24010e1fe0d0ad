"""Hostile or unusual input: one line on stderr, exit 2, nothing written, never a traceback.

Each case runs the real command line (`python -m ksecrets`) as a user would.
"""

from __future__ import annotations

import base64
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ksecrets.config import load_stack

from .conftest import ROOT, clean_env, ksecrets

SECRET_YAML = "apiVersion: v1\nkind: Secret\nmetadata: {name: app, namespace: ns}\nstringData: {A: hunter2-canary}\n"


def one_line(out: subprocess.CompletedProcess, code: int = 2) -> str:
    err = out.stderr.decode() if isinstance(out.stderr, bytes) else out.stderr
    assert out.returncode == code, err
    assert err.count("\n") == 1 and err.startswith("ksecrets: ") and "Traceback" not in err, err
    return err.rstrip("\n")


@pytest.fixture
def repo(tmp_path) -> Path:
    dest = tmp_path / "repo"
    dest.mkdir()
    for p in ROOT.glob("Pulumi*.yaml"):
        shutil.copy2(p, dest / p.name)
    shutil.copytree(ROOT / "certs", dest / "certs")
    return dest


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- tracebacks that were ---------------------------------------------------------------------------


def test_a_complex_yaml_key_on_stdin(cert_file):
    out = ksecrets(
        "seal",
        "--cert",
        str(cert_file),
        input="apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData:\n  ? [a, b]\n  : x\n",
    )
    assert one_line(out) == (
        "ksecrets: stdin: line 5: invalid YAML: a mapping key must be a plain value, not a list or a mapping"
    )
    assert out.stdout == b""


def test_a_complex_yaml_key_in_a_stack_file(repo):
    path = repo / "Pulumi.staging.yaml"
    path.write_text(path.read_text().replace("config:\n", "config:\n  ? [a, b]\n  : x\n", 1))
    before = _tree(repo)
    for args in (
        ["export", "--stack", "staging"],
        ["seal", "--stack", "staging", "--name", "my-app-secrets", "--from-literal", "A=b"],
    ):
        out = ksecrets(*args, cwd=repo)
        assert one_line(out).startswith(
            "ksecrets: Pulumi.staging.yaml: line 5: invalid YAML: a mapping key must be a plain value"
        ), args
    assert _tree(repo) == before


@pytest.mark.parametrize(
    "doc",
    [
        "[" * 100_000 + "]" * 100_000,  # JSON: Python's json recursed until RecursionError
        "a: " + "[" * 100_000 + "]" * 100_000,  # YAML: libyaml's composer crashed the process
        "- " * 5000 + "x",  # YAML block sequences, one line
        '{"a":' * 150 + "1" + "}" * 150,  # just over the limit, still JSON
    ],
)
def test_deep_nesting_on_stdin(cert_file, doc):
    out = ksecrets("seal", "--cert", str(cert_file), input=doc)
    assert "nested" in one_line(out) and "levels deep" in one_line(out)


def test_deep_nesting_in_a_stack_file(repo):
    path = repo / "Pulumi.staging.yaml"
    path.write_text(path.read_text() + "  k8s-secrets:x: " + "[" * 50_000 + "]" * 50_000 + "\n")
    out = ksecrets("export", "--stack", "staging", cwd=repo)
    assert one_line(out).startswith("ksecrets: Pulumi.staging.yaml: line ")


@pytest.mark.parametrize("bits", [512, 1024, 2047])
def test_rsa_keys_under_2048_bits_are_refused(tmp_path, bits):
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            f"rsa:{bits}",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "10",
            "-subj",
            "/CN=test",
        ],
        check=True,
        capture_output=True,
    )
    out = ksecrets("seal", "--cert", str(cert), input=SECRET_YAML)
    assert one_line(out) == (
        f"ksecrets: {cert}: RSA key of {bits} bits; at least 2048 are required (the controller makes 4096)"
    )
    assert out.stdout == b""


def test_a_valid_name_too_long_for_a_file_name_exports(repo):
    """A Secret name may have 253 characters; `sealedsecret-<name>.yaml` would not fit in 255 bytes."""
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(name) == 253
    env = clean_env()
    sealed = ksecrets(
        "seal",
        "--stack",
        "staging",
        "--name",
        name,
        "--namespace",
        "my-app",
        "--from-literal",
        "A=canary-value",
        cwd=repo,
        env=env,
    )
    assert sealed.returncode == 0, sealed.stderr
    out = ksecrets("export", "--stack", "staging", cwd=repo, env=env)
    assert out.returncode == 0, out.stderr
    files = [p for p in (repo / "k8s/staging/apps").iterdir() if p.name.startswith("sealedsecret-aaa")]
    assert len(files) == 1 and len(files[0].name.encode()) <= 200
    assert name in files[0].read_text()
    assert files[0].name in (repo / "k8s/staging/apps/kustomization.yaml").read_text()
    check = ksecrets("export", "--stack", "staging", "--check", cwd=repo, env=env)
    assert check.returncode == 0, check.stdout


def _limit_memory() -> None:  # so a pre-fix run fails with MemoryError instead of eating the machine
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def test_a_backup_header_that_asks_scrypt_for_gigabytes(tmp_path):
    header = b"KSBK" + bytes([1, 22, 32, 1]) + os.urandom(16) + os.urandom(12)  # 16 GiB of scrypt memory
    b64 = base64.b64encode(header + os.urandom(64)).decode()
    backup = tmp_path / "forged.ksbackup"
    backup.write_text(
        "-----BEGIN KSECRETS SEALING KEY BACKUP-----\n" + b64 + "\n-----END KSECRETS SEALING KEY BACKUP-----\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "ksecrets", "restore", "--backup", str(backup)],
        capture_output=True,
        env=clean_env(KSECRETS_BACKUP_PASSPHRASE="correct horse battery"),
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert one_line(out) == (
        f"ksecrets: {backup}: backup asks scrypt for 16384 MiB x 1; the limit is 1024 MiB x 4 "
        "(damaged or forged header)"
    )
    assert out.stdout == b""


# --- names and namespaces ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "meta, args, message",
    [
        ("{name: App_Secrets, namespace: ns}", [], 'metadata.name: "App_Secrets" is not a valid Kubernetes name'),
        ("{name: app, namespace: My.NS}", [], 'metadata.namespace: "My.NS" is not a valid Kubernetes name'),
        ("{name: app, namespace: ns}", ["--name", "UPPER"], 'metadata.name: "UPPER" is not a valid Kubernetes name'),
        (
            "{name: app}",
            ["--namespace", "a_b"],
            'metadata.namespace: "a_b" is not a valid Kubernetes name',
        ),
    ],
)
def test_names_kubernetes_refuses_are_refused_at_seal_time(cert_file, meta, args, message):
    out = ksecrets(
        "seal",
        "--cert",
        str(cert_file),
        *args,
        input=f"apiVersion: v1\nkind: Secret\nmetadata: {meta}\nstringData: {{A: x}}\n",
    )
    assert one_line(out).startswith(f"ksecrets: stdin: {message}")
    assert out.stdout == b""


def test_raw_names_are_checked(cert_file, tmp_path):
    value = tmp_path / "v"
    value.write_text("x")
    out = ksecrets(
        "seal", "--raw", "--cert", str(cert_file), "--name", "Bad_Name", "--namespace", "ns", "--from-file", str(value)
    )
    assert one_line(out).startswith('ksecrets: --raw: metadata.name: "Bad_Name" is not a valid Kubernetes name')


# --- the README's first example: kubectl's Secret has no namespace -----------------------------------

KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")
@pytest.mark.parametrize("context_namespace", [None, "team-a"])
def test_readme_first_example_takes_the_kubectl_namespace(tmp_path, cert_file, vector_key, context_namespace):
    from ksecrets.sealing.sealedsecret import unseal
    import yaml

    env = clean_env(HOME=str(tmp_path))
    env.pop("KUBECONFIG", None)
    if context_namespace:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
            f"contexts:\n- name: dev\n  context: {{cluster: c, user: u, namespace: {context_namespace}}}\n"
            "clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: x}\n"
        )
        env["KUBECONFIG"] = str(kubeconfig)
    (tmp_path / ".env.production").write_text("API_KEY=readme-canary\n")
    secret = subprocess.run(
        [
            KUBECTL,
            "create",
            "secret",
            "generic",
            "app-secrets",
            "--from-env-file=.env.production",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=True,
    ).stdout
    assert b"namespace" not in secret
    out = ksecrets("seal", "--cert", str(cert_file), "--format", "yaml", input=secret, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    ns = context_namespace or "default"
    why = (
        f"the namespace of kubectl context 'dev' ({tmp_path / 'kubeconfig'})"
        if context_namespace
        else "no kubectl context"
    )
    assert out.stderr.decode() == (
        f"ksecrets: stdin: no metadata.namespace; sealing for namespace '{ns}' ({why}), "
        "as kubeseal does; pass --namespace to choose\n"
    )
    sealed = yaml.safe_load(out.stdout)
    assert sealed["metadata"]["namespace"] == ns
    assert base64.b64decode(unseal(sealed, [vector_key], "t")["data"]["API_KEY"]) == b"readme-canary"


# --- env files: a line without '=' ------------------------------------------------------------------


def test_an_env_line_without_equals_is_refused_without_its_text(repo, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("API_KEY=abc\nhunter2CanaryPastedValue\nDATABASE_URL=x\n")
    before = _tree(repo)
    out = ksecrets("seal", "--stack", "staging", "--name", "my-app-secrets", "--from-env-file", str(env_file), cwd=repo)
    line = one_line(out)
    assert line == (
        f"ksecrets: {env_file}: line 2: no '=' (kubectl would make the line's text a key and read its "
        "value from the environment); write KEY=VALUE"
    )
    assert b"hunter2CanaryPastedValue" not in out.stderr + out.stdout
    assert _tree(repo) == before
    assert not load_stack("staging", repo).sealed or all(
        "hunter2CanaryPastedValue" not in e.keys for e in load_stack("staging", repo).sealed
    )
