"""Sealing certificates from a URL, as `kubeseal --cert https://...` reads them, and the
controller's certificate through the API server's service proxy (`kubeseal --fetch-cert`).

Only `https://` (verified against the system CAs or `--cert-ca`) and `file://` are accepted: a
certificate fetched over plain http could be swapped on the way, and everything sealed with it
would be readable by whoever swapped it.
"""

from __future__ import annotations

import urllib.parse

from ksecrets.errors import KsecretsError
from ksecrets.fileio import read_bytes

MAX_CERT_BYTES = 1 << 20
# The whole fetch (name lookup, connection, TLS, redirects, headers and body) ends within this
# many seconds: a server that answers one byte a second cannot hold `seal` for minutes.
TIMEOUT = 30.0
MAX_REDIRECTS = 5


def is_url(value: str) -> bool:
    """True for `scheme://...` (kubeseal's rule: a string with a URL scheme is not a file name)."""
    scheme = urllib.parse.urlsplit(value).scheme
    return len(scheme) > 1  # a one-letter scheme is a Windows drive letter


def _context(ca_file: str | None):
    import ssl

    ctx = ssl.create_default_context()
    if ca_file:
        data = read_bytes(ca_file, "CA file")
        try:
            ctx.load_verify_locations(cadata=data.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError):
            raise KsecretsError(f"{ca_file}: not a PEM CA certificate") from None
    return ctx


