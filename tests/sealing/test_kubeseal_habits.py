"""kubeseal's habits on `ksecrets seal`: --cert as an https URL (with --cert-ca), -f, -w (atomic),
--raw from stdin, --version and the SEALED_SECRETS_* environment variables; and the fast
certificate reader agrees with cryptography.x509 and `openssl x509`.

The https server is a real TLS server on 127.0.0.1 (an ephemeral port), with a CA and a server
certificate made here; it is stopped in a finally block.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import shutil
import ssl
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ksecrets.sealing import crypto

from .conftest import clean_env, err_line, ksecrets

SECRET_YAML = (
    "apiVersion: v1\nkind: Secret\nmetadata: {name: app, namespace: team}\nstringData: {TOKEN: s3cr3t-value-123}\n"
)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca_and_server(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) for 127.0.0.1, EC keys (fast)."""
    import ipaddress

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@contextmanager
def https_server(tmp_path: Path, routes: dict[str, bytes], seen: list | None = None):
    """A real TLS server on 127.0.0.1; yields (base URL, CA file)."""
    ca, cert, key = make_ca_and_server(tmp_path)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if seen is not None:
                seen.append((self.path, dict(self.headers)))
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"not found")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", ca
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _opens(value: str, vector_key, label: bytes) -> bytes:
    return crypto.decrypt_value([vector_key], value, label)


# --- --cert https:// ---------------------------------------------------------------------------


def test_cert_from_https_url_with_ca(tmp_path, vectors, vector_key):
    with https_server(tmp_path, {"/v1/cert.pem": vectors["certificate_pem"].encode()}) as (url, ca):
        out = ksecrets("seal", "--cert", f"{url}/v1/cert.pem", "--cert-ca", str(ca), input=SECRET_YAML)
        assert out.returncode == 0, out.stderr
        sealed = json.loads(out.stdout)
        assert _opens(sealed["spec"]["encryptedData"]["TOKEN"], vector_key, b"team/app") == b"s3cr3t-value-123"

        # The same URL through SEALED_SECRETS_CERT.
        env = clean_env(SEALED_SECRETS_CERT=f"{url}/v1/cert.pem")
        out = ksecrets("seal", "--cert-ca", str(ca), input=SECRET_YAML, env=env)
        assert out.returncode == 0, out.stderr

        # Without the CA the server is not trusted: one line, exit 2, nothing on stdout.
        out = ksecrets("seal", "--cert", f"{url}/v1/cert.pem", input=SECRET_YAML)
        assert out.returncode == 2 and out.stdout == b""
        assert "not trusted" in err_line(out) and "--cert-ca" in err_line(out)

        # A 404 names the URL and the status.
        out = ksecrets("seal", "--cert", f"{url}/nope.pem", "--cert-ca", str(ca), input=SECRET_YAML)
        assert out.returncode == 2 and "HTTP 404" in err_line(out)


def test_cert_url_query_and_userinfo_are_never_printed(tmp_path):
    seen: list = []
    with https_server(tmp_path, {}, seen) as (url, ca):
        host = url.split("//")[1]
        out = ksecrets(
            "seal", "--cert", f"https://user:pa55word@{host}/c.pem?token=t0ken", "--cert-ca", str(ca), input=SECRET_YAML
        )
    assert out.returncode == 2
    line = err_line(out)
    assert "pa55word" not in line and "t0ken" not in line and "HTTP 404" in line
    # userinfo went as basic auth, the query as it was
    ((path, headers),) = seen
    assert path == "/c.pem?token=t0ken"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"user:pa55word").decode()


def test_plain_http_and_other_schemes_are_refused(cert_file):
    out = ksecrets("seal", "--cert", "http://127.0.0.1:9/cert.pem", input=SECRET_YAML)
    assert out.returncode == 2 and "plain http is refused" in err_line(out)
    out = ksecrets("seal", "--cert", "ftp://127.0.0.1/cert.pem", input=SECRET_YAML)
    assert out.returncode == 2 and "unsupported URL scheme" in err_line(out)
    out = ksecrets("seal", "--cert", cert_file.as_uri(), input=SECRET_YAML)
    assert out.returncode == 0, out.stderr


def test_bad_ca_file_is_one_line(tmp_path, cert_file):
    bad = tmp_path / "bad-ca.pem"
    bad.write_text("not a certificate\n")
    with https_server(tmp_path, {}) as (url, _):
        out = ksecrets("seal", "--cert", f"{url}/c.pem", "--cert-ca", str(bad), input=SECRET_YAML)
    assert out.returncode == 2 and err_line(out) == f"ksecrets: {bad}: not a PEM CA certificate"


# --- -f, -w, --raw, --version -----------------------------------------------------------------


