"""`ksecrets seal --stack`: into Pulumi.<stack>.yaml, comments kept, churn-free with KSECRETS_SEAL_KEY."""

from __future__ import annotations

import base64
import difflib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ksecrets.config import load_stack
from ksecrets.sealing import churn
from ksecrets.sealing.sealedsecret import build_sealed_secret, unseal

from tests.conftest import sealed_shape

from .conftest import ROOT, clean_env, err_line, ksecrets

SEAL_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # 32 bytes of key material, base64
VALUE = "p4ssw0rd-do-not-print"
STACK_FILE = """\
# Staging: Sealed Secrets. Values are sealed offline and safe in Git.
config:
  k8s-secrets:backend: sealed-secrets
  k8s-secrets:sealedSecrets:
    chartVersion: 2.18.5   # pinned
    certificate: certs/staging.pem
  k8s-secrets:apps:
    # the demo app
    - name: my-app
      namespace: my-app
      serviceAccount: my-app
      secretName: my-app-secrets
"""


@pytest.fixture
def stack(tmp_path, vectors) -> Path:
    (tmp_path / "Pulumi.staging.yaml").write_text(STACK_FILE)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "staging.pem").write_text(vectors["certificate_pem"])
    return tmp_path


def seal(stack: Path, *args: str, key: str | None = SEAL_KEY):
    env = clean_env(**({churn.ENV_VAR: key} if key else {}))
    return ksecrets("seal", "--stack", "staging", "--name", "my-app-secrets", *args, cwd=stack, env=env)


def entry(stack: Path):
    cfg = load_stack("staging", stack)
    (e,) = cfg.sealed
    return e


def test_seals_into_the_stack_keeping_comments(stack, vector_key, vector_cert, crd_schema):
    env = stack / ".env"
    env.write_text(f"DATABASE_URL=postgres://app:{VALUE}@db/app\nAPI_KEY=abc\n")
    out = seal(stack, "--from-env-file", ".env", key=None)
    assert out.returncode == 0, out.stderr
    assert out.stderr.decode().splitlines() == [
        f"Pulumi.staging.yaml: my-app/my-app-secrets (strict, {vector_cert.fingerprint}): added: API_KEY, DATABASE_URL"
    ]
    text = (stack / "Pulumi.staging.yaml").read_text()
    assert text.startswith(STACK_FILE)  # comments, order and layout untouched; the entry is appended
    assert VALUE not in text and VALUE.encode() not in out.stdout + out.stderr
    e = entry(stack)
    assert (e.namespace, e.scope, e.certificate_fingerprint) == ("my-app", "strict", vector_cert.fingerprint)
    assert e.digests == ()
    obj = build_sealed_secret(
        name=e.name,
        namespace=e.namespace,
        scope=e.scope,
        encrypted_data=dict(e.encrypted_data),
        fingerprint=e.certificate_fingerprint,
    )
    from jsonschema import Draft7Validator

    assert not list(Draft7Validator(crd_schema).iter_errors(obj))
    data = unseal(obj, [vector_key], "t")["data"]
    assert base64.b64decode(data["DATABASE_URL"]) == f"postgres://app:{VALUE}@db/app".encode()


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_stack_values_equal_kubectls(stack, vector_key):
    (stack / ".env").write_bytes(b'\xef\xbb\xbf# c\r\n  A="q" \r\nB=x=y\nexport_C=1\n\nD=\xc3\xbc\n')
    kube = subprocess.run(
        [
            "kubectl",
            "create",
            "secret",
            "generic",
            "my-app-secrets",
            "--from-env-file",
            ".env",
            "--dry-run=client",
            "-o",
            "json",
        ],
        cwd=stack,
        capture_output=True,
        check=True,
    )
    assert seal(stack, "--from-env-file", ".env").returncode == 0
    e = entry(stack)
    obj = build_sealed_secret(name=e.name, namespace=e.namespace, scope=e.scope, encrypted_data=dict(e.encrypted_data))
    assert unseal(obj, [vector_key], "t")["data"] == json.loads(kube.stdout)["data"]


