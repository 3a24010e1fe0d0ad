"""Issue 18: a value under `encryptedData` that is not sealed ciphertext never reaches Git.

The one check is `crypto.sealed_value_problem` (the kubeseal format: strict base64 of a 2-byte
length, an RSA block of the certificate's size, an AES-GCM ciphertext with its tag). The model
refuses such a value in the stack file and in an included file (with the line), export refuses a
value of the wrong RSA size for the stack's certificate, `--merge-into` and `unseal` refuse a
SealedSecret file holding one. No message shows the value.
"""

from __future__ import annotations

import base64

import pytest
import yaml

from ksecrets.sealing import crypto
from tests.conftest import sealed_shape

from .conftest import clean_env, err_line, ksecrets

PLAIN = "hunter2-correct-horse-battery"
STACK = """\
config:
  k8s-secrets:backend: sealed-secrets
  k8s-secrets:sealedSecrets:
    chartVersion: 2.18.5
    certificate: certs/staging.pem
  k8s-secrets:monitoring:
    enabled: false
  k8s-secrets:apps:
    - name: my-app
      namespace: my-app
  k8s-secrets:sealed:{sealed}
"""
ENTRY = """
    - name: my-app-secrets
      namespace: my-app
      certificateFingerprint: {fp}
      encryptedData:
        GOOD: {good}
        PASSWORD: {bad}
"""


@pytest.fixture
def repo(tmp_path, vectors):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "staging.pem").write_text(vectors["certificate_pem"])
    return tmp_path


def real_value(vector_cert, value: bytes = b"v") -> str:
    return crypto.encrypt_value(vector_cert.public_key, value, crypto.label_for("strict", "my-app", "my-app-secrets"))


# Values that are not sealed: plaintext, the plaintext's base64 (what a Secret's `data` holds), a
# real value cut short, and base64 whose first two bytes do not give an RSA block.
def not_sealed(vector_cert) -> list[str]:
    real = real_value(vector_cert)
    return [
        PLAIN,
        base64.b64encode(PLAIN.encode()).decode(),
        base64.b64encode(("x" * 600).encode()).decode(),
        real[:400],
        real + "=",
        "",
    ]


def test_the_format_check(vector_cert):
    real = real_value(vector_cert)
    assert crypto.sealed_value_problem(real) is None
    assert crypto.sealed_value_problem(real, vector_cert.key_bytes) is None
    assert crypto.sealed_value_problem(real_value(vector_cert, b"")) is None  # an empty value: tag only
    assert "RSA block is not 256 bytes" in crypto.sealed_value_problem(real, 256)
    for bad in not_sealed(vector_cert):
        problem = crypto.sealed_value_problem(bad)
        assert problem and problem.startswith("is not sealed ciphertext"), bad
        assert PLAIN not in problem and (not bad or bad not in problem)
    assert crypto.sealed_value_problem(12345) == "is not a string of sealed ciphertext"


@pytest.mark.parametrize("which", range(6))
def test_export_refuses_a_value_in_the_clear_in_the_stack_file(repo, vector_cert, which):
    bad = not_sealed(vector_cert)[which]
    sealed = ENTRY.format(fp=vector_cert.fingerprint, good=real_value(vector_cert), bad=f'"{bad}"')
    (repo / "Pulumi.staging.yaml").write_text(STACK.format(sealed=sealed))
    out = ksecrets("export", "--root", str(repo))
    assert out.returncode == 2
    line = err_line(out)
    assert line.startswith("ksecrets: Pulumi.staging.yaml: sealed[0].encryptedData.PASSWORD: is not sealed ciphertext")
    assert PLAIN not in line and (not bad or bad not in line)
    assert not (repo / "k8s").exists()  # nothing half-written


