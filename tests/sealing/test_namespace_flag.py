"""Issue 18: `seal -n X` (or SEALED_SECRETS_NAMESPACE) never moves a Secret that declares another
namespace without a word.

kubeseal (cmd/kubeseal, pkg/kubeseal `Seal`) binds `--namespace` to kubectl's client config, whose
namespace is used only for a Secret without `metadata.namespace`: a declared namespace wins and the
flag is ignored silently; `--merge-into` seals for the file's namespace, whatever the input says.
ksecrets refuses the conflict instead (one line, nothing written) and keeps kubeseal's behaviour
where there is none.
"""

from __future__ import annotations

import json

import pytest

from ksecrets.sealing import crypto

from .conftest import clean_env, err_line, ksecrets

SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: app, namespace: team-a}\nstringData: {TOKEN: value-123456}\n"
NO_NS = "apiVersion: v1\nkind: Secret\nmetadata: {name: app}\nstringData: {TOKEN: value-123456}\n"


def opens(value: str, key, label: bytes) -> bytes:
    return crypto.decrypt_value([key], value, label)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_namespace_flag_that_contradicts_the_secret_is_refused(tmp_path, cert_file, how):
    out_file = tmp_path / "out.json"
    args = ["seal", "--cert", str(cert_file), "-w", str(out_file)]
    env = clean_env()
    if how == "flag":
        args += ["-n", "team-b"]
        flag = "--namespace"
    else:
        env["SEALED_SECRETS_NAMESPACE"] = "team-b"
        flag = "SEALED_SECRETS_NAMESPACE"
    out = ksecrets(*args, input=SECRET, env=env)
    assert out.returncode == 2
    assert err_line(out) == (
        f"ksecrets: stdin: metadata.namespace is 'team-a' but {flag} is 'team-b': refusing to move the Secret "
        f"to another namespace (kubeseal would seal it for 'team-a'); change metadata.namespace or drop {flag}"
    )
    assert not out_file.exists()


def test_the_same_namespace_or_none_declared_is_kubeseals(cert_file, vector_key):
    out = ksecrets("seal", "--cert", str(cert_file), "-n", "team-a", input=SECRET)
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    assert obj["metadata"]["namespace"] == "team-a"
    assert opens(obj["spec"]["encryptedData"]["TOKEN"], vector_key, b"team-a/app") == b"value-123456"
    # A Secret without a namespace takes the flag's, as kubeseal's client-config namespace.
    env = clean_env(SEALED_SECRETS_NAMESPACE="team-b")
    out = ksecrets("seal", "--cert", str(cert_file), input=NO_NS, env=env)
    obj = json.loads(out.stdout)
    assert obj["metadata"]["namespace"] == "team-b"
    assert opens(obj["spec"]["encryptedData"]["TOKEN"], vector_key, b"team-b/app") == b"value-123456"


def test_merge_into_a_file_of_another_namespace_is_refused(tmp_path, cert_file):
    target = tmp_path / "app.sealed.json"
    first = ksecrets("seal", "--cert", str(cert_file), "-w", str(target), input=SECRET)
    assert first.returncode == 0, first.stderr
    before = target.read_bytes()
    other = SECRET.replace("team-a", "team-b").replace("TOKEN", "OTHER")
    out = ksecrets("seal", "--cert", str(cert_file), "--merge-into", str(target), input=other)
    assert out.returncode == 2
    assert err_line(out) == (
        f"ksecrets: stdin: namespace 'team-b' (the Secret's or --namespace) is not the namespace of {target} "
        "('team-a'); the values would be sealed for 'team-a': fix the Secret's namespace, or seal it into another file"
    )
    assert target.read_bytes() == before
    # Without a namespace in the input, the file's is used (kubeseal's --merge-into).
    out = ksecrets("seal", "--cert", str(cert_file), "--merge-into", str(target), input=NO_NS.replace("TOKEN", "B"))
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(target.read_text())["spec"]["encryptedData"]) == ["B", "TOKEN"]