def test_churn_free_only_changed_keys_move(stack, vector_cert):
    env = stack / ".env"
    env.write_text(f"A=one\nB={VALUE}\nC=three\n")
    assert seal(stack, "--from-env-file", ".env").returncode == 0
    first = (stack / "Pulumi.staging.yaml").read_text()
    assert len(entry(stack).digests) == 3

    again = seal(stack, "--from-env-file", ".env")
    assert again.returncode == 0
    assert (stack / "Pulumi.staging.yaml").read_text() == first  # byte-identical: no git diff
    assert again.stderr.decode().splitlines() == [
        f"Pulumi.staging.yaml: my-app/my-app-secrets (strict, {vector_cert.fingerprint}): unchanged: A, B, C (file unchanged)"
    ]

    env.write_text(f"A=one\nB={VALUE}-rotated\nC=three\n")
    changed = seal(stack, "--from-env-file", ".env")
    assert changed.stderr.decode().splitlines() == [
        f"Pulumi.staging.yaml: my-app/my-app-secrets (strict, {vector_cert.fingerprint}): changed: B; unchanged: A, C"
    ]
    diff = [
        line
        for line in difflib.unified_diff(
            first.splitlines(), (stack / "Pulumi.staging.yaml").read_text().splitlines(), n=0
        )
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    # B's ciphertext, its churn digest and its fleet digest (ksecrets drift): nothing else moves.
    assert len(diff) == 6 and all(line.lstrip("+-").strip().startswith("B: ") for line in diff)
    assert VALUE.encode() not in changed.stderr


def test_without_the_key_everything_is_resealed_and_said_so(stack, vector_cert):
    (stack / ".env").write_text("A=one\n")
    assert seal(stack, "--from-env-file", ".env", key=None).returncode == 0
    first = entry(stack).encrypted_data
    out = seal(stack, "--from-env-file", ".env", key=None)
    head = f"Pulumi.staging.yaml: my-app/my-app-secrets (strict, {vector_cert.fingerprint})"
    assert out.stderr.decode().splitlines() == [
        f"{head}: re-sealed every value: KSECRETS_SEAL_KEY is not set, so unchanged values cannot be recognised",
        f"{head}: re-sealed: A",
    ]
    assert entry(stack).encrypted_data != first  # randomised encryption
    # With the key but no stored digests yet: also re-sealed, and the reason says why.
    out = seal(stack, "--from-env-file", ".env")
    assert out.stderr.decode().splitlines()[0] == (
        f"{head}: re-sealed every value: no stored digests to compare (sealed without KSECRETS_SEAL_KEY, or with another key)"
    )


def test_a_new_certificate_reseals_everything(stack, other_pair, vector_cert):
    from ksecrets.sealing.certs import public_key_fingerprint
    from ksecrets.sealing.keys import cert_pem

    (stack / ".env").write_text("A=one\nB=two\n")
    assert seal(stack, "--from-env-file", ".env").returncode == 0
    (stack / "certs" / "staging.pem").write_bytes(cert_pem(other_pair[1]))
    new_fp = public_key_fingerprint(other_pair[0].public_key())
    # Keys missing from the input cannot stay sealed for the old certificate.
    snapshot = (stack / "Pulumi.staging.yaml").read_bytes()
    out = seal(stack, "--from-literal", "A=one")
    assert out.returncode == 2
    assert err_line(out) == (
        "ksecrets: Pulumi.staging.yaml: k8s-secrets:sealed[0]: B not in the input but sealed for "
        "another certificate or scope; give their values, pass --prune to drop them, or run "
        "`ksecrets reseal`"
    )
    assert (stack / "Pulumi.staging.yaml").read_bytes() == snapshot
    out = seal(stack, "--from-env-file", ".env")
    assert out.returncode == 0
    assert out.stderr.decode().splitlines()[0] == (
        f"Pulumi.staging.yaml: my-app/my-app-secrets (strict, {new_fp}): re-sealed every value: "
        f"the certificate changed (was {vector_cert.fingerprint})"
    )
    e = entry(stack)
    assert e.certificate_fingerprint == new_fp
    from ksecrets.sealing import crypto

    assert crypto.decrypt_value([other_pair[0]], dict(e.encrypted_data)["A"], b"my-app/my-app-secrets") == b"one"


def test_literals_merge_and_prune(stack):
    assert seal(stack, "--from-literal", "A=1", "--from-literal", "B=2").returncode == 0
    out = seal(stack, "--from-literal", "C=3")
    assert out.returncode == 0 and "kept (not in input): A, B" in out.stderr.decode()
    assert entry(stack).keys == ("A", "B", "C")
    out = seal(stack, "--from-literal", "C=3", "--prune")
    assert "removed: A, B" in out.stderr.decode()
    assert entry(stack).keys == ("C",)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--from-literal", f"A={VALUE}", "--from-literal", "A=x"],
            "ksecrets: --from-literal: key A: another key by that name already exists",
        ),
        (["--from-literal", VALUE], "ksecrets: --from-literal: expected KEY=VALUE (the argument is not shown)"),
        (
            ["--from-literal", f"A B={VALUE}"],
            "ksecrets: --from-literal: invalid key name: a valid key consists of letters, digits, '-', '_' or '.'",
        ),
        (["--from-env-file", "dup.env"], "ksecrets: dup.env: line 2: key A: another key by that name already exists"),
        (["--from-env-file", "missing.env"], "ksecrets: missing.env: env file not found"),
        (
            ["--from-file", "BIG=big.bin"],
            "ksecrets: Pulumi.staging.yaml: my-app/my-app-secrets: values.BIG: value is 1048577 bytes, over Kubernetes' 1 MiB Secret limit",
        ),
        (["--from-literal", "A=1", "--scope", "global"], None),
    ],
)
def test_bad_stack_input_writes_nothing(stack, args, message):
    (stack / "dup.env").write_text(f"A={VALUE}\nA=2\n")
    (stack / "big.bin").write_bytes(b"x" * (1024 * 1024 + 1))
    snapshot = (stack / "Pulumi.staging.yaml").read_bytes()
    out = seal(stack, *args)
    assert out.returncode == 2
    if message:
        assert err_line(out) == message
    assert VALUE.encode() not in out.stderr + out.stdout
    assert (stack / "Pulumi.staging.yaml").read_bytes() == snapshot
    assert not [p for p in stack.iterdir() if p.name.endswith(".tmp")]


