"""The S3 upload of the disaster-recovery CronJobs: our SigV4 signature checked against botocore's
signer (the AWS SDK's own), on the request a real HTTP server on 127.0.0.1 received."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ksecrets import s3
from ksecrets.errors import KsecretsError

botocore = pytest.importorskip("botocore")
from botocore.auth import S3SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
WHEN = dt.datetime(2026, 11, 29, 3, 0, 7, tzinfo=dt.timezone.utc)


def botocore_authorization(method: str, url: str, headers: dict[str, str], region: str) -> str:
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    auth = S3SigV4Auth(Credentials(AK, SK), "s3", region)
    request.context["timestamp"] = headers["x-amz-date"]
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    scope = f"{headers['x-amz-date'][:8]}/{region}/s3/aws4_request"
    return (
        f"AWS4-HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders={';'.join(sorted(h.lower() for h in headers))}, "
        f"Signature={signature}"
    )


@pytest.fixture
def server():
    got: list[dict] = []
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
            self.send_response(status[0])
            text = b"" if status[0] == 200 else b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", got, status
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.mark.parametrize(
    "region,prefix,name",
    [
        ("us-east-1", "", "vault-raft-20261129T030007Z.snap"),
        ("eu-west-3", "prod/vault snapshots/", "sealed-secrets-keyab~c_d.kskey"),  # space and unreserved chars
    ],
)
def test_upload_signature_matches_botocore(server, tmp_path, region, prefix, name):
    endpoint, got, _ = server
    f = tmp_path / name
    f.write_bytes(gzip.compress(b"raft state " * 5000, mtime=0))
    target = s3.Target(endpoint, "dr-bucket", region, prefix)
    s3.put_file(target, name, f, s3.Credentials(AK, SK), now=WHEN)
    (req,) = got
    assert req["body"] == f.read_bytes()
    assert req["headers"]["x-amz-content-sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    signed = {k: req["headers"][k] for k in ("host", "x-amz-content-sha256", "x-amz-date")}
    url = endpoint + req["path"]
    assert req["headers"]["authorization"] == botocore_authorization("PUT", url, signed, region)
    assert req["path"] == "/dr-bucket/" + "/".join(
        __import__("urllib.parse").parse.quote(part) for part in (prefix + name).split("/")
    )


def test_a_refusal_is_one_line_without_credentials(server, tmp_path):
    endpoint, _, status = server
    status[0] = 403
    f = tmp_path / "x.snap"
    f.write_bytes(b"\x1f\x8bdata")
    with pytest.raises(KsecretsError) as err:
        s3.put_file(s3.Target(endpoint, "b"), "x.snap", f, s3.Credentials(AK, SK), now=WHEN)
    assert str(err.value) == "s3://b/x.snap: upload refused (HTTP 403, SignatureDoesNotMatch)"
    assert SK not in repr(s3.Credentials(AK, SK))


def test_missing_credentials(monkeypatch):
    with pytest.raises(KsecretsError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        s3.credentials_from_env({})


def test_the_cronjobs_carry_s3_places_and_credentials_by_reference():
    import kubernetes_validate

    from ksecrets.config.load import parse
    from ksecrets.manifests import snapshots

    cfg = parse(
        {
            "backend": "vault",
            "vault": {
                "snapshots": {
                    "s3": {
                        "endpoint": "http://minio.backup.svc:9000",
                        "bucket": "vault-snapshots",
                        "prefix": "prod/",
                        "credentialsSecret": "s3-credentials",
                    }
                }
            },
        },
        stack="s",
        source="Pulumi.s.yaml",
    )
    cj = snapshots.cronjob(cfg)
    kubernetes_validate.validate(cj, "1.33", strict=True)
    (c,) = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert c["args"][-8:] == [
        "--s3-endpoint",
        "http://minio.backup.svc:9000",
        "--s3-bucket",
        "vault-snapshots",
        "--s3-region",
        "us-east-1",
        "--s3-prefix",
        "prod/",
    ]
    assert [e for e in c["env"] if e["name"].startswith("AWS_")] == [
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": "accessKeyId"}}},
        {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": "secretAccessKey"}},
        },
    ]