def _origin(url: str) -> tuple[str, str, int]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def _opener(ctx, *, shown: str, origin: tuple[str, str, int], credentials: bool, sockets: list):
    """urllib's opener, with redirects that never leave https, never take credentials (a header
    or a client certificate) to another origin, and at most MAX_REDIRECTS of them; every TLS
    socket is put in `sockets` (for the deadline to shut down)."""
    import http.client
    import urllib.request

    class Connection(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            sockets.append(self.sock)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(Connection, req, context=ctx)

    class Redirects(urllib.request.HTTPRedirectHandler):
        max_redirections = MAX_REDIRECTS

        def redirect_request(self, req, fp, code, msg, headers, newurl):
            target = _origin(newurl)
            if target[0] != "https":
                raise KsecretsError(
                    f"{shown}: redirected (HTTP {code}) to {target[0] or 'a relative'}:// {_redact(newurl)}; "
                    "refusing to leave https (the certificate, and any credentials, would travel in the clear)"
                )
            if credentials and target != origin:
                raise KsecretsError(
                    f"{shown}: redirected (HTTP {code}) to another origin, {_redact(newurl)}; refusing to send "
                    "the URL's credentials there (fetch the certificate from that URL directly if you trust it)"
                )
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(Https(context=ctx), Redirects())


def _get(
    url: str, *, ca_file: str | None, headers: dict[str, str] | None = None, client_cert: tuple[str, str] | None = None
) -> bytes:
    import http.client
    import socket
    import ssl
    import threading
    import urllib.error
    import urllib.request  # only when a URL is fetched: it costs as much as the rest of `seal`

    ctx = _context(ca_file)
    if client_cert:
        ctx.load_cert_chain(*client_cert)
    request = urllib.request.Request(url, headers={"Accept": "application/x-pem-file, */*", **(headers or {})})
    shown = _redact(url)
    sockets: list = []
    opener = _opener(
        ctx,
        shown=shown,
        origin=_origin(url),
        credentials=bool(client_cert or any(k.lower() == "authorization" for k in headers or {})),
        sockets=sockets,
    )
    outcome: dict[str, object] = {}

    def fetch() -> None:
        try:
            with opener.open(request, timeout=TIMEOUT) as resp:
                outcome["data"] = resp.read(MAX_CERT_BYTES + 1)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    # The deadline covers everything, however slowly each byte comes: the fetch runs in a thread
    # that is given up (its sockets shut down) when the time is over.
    worker = threading.Thread(target=fetch, name="ksecrets-cert-fetch", daemon=True)
    worker.start()
    worker.join(TIMEOUT)
    if worker.is_alive():
        for sock in list(sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise KsecretsError(f"{shown}: cannot fetch: no complete answer within {TIMEOUT:g} seconds")
    exc = outcome.get("error")
    if isinstance(exc, KsecretsError):
        raise KsecretsError(str(exc)) from None
    if isinstance(exc, urllib.error.HTTPError):
        raise KsecretsError(f"{shown}: cannot fetch: HTTP {exc.code} {exc.reason}") from None
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise KsecretsError(
                f"{shown}: TLS certificate not trusted ({reason.verify_message}); "
                "pass the server's CA with --cert-ca FILE"
            ) from None
        raise KsecretsError(f"{shown}: cannot fetch: {getattr(reason, 'strerror', None) or reason}") from None
    if isinstance(exc, (TimeoutError, OSError)):
        raise KsecretsError(f"{shown}: cannot fetch: {exc.strerror or type(exc).__name__}") from None
    if isinstance(exc, http.client.HTTPException):
        raise KsecretsError(f"{shown}: cannot fetch: {type(exc).__name__}") from None
    if isinstance(exc, BaseException):
        raise exc
    data = outcome["data"]
    assert isinstance(data, bytes)
    if len(data) > MAX_CERT_BYTES:
        raise KsecretsError(f"{shown}: response larger than {MAX_CERT_BYTES} bytes; not a certificate")
    return data


def _redact(url: str) -> str:
    """The URL without user:password@ or a query string (either may carry a token)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def read_cert_source(value: str, *, ca_file: str | None = None) -> tuple[bytes, str]:
    """(PEM bytes, a name for messages) of `--cert`: a file, a `file://` URL or an `https://` URL."""
    if not is_url(value):
        return read_bytes(value, "certificate file"), value
    parts = urllib.parse.urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = urllib.parse.unquote(parts.path)
        return read_bytes(path, "certificate file"), path
    if scheme == "https":
        headers = {}
        if parts.username is not None:  # user:password@ as HTTP basic auth, as Go's http client does
            import base64

            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
            value = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
        return _get(value, ca_file=ca_file, headers=headers), _redact(value)
    if scheme == "http":
        raise KsecretsError(
            f"{_redact(value)}: plain http is refused for a sealing certificate (it could be "
            "swapped in transit); serve it over https or download it and check its fingerprint"
        )
    raise KsecretsError(f"{_redact(value)}: unsupported URL scheme {scheme!r} (use a file, file:// or https://)")


def fetch_cert_via_api_server(
    server: str,
    *,
    namespace: str = "kube-system",
    name: str = "sealed-secrets-controller",
    ca_file: str | None = None,
    token: str | None = None,
    client_cert: tuple[str, str] | None = None,
) -> bytes:
    """The controller's certificate through the API server's service proxy, as kubeseal fetches it:
    the Service's first port name, then GET `.../services/http:<name>:<port>/proxy/v1/cert.pem`.

    `server` is the API server URL (a kubeconfig's cluster.server), authenticated with a bearer
    `token` or a client certificate (cert file, key file). Not wired to the command line yet: the
    end-to-end suite's real API server is where it gets proven.
    """
    import json

    base = server.rstrip("/")
    if urllib.parse.urlsplit(base).scheme != "https":
        raise KsecretsError(f"{_redact(base)}: the API server must be reached over https")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ns, svc = urllib.parse.quote(namespace, safe=""), urllib.parse.quote(name, safe="")
    raw = _get(
        f"{base}/api/v1/namespaces/{ns}/services/{svc}", ca_file=ca_file, headers=headers, client_cert=client_cert
    )
    try:
        port = json.loads(raw)["spec"]["ports"][0].get("name", "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise KsecretsError(
            f"{namespace}/{name}: the Service has no ports; is it the sealed-secrets controller?"
        ) from None
    target = urllib.parse.quote(f"http:{name}:{port}", safe=":")
    return _get(
        f"{base}/api/v1/namespaces/{ns}/services/{target}/proxy/v1/cert.pem",
        ca_file=ca_file,
        headers=headers,
        client_cert=client_cert,
    )
