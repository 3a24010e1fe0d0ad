"""PUT one object to S3-compatible storage (AWS S3, MinIO, Ceph RGW...), signed with AWS
Signature Version 4, path-style (`<endpoint>/<bucket>/<key>`). Only what the disaster-recovery
CronJobs need: no listing, no deletion (retention on the bucket is a lifecycle rule).

Credentials come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional
`AWS_SESSION_TOKEN`), which the CronJobs fill from a Secret with `secretKeyRef`. Errors name the
bucket and key, never a credential.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import quote, urlsplit

from ksecrets.errors import KsecretsError

ALGORITHM = "AWS4-HMAC-SHA256"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Target:
    endpoint: str  # https://s3.eu-west-1.amazonaws.com, http://minio.backup.svc:9000
    bucket: str
    region: str = "us-east-1"
    prefix: str = ""

    def url(self, key: str) -> str:
        return f"{self.endpoint.rstrip('/')}/{quote(self.bucket)}/{quote(self.prefix + key)}"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str = ""

    def __repr__(self) -> str:  # never the secret, even in a traceback
        return f"Credentials(access_key={self.access_key!r})"


def credentials_from_env(env: Mapping[str, str] | None = None) -> Credentials:
    env = os.environ if env is None else env
    ak, sk = (env.get("AWS_ACCESS_KEY_ID") or "").strip(), (env.get("AWS_SECRET_ACCESS_KEY") or "").strip()
    if not ak or not sk:
        raise KsecretsError("S3 upload needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (from the credentials Secret)")
    return Credentials(ak, sk, (env.get("AWS_SESSION_TOKEN") or "").strip())


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    payload_sha256: str,
    creds: Credentials,
    region: str,
    when: _dt.datetime,
) -> str:
    """The Authorization header for a request carrying `headers` (host, x-amz-date,
    x-amz-content-sha256 and any x-amz-*), every one of them signed."""
    parts = urlsplit(url)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    canon = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    names = sorted(canon)
    canonical_request = "\n".join(
        [
            method,
            parts.path or "/",
            parts.query,
            "".join(f"{n}:{canon[n]}\n" for n in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()]
    )
    key = _hmac(
        _hmac(_hmac(_hmac(("AWS4" + creds.secret_key).encode("utf-8"), amz_date[:8]), region), "s3"), "aws4_request"
    )
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={creds.access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"


def put_file(
    target: Target,
    key: str,
    path: Path,
    creds: Credentials,
    *,
    now: _dt.datetime | None = None,
    verify: bool | str = True,
    timeout: float = 300,
) -> None:
    """Upload `path` as object `prefix + key` (a single PUT, up to 5 GiB)."""
    import requests

    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
            size += len(block)
    url = target.url(key)
    when = now or _dt.datetime.now(_dt.timezone.utc)
    headers = {
        "host": urlsplit(url).netloc,
        "x-amz-content-sha256": digest.hexdigest(),
        "x-amz-date": when.strftime("%Y%m%dT%H%M%SZ"),
    }
    if creds.session_token:
        headers["x-amz-security-token"] = creds.session_token
    auth = sign("PUT", url, headers, digest.hexdigest(), creds, target.region, when)
    where = f"s3://{target.bucket}/{target.prefix}{key}"
    try:
        with open(path, "rb") as f:
            r = requests.put(
                url,
                data=f,
                headers={**headers, "Authorization": auth, "Content-Length": str(size)},
                verify=verify,
                timeout=timeout,
            )
    except requests.RequestException as exc:
        raise KsecretsError(f"{where}: upload failed ({type(exc).__name__}; is {target.endpoint} reachable?)") from None
    if r.status_code not in (200, 201):
        code = ""
        if "<Code>" in r.text:
            code = r.text.split("<Code>", 1)[1].split("</Code>", 1)[0][:60]
        raise KsecretsError(f"{where}: upload refused (HTTP {r.status_code}{', ' + code if code else ''})")