def test_namespace_comes_from_the_app_or_the_flag(stack):
    out = ksecrets(
        "seal", "--stack", "staging", "--name", "unknown", "--from-literal", "A=1", cwd=stack, env=clean_env()
    )
    assert err_line(out) == "ksecrets: Pulumi.staging.yaml: no app has secretName unknown; pass --namespace"
    out = ksecrets(
        "seal",
        "--stack",
        "staging",
        "--name",
        "unknown",
        "--namespace",
        "other",
        "--from-literal",
        "A=1",
        cwd=stack,
        env=clean_env(),
    )
    assert out.returncode == 0
    assert load_stack("staging", stack).sealed_entry("other", "unknown") is not None


def test_missing_stack_and_missing_certificate(stack):
    out = ksecrets("seal", "--stack", "prod", "--name", "x", "--from-literal", "A=1", cwd=stack, env=clean_env())
    assert err_line(out) == "ksecrets: Pulumi.prod.yaml: no such stack file"
    (stack / "certs" / "staging.pem").unlink()
    out = seal(stack, "--from-literal", "A=1")
    assert err_line(out) == (
        "ksecrets: Pulumi.staging.yaml: k8s-secrets:sealedSecrets.certificate: certs/staging.pem: "
        "certificate file not found"
    )


def test_digests_reveal_nothing_without_the_key():
    slot = dict(namespace="ns", name="n", key="K", scope="strict", fingerprint="SHA256:x", value=b"same")
    d1 = churn.value_digest(SEAL_KEY.encode(), **slot)
    assert d1.startswith("hmac-sha256:") and "same" not in d1
    assert churn.value_digest(b"another-key-0123456789", **slot) != d1
    # Equal values in different slots do not look equal.
    assert churn.value_digest(SEAL_KEY.encode(), **{**slot, "key": "K2"}) != d1
    assert churn.value_digest(SEAL_KEY.encode(), **{**slot, "name": "m"}) != d1
    assert churn.value_digest(SEAL_KEY.encode(), **{**slot, "fingerprint": "SHA256:y"}) != d1
    assert churn.value_digest(SEAL_KEY.encode(), **{**slot, "scope": "namespace-wide"}) != d1
    assert churn.unchanged(d1, SEAL_KEY.encode(), **slot)
    assert not churn.unchanged(d1, SEAL_KEY.encode(), **{**slot, "value": b"other"})


HINT = "at least 32 random bytes as base64 or hex, e.g. `openssl rand -base64 32`"


@pytest.mark.parametrize(
    "key, problem",
    [
        ("short", "is not base64 or hex key material"),
        (" " * 40, "contains blanks or a newline"),
        (SEAL_KEY + "\n", "contains blanks or a newline"),
        ("a seal key that is a sentence!", "contains blanks or a newline"),
        ("test-seal-key-0123456789abcdef", "holds 22 bytes of key material"),  # the old 16-character rule let it in
        ("k" * 20, "holds 15 bytes of key material"),
        ("0" * 64, "is a repeated pattern, not random key material"),
        ("QUJD" * 11, "is a repeated pattern, not random key material"),
    ],
)
def test_a_seal_key_without_real_key_material_is_refused(stack, key, problem):
    before = (stack / "Pulumi.staging.yaml").read_bytes()
    out = seal(stack, "--from-literal", "A=1", key=key)
    assert out.returncode == 2
    assert err_line(out) == f"ksecrets: KSECRETS_SEAL_KEY: {problem}; it must be {HINT}"
    assert (stack / "Pulumi.staging.yaml").read_bytes() == before


