"""SealedSecret objects: kubeseal's layout, the CRD schema, scopes, merge and unseal."""

from __future__ import annotations

import base64

import pytest
from jsonschema import Draft7Validator

from ksecrets.errors import KsecretsError
from ksecrets.sealing import crypto
from ksecrets.sealing.sealedsecret import CERT_ANNOTATION, build_sealed_secret, merge_sealed, seal_secret, unseal
from ksecrets.sealing.secret_input import read_secret

SECRET_YAML = """\
apiVersion: v1
kind: Secret
metadata:
  name: app-secrets
  namespace: my-app
  uid: 1234
  resourceVersion: "99"
  labels: {team: a, app: my-app}
  annotations:
    note: kept
    kubectl.kubernetes.io/last-applied-configuration: '{"stringData":{"PASSWORD":"hunter2"}}'
type: kubernetes.io/basic-auth
immutable: true
data:
  username: YWRtaW4=
stringData:
  password: hunter2
"""


def test_build_has_kubeseal_layout_and_key_order(vectors):
    enc = {"b": "AgB", "a": "AgA"}
    obj = build_sealed_secret(
        name="n",
        namespace="ns",
        scope="namespace-wide",
        encrypted_data=enc,
        secret_type="kubernetes.io/tls",
        labels={"z": "1", "a": "2"},
        annotations={"x": "y"},
        immutable=False,
        fingerprint=vectors["public_key_fingerprint"],
    )
    assert list(obj) == ["apiVersion", "kind", "metadata", "spec"]
    assert obj["apiVersion"] == "bitnami.com/v1alpha1" and obj["kind"] == "SealedSecret"
    assert obj["metadata"] == {
        "name": "n",
        "namespace": "ns",
        "annotations": {
            CERT_ANNOTATION: vectors["public_key_fingerprint"],
            "sealedsecrets.bitnami.com/namespace-wide": "true",
        },
    }
    assert list(obj["spec"]) == ["encryptedData", "template"]
    assert list(obj["spec"]["encryptedData"]) == ["a", "b"]
    assert obj["spec"]["template"] == {
        "metadata": {
            "name": "n",
            "namespace": "ns",
            "labels": {"a": "2", "z": "1"},
            "annotations": {"sealedsecrets.bitnami.com/namespace-wide": "true", "x": "y"},
        },
        "type": "kubernetes.io/tls",
        "immutable": False,
    }


@pytest.mark.parametrize(
    "scope, own",
    [
        ("strict", {}),
        ("namespace-wide", {"sealedsecrets.bitnami.com/namespace-wide": "true"}),
        ("cluster-wide", {"sealedsecrets.bitnami.com/cluster-wide": "true"}),
    ],
)
def test_scope_annotations_and_schema(scope, own, crd_schema, vector_cert):
    obj = build_sealed_secret(
        name="n",
        namespace="ns",
        scope=scope,
        encrypted_data={"k": "AgA="},
        annotations={"sealedsecrets.bitnami.com/cluster-wide": "true"} if scope != "cluster-wide" else None,
        fingerprint=vector_cert.fingerprint,
    )
    assert obj["metadata"]["annotations"] == {**own, CERT_ANNOTATION: vector_cert.fingerprint}
    # A stale scope annotation from the Secret is replaced, as upstream UpdateScopeAnnotations does.
    assert obj["spec"]["template"]["metadata"].get("annotations", {}) == own
    errors = list(Draft7Validator(crd_schema).iter_errors(obj))
    assert errors == []


def test_schema_catches_a_broken_object(crd_schema):
    obj = build_sealed_secret(name="n", namespace="ns", scope="strict", encrypted_data={"k": "v"})
    obj["spec"]["encryptedData"]["k"] = 5
    assert list(Draft7Validator(crd_schema).iter_errors(obj))


def test_cluster_wide_without_namespace_is_fine_strict_is_not(crd_schema):
    obj = build_sealed_secret(name="n", namespace="", scope="cluster-wide", encrypted_data={"k": "v"})
    assert "namespace" not in obj["metadata"] and not list(Draft7Validator(crd_schema).iter_errors(obj))
    with pytest.raises(KsecretsError, match="a strict-scoped SealedSecret must declare a namespace"):
        build_sealed_secret(name="n", namespace="", scope="strict", encrypted_data={"k": "v"})


