"""Issue 18: a certificate that is not valid yet (notBefore in the future) is not used silently.

Decision: sealing refuses it (seal with --cert, seal --stack, reseal, adopt) with one line, unless
`--allow-future-cert` (seal, reseal); `verify` reports it as a FAIL. Five minutes of clock skew
are tolerated (the controller's certificate is valid from the moment it is made). `openssl verify`
is the oracle that the test certificate really is "not yet valid".
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest

from ksecrets.sealing import certs
from ksecrets.sealing.keys import cert_pem, self_signed_cert

from .conftest import clean_env, err_line, ksecrets

SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: app, namespace: team}\nstringData: {TOKEN: v-123456}\n"
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
def future(tmp_path, other_pair):
    key, _ = other_pair
    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    path = tmp_path / "future.pem"
    path.write_bytes(cert_pem(self_signed_cert(key, now=start)))
    return path, start.replace(microsecond=0)


def test_openssl_agrees_it_is_not_valid_yet(future):
    path, _ = future
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    out = subprocess.run(["openssl", "verify", "-CAfile", str(path), str(path)], capture_output=True, text=True)
    assert out.returncode != 0 and "not yet valid" in out.stdout + out.stderr


def test_seal_refuses_it_unless_told(future):
    path, start = future
    out = ksecrets("seal", "--cert", str(path), input=SECRET)
    assert out.returncode == 2 and out.stdout == b""
    assert err_line(out) == (
        f"ksecrets: {path}: certificate is not valid before {start:%Y-%m-%d %H:%M} UTC: this machine's clock is "
        "wrong, or it is not the controller's certificate (the controller's is valid from when it was made); "
        "check it (pass --allow-future-cert to seal with it anyway)"
    )
    out = ksecrets("seal", "--cert", str(path), "--raw", "--name", "a", "--namespace", "b", input="v")
    assert out.returncode == 2 and "not valid before" in err_line(out)
    out = ksecrets("seal", "--cert", str(path), "--allow-future-cert", input=SECRET)
    assert out.returncode == 0, out.stderr


def test_a_few_minutes_of_clock_skew_are_tolerated(tmp_path, other_pair):
    key, _ = other_pair
    soon = tmp_path / "soon.pem"
    soon.write_bytes(cert_pem(self_signed_cert(key, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=2))))
    assert ksecrets("seal", "--cert", str(soon), input=SECRET).returncode == 0
    later = certs.load_certificate(
        soon, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10), allow_not_yet_valid=True
    )
    assert certs.not_yet_valid(later, dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10))


def test_stack_sealing_refuses_and_verify_fails(tmp_path, future):
    path, start = future
    (tmp_path / "certs").mkdir()
    shutil.copy(path, tmp_path / "certs" / "staging.pem")
    (tmp_path / "Pulumi.staging.yaml").write_text(STACK)
    base = ["seal", "--stack", "staging", "--name", "my-app-secrets", "--from-literal", "A=1"]
    out = ksecrets(*base, cwd=tmp_path, env=clean_env())
    assert out.returncode == 2
    assert err_line(out).startswith(
        "ksecrets: Pulumi.staging.yaml: k8s-secrets:sealedSecrets.certificate: certs/staging.pem: certificate is "
        f"not valid before {start:%Y-%m-%d %H:%M} UTC"
    )
    assert (tmp_path / "Pulumi.staging.yaml").read_text() == STACK
    out = ksecrets(*base, "--allow-future-cert", cwd=tmp_path, env=clean_env())
    assert out.returncode == 0, out.stderr
    out = ksecrets("verify", "--root", str(tmp_path))
    assert out.returncode == 1
    assert (
        f"staging: FAIL: certs/staging.pem: certificate is not valid before {start:%Y-%m-%d %H:%M} UTC: this "
        "machine's clock is wrong, or it is not the controller's certificate (the controller's is valid from "
        "when it was made)"
    ) in out.stdout.decode().splitlines()


def test_reseal_refuses_it_unless_told(tmp_path, future, key_file, cert_file):
    path, _ = future
    (tmp_path / "certs").mkdir()
    shutil.copy(cert_file, tmp_path / "certs" / "staging.pem")
    (tmp_path / "Pulumi.staging.yaml").write_text(STACK)
    base = ["seal", "--stack", "staging", "--name", "my-app-secrets", "--from-literal", "A=1"]
    assert ksecrets(*base, cwd=tmp_path, env=clean_env()).returncode == 0
    argv = ["reseal", "--stack", "staging", "--root", str(tmp_path), "--recovery-private-key", str(key_file)]
    out = ksecrets(*argv, "--cert", str(path))
    assert out.returncode == 2 and "not valid before" in err_line(out)
    out = ksecrets(*argv, "--cert", str(path), "--allow-future-cert")
    assert out.returncode == 0, out.stderr