def test_secret_file_and_sealed_secret_file(tmp_path, cert_file, vector_key):
    src = tmp_path / "secret.yaml"
    src.write_text(SECRET_YAML)
    out_yaml = tmp_path / "sealed.yaml"
    res = ksecrets("seal", "--cert", str(cert_file), "-f", str(src), "-w", str(out_yaml))
    assert res.returncode == 0 and res.stdout == b"", res.stderr
    text = out_yaml.read_text()
    assert not text.lstrip().startswith("{")  # .yaml → YAML, as kubeseal picks by extension
    obj = yaml.safe_load(text)
    assert _opens(obj["spec"]["encryptedData"]["TOKEN"], vector_key, b"team/app") == b"s3cr3t-value-123"

    out_json = tmp_path / "sealed.json"
    res = ksecrets("seal", "--cert", str(cert_file), "--secret-file", str(src), "--sealed-secret-file", str(out_json))
    assert res.returncode == 0
    assert json.loads(out_json.read_text())["kind"] == "SealedSecret"
    # -o wins over the extension.
    res = ksecrets("seal", "--cert", str(cert_file), "-f", str(src), "-w", str(out_yaml), "-o", "json")
    assert res.returncode == 0 and out_yaml.read_text().lstrip().startswith("{")


def test_sealed_secret_file_is_left_alone_on_failure(tmp_path, cert_file):
    target = tmp_path / "sealed.yaml"
    target.write_text("previous: content\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: app, namespace: team}\ndata: {K: '%%%'}\n")
    res = ksecrets("seal", "--cert", str(cert_file), "-f", str(bad), "-w", str(target))
    assert res.returncode == 2 and err_line(res).startswith(f"ksecrets: {bad}:")
    assert target.read_text() == "previous: content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "cert.pem", "sealed.yaml"]  # no temp file left
    missing = ksecrets("seal", "--cert", str(cert_file), "-f", str(tmp_path / "nope.yaml"), "-w", str(target))
    assert missing.returncode == 2 and "not found" in err_line(missing)
    assert target.read_text() == "previous: content\n"


def test_raw_reads_the_value_from_stdin(cert_file, vector_key, tmp_path):
    res = ksecrets(
        "seal", "--raw", "--cert", str(cert_file), "--namespace", "team", "--name", "app", input=b"raw-value\x00\xff"
    )
    assert res.returncode == 0, res.stderr
    assert _opens(res.stdout.decode(), vector_key, b"team/app") == b"raw-value\x00\xff"
    res = ksecrets("seal", "--raw", "--cert", str(cert_file), "--scope", "cluster-wide", input=b"v")
    assert res.returncode == 0 and _opens(res.stdout.decode(), vector_key, b"") == b"v"
    out = tmp_path / "value.txt"
    res = ksecrets(
        "seal", "--raw", "--cert", str(cert_file), "-n", "team", "--name", "app", "-w", str(out), input=b"v2"
    )
    assert res.returncode == 0 and res.stdout == b""
    assert _opens(out.read_text(), vector_key, b"team/app") == b"v2"
    res = ksecrets("seal", "--raw", "--cert", str(cert_file), "--name", "app", input=b"v")
    assert res.returncode == 2 and "needs --namespace" in err_line(res)


def test_version():
    from ksecrets import __version__

    for argv in (("seal", "--version"), ("--version",)):
        res = ksecrets(*argv)
        assert res.returncode == 0 and __version__ in res.stdout.decode(), argv
    assert ksecrets("seal", "--version").stdout.decode() == f"ksecrets version: {__version__}\n"


# --- SEALED_SECRETS_* ---------------------------------------------------------------------------


def test_sealed_secrets_environment_variables(tmp_path, cert_file, other_cert_file, vector_key):
    src = tmp_path / "secret.yaml"
    src.write_text(SECRET_YAML)
    dest = tmp_path / "out.json"
    env = clean_env(
        SEALED_SECRETS_CERT=str(cert_file),
        SEALED_SECRETS_SECRET_FILE=str(src),
        SEALED_SECRETS_SEALED_SECRET_FILE=str(dest),
        SEALED_SECRETS_FORMAT="yaml",
        SEALED_SECRETS_SCOPE="namespace-wide",
        SEALED_SECRETS_CONTROLLER_NAMESPACE="sealed-secrets",
        SEALED_SECRETS_CONTROLLER_NAME="sealed-secrets",
    )
    res = ksecrets("seal", env=env)
    assert res.returncode == 0, res.stderr
    obj = yaml.safe_load(dest.read_text())
    assert not dest.read_text().lstrip().startswith("{")  # SEALED_SECRETS_FORMAT=yaml
    assert obj["metadata"]["annotations"]["sealedsecrets.bitnami.com/namespace-wide"] == "true"
    assert _opens(obj["spec"]["encryptedData"]["TOKEN"], vector_key, b"team") == b"s3cr3t-value-123"

    # A flag on the command line beats its variable (kubeseal: env only fills flags not given).
    res = ksecrets("seal", "--cert", str(other_cert_file), "--scope", "strict", "-o", "json", env=env)
    assert res.returncode == 0, res.stderr
    obj = json.loads(dest.read_text())
    with pytest.raises(crypto.DecryptError):
        _opens(obj["spec"]["encryptedData"]["TOKEN"], vector_key, b"team/app")

    # SEALED_SECRETS_RAW, SEALED_SECRETS_NAME, SEALED_SECRETS_NAMESPACE.
    env = clean_env(
        SEALED_SECRETS_CERT=str(cert_file),
        SEALED_SECRETS_RAW="true",
        SEALED_SECRETS_NAME="app",
        SEALED_SECRETS_NAMESPACE="team",
    )
    res = ksecrets("seal", input=b"from-env", env=env)
    assert res.returncode == 0 and _opens(res.stdout.decode(), vector_key, b"team/app") == b"from-env"

    bad = ksecrets(
        "seal", input=SECRET_YAML, env=clean_env(SEALED_SECRETS_CERT=str(cert_file), SEALED_SECRETS_SCOPE="galaxy-wide")
    )
    assert bad.returncode == 2 and "SEALED_SECRETS_SCOPE" in err_line(bad)
    bad = ksecrets(
        "seal",
        input=SECRET_YAML,
        env=clean_env(SEALED_SECRETS_CERT=str(cert_file), SEALED_SECRETS_ALLOW_EMPTY_DATA="maybe"),
    )
    assert bad.returncode == 2 and "SEALED_SECRETS_ALLOW_EMPTY_DATA" in err_line(bad)