def test_seal_secret_keeps_template_fields_and_strips_leaks(vector_cert, vector_key, crd_schema):
    secret = read_secret(SECRET_YAML, "s.yaml")
    sealed = seal_secret(secret, vector_cert)
    assert not list(Draft7Validator(crd_schema).iter_errors(sealed))
    t = sealed["spec"]["template"]
    assert t == {
        "metadata": {
            "name": "app-secrets",
            "namespace": "my-app",
            "labels": {"app": "my-app", "team": "a"},
            "annotations": {"note": "kept"},
        },
        "type": "kubernetes.io/basic-auth",
        "immutable": True,
    }
    assert "hunter2" not in str(sealed)
    back = unseal(sealed, [vector_key], "t")
    assert back["data"] == {"password": base64.b64encode(b"hunter2").decode(), "username": "YWRtaW4="}
    assert back["type"] == "kubernetes.io/basic-auth" and back["immutable"] is True


def test_scope_from_the_secrets_annotations(vector_cert, vector_key):
    text = SECRET_YAML.replace("    note: kept\n", '    sealedsecrets.bitnami.com/namespace-wide: "true"\n')
    sealed = seal_secret(read_secret(text, "s"), vector_cert)
    assert sealed["metadata"]["annotations"]["sealedsecrets.bitnami.com/namespace-wide"] == "true"
    value = sealed["spec"]["encryptedData"]["password"]
    assert crypto.decrypt_value([vector_key], value, b"my-app") == b"hunter2"
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt_value([vector_key], value, b"my-app/app-secrets")
    # An explicit scope wins over the annotations.
    strict = seal_secret(read_secret(text, "s"), vector_cert, scope="strict")
    assert "sealedsecrets.bitnami.com/namespace-wide" not in strict["metadata"].get("annotations", {})
    assert (
        crypto.decrypt_value([vector_key], strict["spec"]["encryptedData"]["password"], b"my-app/app-secrets")
        == b"hunter2"
    )


def test_unseal_rejects_a_moved_object(vector_cert, vector_key):
    sealed = seal_secret(read_secret(SECRET_YAML, "s"), vector_cert)
    sealed["metadata"]["namespace"] = "other"
    with pytest.raises(KsecretsError) as exc:
        unseal(sealed, [vector_key], "moved.yaml")
    assert str(exc.value) == (
        "moved.yaml: spec.encryptedData.password: cannot decrypt: wrong key, wrong scope, "
        "or tampered ciphertext (sealed strict for other/app-secrets)"
    )


def test_merge_changes_only_the_given_keys(vector_cert):
    orig = seal_secret(read_secret(SECRET_YAML, "s"), vector_cert)
    update = seal_secret(read_secret(SECRET_YAML.replace("  username: YWRtaW4=\n", ""), "s"), vector_cert)
    merged = merge_sealed(orig, update, "f")
    assert merged["spec"]["encryptedData"]["username"] == orig["spec"]["encryptedData"]["username"]
    assert merged["spec"]["encryptedData"]["password"] == update["spec"]["encryptedData"]["password"]
    assert merged["spec"]["encryptedData"]["password"] != orig["spec"]["encryptedData"]["password"]


def test_merge_refuses_to_mix_scopes_or_certificates(vector_cert):
    orig = seal_secret(read_secret(SECRET_YAML, "s"), vector_cert)
    wide = seal_secret(read_secret(SECRET_YAML, "s"), vector_cert, scope="namespace-wide")
    with pytest.raises(KsecretsError) as exc:
        merge_sealed(orig, wide, "f.yaml")
    assert (
        str(exc.value) == "f.yaml: is strict-scoped but the new values are namespace-wide-scoped; pass --scope strict"
    )
    other = seal_secret(read_secret(SECRET_YAML, "s"), vector_cert)
    other["metadata"]["annotations"][CERT_ANNOTATION] = "SHA256:other"
    with pytest.raises(KsecretsError, match="merging would mix certificates"):
        merge_sealed(orig, other, "f.yaml")
