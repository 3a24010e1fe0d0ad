"""The size limits `ksecrets.preflight` enforces, against the real kube-apiserver and etcd (with
etcd's default request limit): what our check refuses, the cluster refuses; what it accepts, a
server-side apply (as Flux does it, managedFields and all) stores.
"""

from __future__ import annotations

import base64
import json

import pytest

from ksecrets import limits as preflight  # the size limits live in ksecrets.limits
from ksecrets.sealing.sealedsecret import build_sealed_secret

NAMESPACE = "limits"
# A sealed value's shape: uint16(512) || 512-byte RSA block || AES-GCM; 750 base64 characters.
VALUE = base64.b64encode((512).to_bytes(2, "big") + b"\x01" * 558).decode()


def _secret(name: str, size: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {"blob": base64.b64encode(b"x" * size).decode()},
    }


def _sealed(name: str, json_bytes: int) -> dict:
    """A SealedSecret whose compact JSON is exactly `json_bytes` long."""
    enc = {f"K{i:05d}": VALUE for i in range(json_bytes // (len(VALUE) + 12) - 3)}
    obj = build_sealed_secret(name=name, namespace=NAMESPACE, scope="strict", encrypted_data=enc)
    size = len(json.dumps(obj, separators=(",", ":")))
    filler = json_bytes - size - len(',"Zfill":""')
    assert filler > 0
    obj["spec"]["encryptedData"]["Zfill"] = "A" * filler
    assert len(json.dumps(obj, separators=(",", ":"))) == json_bytes
    return obj


@pytest.fixture(scope="module")
def ns(cluster):
    cluster.ensure_namespace(NAMESPACE)
    return cluster


def _apply(cluster, obj):
    return cluster.apply([obj], field_manager="kustomize-controller", check=False)


@pytest.mark.parametrize(
    "size, accepted", [(preflight.MAX_SECRET_BYTES, True), (preflight.MAX_SECRET_BYTES + 1, False)]
)
def test_secret_data_limit_is_the_api_servers(ns, size, accepted):
    obj = _secret(f"s-{size}", size)
    assert (preflight.size_problem(obj) is None) is accepted
    res = _apply(ns, obj)
    assert (res.returncode == 0) is accepted, res.stderr
    if not accepted:
        assert "Too long: may not be more than 1048576 bytes" in res.stderr


def test_sealed_secret_at_our_limit_is_stored_by_a_server_side_apply(ns):
    obj = _sealed("at-limit", preflight.MAX_OBJECT_BYTES)
    assert preflight.size_problem(obj) is None
    res = _apply(ns, obj)
    assert res.returncode == 0, res.stderr
    live = ns.get(f"/apis/bitnami.com/v1alpha1/namespaces/{NAMESPACE}/sealedsecrets/at-limit")
    assert len(live["spec"]["encryptedData"]) == len(obj["spec"]["encryptedData"])
    assert len(json.dumps(live, separators=(",", ":"))) > preflight.MAX_OBJECT_BYTES  # managedFields came on top


def test_sealed_secret_over_the_etcd_request_limit_is_refused_by_both(ns):
    obj = _sealed("too-big", preflight.ETCD_REQUEST_BYTES + 1)
    assert preflight.size_problem(obj).startswith(f"the object is {preflight.ETCD_REQUEST_BYTES + 1} bytes")
    res = _apply(ns, obj)
    assert res.returncode != 0
    assert "too large" in res.stderr, res.stderr
    assert ns.get(f"/apis/bitnami.com/v1alpha1/namespaces/{NAMESPACE}/sealedsecrets/too-big") is None