@pytest.mark.parametrize("argv", [["openssl", "rand", "-base64", "32"], ["openssl", "rand", "-hex", "32"]])
def test_the_documented_key_generators_give_keys_that_are_accepted(stack, argv):
    key = subprocess.run(argv, capture_output=True, check=True, text=True).stdout.strip()
    assert seal(stack, "--from-literal", "A=1", key=key).returncode == 0
    import secrets

    assert churn.seal_key_problem(secrets.token_urlsafe(32)) is None  # URL-safe, unpadded


def test_repository_stack_file_round_trips_unchanged(tmp_path):
    """A no-op edit of the real stack files gives the same bytes (ruamel keeps everything)."""
    from ksecrets.config.stackfile import update_stack_file

    for src in ROOT.glob("Pulumi.*.yaml"):
        dest = tmp_path / src.name
        shutil.copy(src, dest)
        assert update_stack_file(dest, lambda config: None) is False
        assert dest.read_bytes() == src.read_bytes()


def test_unseal_a_stack_entry(stack, key_file):
    assert seal(stack, "--from-literal", f"A={VALUE}").returncode == 0
    out = ksecrets(
        "unseal",
        "--stack",
        "staging",
        "--name",
        "my-app-secrets",
        "--recovery-private-key",
        str(key_file),
        "-o",
        "json",
        cwd=stack,
        env=clean_env(),
    )
    assert out.returncode == 0, out.stderr
    secret = json.loads(out.stdout)
    assert secret["metadata"] == {"name": "my-app-secrets", "namespace": "my-app"}
    assert base64.b64decode(secret["data"]["A"]) == VALUE.encode()
    out = ksecrets(
        "unseal",
        "--stack",
        "staging",
        "--name",
        "nope",
        "--namespace",
        "x",
        "--recovery-private-key",
        str(key_file),
        cwd=stack,
        env=clean_env(),
    )
    assert err_line(out) == "ksecrets: Pulumi.staging.yaml: k8s-secrets:sealed: no entry for x/nope"


def test_unseal_a_stack_entry_is_the_exported_sealed_secret_unsealed(stack, key_file, vector_key, cli, monkeypatch):
    """`unseal --stack` unseals the very SealedSecret the exporter writes for the entry: the template's
    labels, annotations and `immutable` reach the Secret, as the controller would create it."""
    from ksecrets.manifests.sealed_secrets import sealed_secret

    assert seal(stack, "--from-literal", f"A={VALUE}").returncode == 0
    path = stack / "Pulumi.staging.yaml"
    path.write_text(
        path.read_text().replace(
            "      scope: strict\n",
            "      scope: strict\n      labels:\n        team: payments\n"
            "      annotations:\n        example.com/owner: payments\n      immutable: true\n",
            1,
        )
    )
    cfg = load_stack("staging", stack)
    (e,) = cfg.sealed
    assert (dict(e.labels), e.immutable) == ({"team": "payments"}, True)
    monkeypatch.chdir(stack)
    out = cli(
        "unseal",
        "--stack",
        "staging",
        "--name",
        "my-app-secrets",
        "--recovery-private-key",
        str(key_file),
        "-o",
        "json",
    )
    assert out.code == 0, out.err
    secret = json.loads(out.out)
    assert secret == unseal(sealed_secret(cfg, e), [vector_key], "exported")
    assert secret["metadata"] == {
        "name": "my-app-secrets",
        "namespace": "my-app",
        "labels": {"team": "payments"},
        "annotations": {"example.com/owner": "payments"},
    }
    assert secret["immutable"] is True


def test_an_existing_entry_is_updated_in_place(stack, vector_cert):
    """A hand-written entry keeps its comments and position; missing fields go where the schema lists them."""
    text = (
        STACK_FILE
        + """\
  k8s-secrets:sealed:
    # first entry, written by hand
    - name: my-app-secrets
      namespace: my-app   # the app's namespace
      encryptedData:
        OLD: {old}
  # trailing comment
""".format(old=sealed_shape())
    )
    (stack / "Pulumi.staging.yaml").write_text(text)
    out = seal(stack, "--from-literal", "NEW=1", "--prune")
    assert out.returncode == 0, out.stderr
    new = (stack / "Pulumi.staging.yaml").read_text()
    assert new.startswith(
        STACK_FILE + "  k8s-secrets:sealed:\n    # first entry, written by hand\n"
        "    - name: my-app-secrets\n      namespace: my-app   # the app's namespace\n"
        "      scope: strict\n"
        f"      certificateFingerprint: {vector_cert.fingerprint}\n      encryptedData:\n        NEW: Ag"
    )
    assert new.endswith(
        "      digests:\n        NEW: "
        + entry(stack).digests[0][1]
        + "\n      fleetDigests:\n        NEW: "
        + entry(stack).fleet_digests[0][1]
        + "\n  # trailing comment\n"
    )
    assert "OLD" not in new
