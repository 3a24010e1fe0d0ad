"""`ksecrets seal --stack a --stack b` and `--all-stacks`: one input, each stack sealed with its
own certificate, and nothing written unless every stack could be sealed."""

from __future__ import annotations

import yaml

from ksecrets.sealing import crypto

from .conftest import clean_env, err_line, ksecrets


def _qa_stack(repo, vectors) -> None:
    """A second sealed-secrets stack, `qa`, whose certificate is the vectors' (we hold its key)."""
    (repo / "certs" / "qa.pem").write_text(vectors["certificate_pem"])
    text = (repo / "Pulumi.staging.yaml").read_text().replace("certs/staging.pem", "certs/qa.pem")
    text = text[: text.index("  k8s-secrets:sealed:")]  # staging's sealed values are not qa's
    (repo / "Pulumi.qa.yaml").write_text(text)


def _entry(repo, stack):
    cfg = yaml.safe_load((repo / f"Pulumi.{stack}.yaml").read_text())["config"]
    (entry,) = [e for e in cfg["k8s-secrets:sealed"] if e["name"] == "my-app-secrets"]
    return entry


def test_one_input_sealed_for_each_stacks_certificate(repo_copy, vectors, vector_key, vector_cert):
    from ksecrets.sealing.certs import load_certificate

    _qa_stack(repo_copy, vectors)
    res = ksecrets(
        "seal",
        "--stack",
        "staging",
        "--stack",
        "qa",
        "--name",
        "my-app-secrets",
        "--from-literal",
        "DATABASE_URL=both-stacks-value",
        cwd=repo_copy,
    )
    assert res.returncode == 0, res.stderr
    staging_fp = load_certificate(repo_copy / "certs" / "staging.pem").fingerprint
    assert _entry(repo_copy, "staging")["certificateFingerprint"] == staging_fp
    qa = _entry(repo_copy, "qa")
    assert qa["certificateFingerprint"] == vector_cert.fingerprint != staging_fp
    assert (
        crypto.decrypt_value([vector_key], qa["encryptedData"]["DATABASE_URL"], b"my-app/my-app-secrets")
        == b"both-stacks-value"
    )
    # staging's value is not sealed for the qa key
    try:
        crypto.decrypt_value(
            [vector_key], _entry(repo_copy, "staging")["encryptedData"]["DATABASE_URL"], b"my-app/my-app-secrets"
        )
    except crypto.DecryptError:
        pass
    else:
        raise AssertionError("staging's value opened with qa's key")
    lines = res.stderr.decode().splitlines()
    assert any(l.startswith("Pulumi.staging.yaml:") for l in lines) and any(
        l.startswith("Pulumi.qa.yaml:") for l in lines
    )


def test_all_stacks_means_every_sealed_secrets_stack(repo_copy, vectors):
    _qa_stack(repo_copy, vectors)
    before = (repo_copy / "Pulumi.production.yaml").read_bytes()
    old = _entry(repo_copy, "staging")["encryptedData"]["DATABASE_URL"]
    res = ksecrets(
        "seal", "--all-stacks", "--name", "my-app-secrets", "--from-literal", "DATABASE_URL=1234567890", cwd=repo_copy
    )
    assert res.returncode == 0, res.stderr
    assert _entry(repo_copy, "staging")["encryptedData"]["DATABASE_URL"] != old
    assert "DATABASE_URL" in _entry(repo_copy, "qa")["encryptedData"]
    assert (repo_copy / "Pulumi.production.yaml").read_bytes() == before  # a vault stack: untouched


def test_one_failing_stack_writes_no_stack(repo_copy, vectors):
    _qa_stack(repo_copy, vectors)
    (repo_copy / "certs" / "qa.pem").write_text("not a certificate\n")
    before = {p.name: p.read_bytes() for p in repo_copy.glob("Pulumi.*.yaml")}
    res = ksecrets(
        "seal",
        "--stack",
        "staging",
        "--stack",
        "qa",
        "--name",
        "my-app-secrets",
        "--from-literal",
        "DATABASE_URL=v-123456789",
        cwd=repo_copy,
        env=clean_env(),
    )
    assert res.returncode == 2
    assert err_line(res).startswith("ksecrets: Pulumi.qa.yaml: k8s-secrets:sealedSecrets.certificate: certs/qa.pem:")
    assert {p.name: p.read_bytes() for p in repo_copy.glob("Pulumi.*.yaml")} == before
    assert not list(repo_copy.glob(".Pulumi*"))  # no temp file left behind


def test_stack_and_all_stacks_are_exclusive(repo_copy):
    res = ksecrets("seal", "--stack", "staging", "--all-stacks", "--name", "x", "--from-literal", "A=b", cwd=repo_copy)
    assert res.returncode == 2 and "not both" in err_line(res)
