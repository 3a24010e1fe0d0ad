"""Issue 18: a pasted token on a line of its own (`dGhpcy...NTY3=`, the '=' being base64 padding) is
a valid env-file line to kubectl: the token becomes a key name, stored in the clear. Every command
that reads env files (seal --stack, vault push, adopt, scan) refuses a key name that looks like a
credential, without showing it, unless the user names it with `--allow-key-name`.
"""

from __future__ import annotations

import base64
import json
import random
import re
from pathlib import Path

import pytest

from ksecrets.envfile import key_name_problem, parse_env_file
from ksecrets.errors import KsecretsError
from tests.cli.test_adopt import repo as repo  # noqa: F401 (fixture)
from tests.cli.test_adopt import run

from .conftest import ROOT, clean_env, err_line, ksecrets

TOKEN_LINE = "dGhpcyBpcyBhIHZlcnkgc2VjcmV0IHRva2VuIDEyMzQ1Njc4OQ=="  # base64 of a 38-byte secret
TOKEN = TOKEN_LINE.split("=", 1)[0]
ENV = f"API_KEY=abc-123\n{TOKEN_LINE}\nDATABASE_URL=postgres://db/app\n"

# Names a team writes: this repository's, kubectl's conventions, and long identifiers.
NAMES = [
    "API_KEY",
    "DATABASE_URL",
    "tls.crt",
    "tls.key",
    "ca.crt",
    "ssh-privatekey",
    ".dockerconfigjson",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "postgresPassword",
    "OAUTH2_CLIENT_SECRET",
    "S3_BUCKET_NAME",
    "JWT_SIGNING_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "NEXT_PUBLIC_API_BASE_URL",
    "K8S_SECRETS_VERSION_V2",
    "SPRING_DATASOURCE_HIKARI_MAXIMUM_POOL_SIZE",
    "someVeryLongCamelCaseConfigName",
    "SENTRY_DSN",
    "SMTP_PASSWORD",
    "REDIS_URL",
    "SHA256_CHECKSUM",
]


def repository_key_names() -> set[str]:
    """Every key name the repository's stack files and README use."""
    names = set()
    for path in [*ROOT.glob("Pulumi.*.yaml"), ROOT / "README.md"]:
        names |= set(re.findall(r"\b([A-Z][A-Z0-9_]{2,})=", path.read_text()))
        names |= set(re.findall(r"^\s+([A-Za-z_][A-Za-z0-9_.-]*): (?:hmac-sha256:|Ag)", path.read_text(), re.M))
    return names


@pytest.mark.parametrize("value", [b"x", b""])
def test_names_people_write_are_accepted(value):
    names = NAMES + sorted(repository_key_names())
    assert len(names) > len(NAMES)
    refused = {n: key_name_problem(n, value) for n in names if key_name_problem(n, value)}
    assert refused == {}


def test_pasted_tokens_are_refused():
    """2000 tokens as a password manager or `openssl rand` prints them (16 to 48 random bytes,
    base64, hex, URL-safe), each pasted on a line of its own: every one is refused."""
    rng = random.Random(18)
    missed = []
    for i in range(2000):
        raw = rng.randbytes(rng.randint(16, 48))
        text = [
            base64.b64encode(raw).decode().replace("+", "").replace("/", ""),
            raw.hex(),
            base64.urlsafe_b64encode(raw).decode(),
        ][i % 3]
        if "=" not in text:
            text += "="  # a token whose padding was cut: still a bare key with an empty value
        line = text.encode() + b"\n"
        try:
            parse_env_file(line, ".env")
        except KsecretsError as exc:
            assert text.split("=")[0] not in str(exc)
            continue
        missed.append(text)
    assert missed == []


def test_the_refusal_names_file_and_line_never_the_token(tmp_path):
    with pytest.raises(KsecretsError) as exc:
        parse_env_file(ENV.encode(), ".env")
    assert str(exc.value) == (
        ".env: line 2: the key name looks like a credential (a part of 50 varied characters (no word is that long; "
        "a token is)); key names are stored in the clear, so it is not shown or used: fix the line (KEY=VALUE), "
        "or pass --allow-key-name with the exact name if it really is one"
    )
    assert parse_env_file(ENV.encode(), ".env", allow_key_names={TOKEN})[TOKEN] == b"="