def test_an_included_file_names_the_file_and_line(repo, vector_cert):
    (repo / "stacks").mkdir()
    sealed = ENTRY.format(fp=vector_cert.fingerprint, good=real_value(vector_cert), bad=PLAIN)
    (repo / "stacks" / "sealed.yaml").write_text(sealed.replace("\n    ", "\n").lstrip("\n"))
    (repo / "Pulumi.staging.yaml").write_text(STACK.format(sealed=" stacks/sealed.yaml"))
    out = ksecrets("export", "--root", str(repo))
    assert out.returncode == 2
    assert err_line(out).startswith(
        "ksecrets: stacks/sealed.yaml: line 6: sealed[0].encryptedData.PASSWORD: is not sealed ciphertext"
    )
    assert PLAIN not in out.stderr.decode()
    # The other readers of the stack file refuse it too: verify, doctor's loader, seal.
    out = ksecrets("verify", "--root", str(repo))
    assert out.returncode == 2 and "sealed[0].encryptedData.PASSWORD" in err_line(out)


def test_export_refuses_a_value_of_another_key_size_for_the_stacks_certificate(repo, vector_cert):
    """Well-formed for some RSA key, but not for the certificate the entry says it was sealed for."""
    bad = sealed_shape(key_bytes=256)
    assert crypto.sealed_value_problem(bad) is None
    sealed = ENTRY.format(fp=vector_cert.fingerprint, good=real_value(vector_cert), bad=bad)
    (repo / "Pulumi.staging.yaml").write_text(STACK.format(sealed=sealed))
    out = ksecrets("export", "--root", str(repo))
    assert out.returncode == 2
    assert err_line(out) == (
        "ksecrets: Pulumi.staging.yaml: sealed[0].encryptedData.PASSWORD: is not sealed ciphertext for this "
        f"certificate (its RSA block is not {vector_cert.key_bytes} bytes): another key size, damaged, or not "
        "sealed at all"
    )
    # The same entry, sealed for an earlier certificate of that size, exports (verify calls it stale).
    other = ENTRY.format(fp="SHA256:an-earlier-certificate", good=real_value(vector_cert), bad=bad)
    (repo / "Pulumi.staging.yaml").write_text(STACK.format(sealed=other))
    out = ksecrets("export", "--root", str(repo))
    assert out.returncode == 0, out.stderr


def test_the_exported_objects_are_checked_whatever_built_them(repo, vector_cert):
    """`anything export writes`: the check on the objects, not only on the model."""
    from ksecrets.usecases.preflight import sealed_problem
    from ksecrets.sealing.sealedsecret import build_sealed_secret

    obj = build_sealed_secret(name="a", namespace="b", scope="strict", encrypted_data={"K": PLAIN})
    assert sealed_problem(obj) == (
        "spec.encryptedData.K: is not sealed ciphertext (not strict base64); seal the value with `ksecrets seal`"
    )
    obj["spec"]["encryptedData"]["K"] = real_value(vector_cert)
    assert sealed_problem(obj) is None


def test_merge_into_and_unseal_refuse_a_file_with_a_value_in_the_clear(tmp_path, cert_file, key_file, vector_cert):
    target = tmp_path / "app.sealed.yaml"
    obj = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "a", "namespace": "b"},
        "spec": {"encryptedData": {"OLD": PLAIN}, "template": {"metadata": {"name": "a", "namespace": "b"}}},
    }
    target.write_text(yaml.safe_dump(obj))
    before = target.read_bytes()
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {NEW: value-1}\n"
    out = ksecrets("seal", "--cert", str(cert_file), "--merge-into", str(target), input=secret, env=clean_env())
    assert out.returncode == 2
    assert err_line(out).startswith(f"ksecrets: {target}: spec.encryptedData.OLD: is not sealed ciphertext")
    assert PLAIN not in out.stderr.decode() and target.read_bytes() == before
    out = ksecrets("unseal", "--recovery-private-key", str(key_file), input=yaml.safe_dump(obj))
    assert out.returncode == 2 and PLAIN not in out.stderr.decode() + out.stdout.decode()