def test_stack_mode_ignores_the_kubeseal_variables(repo_copy, cert_file):
    """`--stack` seals with the stack's certificate; SEALED_SECRETS_CERT must not turn into --cert."""
    env = clean_env(SEALED_SECRETS_CERT=str(cert_file), SEALED_SECRETS_NAME="other")
    res = ksecrets(
        "seal",
        "--stack",
        "staging",
        "--name",
        "my-app-secrets",
        "--from-literal",
        "API_KEY=abcdefgh123",
        cwd=repo_copy,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert "my-app/my-app-secrets" in res.stderr.decode()


# --- the certificate reader ---------------------------------------------------------------------


def _all_certs(other_pair, vectors):
    from ksecrets.sealing.keys import cert_pem

    root = Path(__file__).resolve().parents[2]
    out = [p.read_bytes() for p in sorted((root / "certs").glob("*.pem"))]
    out.append(vectors["certificate_pem"].encode())
    out.append(cert_pem(other_pair[1]))
    return out


def test_fast_certificate_reader_agrees_with_x509_and_openssl(other_pair, vectors):
    from ksecrets.sealing.certs import _fast_parse, _full_parse, parse_certificate

    now = dt.datetime.now(dt.timezone.utc)
    openssl = shutil.which("openssl")
    for pem in _all_certs(other_pair, vectors):
        key, not_before, not_after, first = _fast_parse(pem)
        full = _full_parse(pem, "x", now=now, allow_expired=True)
        fast = parse_certificate(pem, "x", allow_expired=True)
        assert (fast.fingerprint, fast.not_after, fast.pem) == (full.fingerprint, full.not_after, full.pem)
        assert key.public_numbers() == full.public_key.public_numbers()
        if openssl:
            text = subprocess.run(
                [openssl, "x509", "-noout", "-startdate", "-enddate", "-modulus"],
                input=pem,
                capture_output=True,
                check=True,
            ).stdout.decode()
            fields = dict(line.split("=", 1) for line in text.splitlines())
            assert int(fields["Modulus"], 16) == key.public_numbers().n
            assert (
                dt.datetime.strptime(fields["notAfter"], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.timezone.utc)
                == not_after
            )
            assert (
                dt.datetime.strptime(fields["notBefore"], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.timezone.utc)
                == not_before
                == fast.not_before
            )


def test_unusual_certificates_fall_back_to_the_full_parser(tmp_path):
    """An EC certificate and garbage inside a PEM block still get the full parser's wording."""
    from ksecrets.errors import KsecretsError
    from ksecrets.sealing.certs import parse_certificate

    ca, server, _ = make_ca_and_server(tmp_path)
    with pytest.raises(KsecretsError, match="expected an RSA public key, found ECDSA"):
        parse_certificate(server.read_bytes(), "ec.pem")
    with pytest.raises(KsecretsError, match="not a valid PEM certificate"):
        parse_certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "junk.pem")


# --- fetch through the API server's service proxy (the client half) -----------------------------


def test_fetch_cert_via_api_server_follows_kubeseals_requests(tmp_path, vectors):
    """The paths and headers kubeseal's openCertCluster sends. Against the real API server and
    controller this is still to be proven by the end-to-end suite."""
    from ksecrets.sealing.certfetch import fetch_cert_via_api_server

    service = {"spec": {"ports": [{"name": "http", "port": 8080}]}}
    routes = {
        "/api/v1/namespaces/kube-system/services/sealed-secrets-controller": json.dumps(service).encode(),
        "/api/v1/namespaces/kube-system/services/http:sealed-secrets-controller:http/proxy/v1/cert.pem": vectors[
            "certificate_pem"
        ].encode(),
    }
    seen: list = []
    with https_server(tmp_path, routes, seen) as (url, ca):
        pem = fetch_cert_via_api_server(url, ca_file=str(ca), token="tok-123")
    assert pem == vectors["certificate_pem"].encode()
    assert [p for p, _ in seen] == list(routes)
    assert all(h.get("Authorization") == "Bearer tok-123" for _, h in seen)