STACK = """\
config:
  k8s-secrets:backend: sealed-secrets
  k8s-secrets:sealedSecrets:
    chartVersion: 2.18.5
    certificate: certs/staging.pem
  k8s-secrets:apps:
    - name: my-app
      namespace: my-app
"""


@pytest.fixture
def stack(tmp_path, vectors) -> Path:
    (tmp_path / "Pulumi.staging.yaml").write_text(STACK)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "staging.pem").write_text(vectors["certificate_pem"])
    (tmp_path / ".env").write_text(ENV)
    return tmp_path


def test_seal_refuses_then_accepts_what_the_user_names(stack):
    base = ["seal", "--stack", "staging", "--name", "my-app-secrets"]
    before = (stack / "Pulumi.staging.yaml").read_bytes()
    out = ksecrets(*base, "--from-env-file", ".env", cwd=stack, env=clean_env())
    assert out.returncode == 2
    assert err_line(out).startswith("ksecrets: .env: line 2: the key name looks like a credential")
    assert TOKEN not in out.stderr.decode() and (stack / "Pulumi.staging.yaml").read_bytes() == before
    # --from-literal and --from-file KEY=PATH too.
    out = ksecrets(*base, "--from-literal", f"{TOKEN}=", cwd=stack, env=clean_env())
    assert out.returncode == 2 and TOKEN not in out.stderr.decode()
    out = ksecrets(*base, "--from-file", f"{TOKEN}=.env", cwd=stack, env=clean_env())
    assert out.returncode == 2 and TOKEN not in out.stderr.decode()
    assert (stack / "Pulumi.staging.yaml").read_bytes() == before
    out = ksecrets(*base, "--from-env-file", ".env", "--allow-key-name", TOKEN, cwd=stack, env=clean_env())
    assert out.returncode == 0, out.stderr
    assert TOKEN in (stack / "Pulumi.staging.yaml").read_text()  # what the user asked for


def test_scan_refuses_the_env_file_unless_told(stack):
    out = ksecrets("scan", "--env-file", ".env", "--root", str(stack), str(stack / "certs"), cwd=stack)
    assert out.returncode == 2 and TOKEN not in out.stderr.decode() + out.stdout.decode()
    assert "line 2: the key name looks like a credential" in err_line(out)
    out = ksecrets(
        "scan", "--env-file", ".env", "--allow-key-name", TOKEN, "--root", str(stack), str(stack / "certs"), cwd=stack
    )
    assert out.returncode == 0, out.stderr


def test_vault_push_refuses_before_any_request(tmp_path):
    from ksecrets.config import load_stack_file
    from ksecrets.usecases.vault_push import push_env_file

    (tmp_path / "Pulumi.prod.yaml").write_text((ROOT / "tests" / "fixtures" / "full-vault-stack.yaml").read_text())
    cfg = load_stack_file(tmp_path / "Pulumi.prod.yaml")
    (tmp_path / ".env").write_text(ENV)
    with pytest.raises(KsecretsError, match=r"\.env: line 2: the key name looks like a credential") as exc:
        push_env_file(None, cfg, path="shop", env_file=tmp_path / ".env")  # type: ignore[arg-type]
    assert TOKEN not in str(exc.value)


def test_adopt_refuses_and_deletes_nothing(repo):  # noqa: F811 (the fixture)
    (repo / ".env.qa").write_text(ENV)
    res = run(repo, "ksecrets", "adopt", ".env.qa", "--stack", "qa", "--name", "my-app-secrets", check=False)
    assert res.returncode == 2, res.stderr
    assert "line 2: the key name looks like a credential" in res.stderr and TOKEN not in res.stderr + res.stdout
    assert (repo / ".env.qa").read_text() == ENV
    assert "sealed" not in json.dumps(res.stdout)
    res = run(
        repo, "ksecrets", "adopt", ".env.qa", "--stack", "qa", "--name", "my-app-secrets", "--allow-key-name", TOKEN
    )
    assert not (repo / ".env.qa").exists()
