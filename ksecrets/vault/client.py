"""An hvac client set up the way the Vault CLI sets itself up, and Vault faults as one line.

Address: `VAULT_ADDR`, else the stack's Vault address. Token: `VAULT_TOKEN`, else the CLI's token
file `~/.vault-token` (what `vault login` writes); never a command-line argument, which would
land in shell history and `ps`. `VAULT_CACERT`, `VAULT_SKIP_VERIFY` and `VAULT_NAMESPACE` mean
what they mean to the CLI.

Every call into Vault goes through `vault_errors(client, path)`, which turns hvac and requests
exceptions into a `KsecretsError` of one line naming the address and the path:

    Vault https://vault.example:8200: secret/data/my-app: permission denied (403)

Vault's own error text is passed through only for 400 responses (it explains a bad request and
never echoes the data we sent), cut to one line and checked against `redact`.

The HTTP calls the workflows make go through this port too: `read_data` (a GET whose answer must
carry Vault's `data` map), `send_write` (a write whose lost answer is reported, not raised) and
`confirm_write` (a write counts only once reading back shows it). `VaultClient` is the type the
workflows and jobs annotate with: nothing above `ksecrets.vault` imports hvac or requests.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, TypeAlias

import hvac
import hvac.exceptions as hx
import requests

from ksecrets.errors import KsecretsError

VaultClient: TypeAlias = hvac.Client
"""A client of this port (`make_client`, `login`): what the use cases and the jobs hold."""

TOKEN_FILE = "~/.vault-token"
DEFAULT_TIMEOUT = 30
TIMEOUT_ENV = "VAULT_CLIENT_TIMEOUT"  # the Vault CLI's variable: seconds, or a duration like 30s, 2m


class VaultError(KsecretsError):
    """A Vault call failed or was refused, and nothing changed: exit 1 in every command.
    `address`, `path` and `reason` are kept for callers and tests."""

    exit_code = 1

    def __init__(self, address: str, path: str, reason: str) -> None:
        self.address = address
        self.path = path
        self.reason = reason
        super().__init__(f"Vault {address}: {path}: {reason}")


class WriteOutcomeUnknown(VaultError):
    """A write was sent and its answer lost, and reading back could not tell: exit 3."""

    exit_code = 3


class NotVaultAnswer(hx.VaultError):
    """An answer that Vault's HTTP API never gives (HTML, non-JSON, JSON of another shape)."""


class TotalTimeout(requests.exceptions.ReadTimeout):
    """No complete answer within the client timeout (a server that trickles bytes)."""


class StrictAdapter(hvac.adapters.JSONAdapter):
    """hvac's JSON adapter, minus its leniency: Vault answers a success with JSON (or 204 and no
    body) and a 404 with a JSON `errors` list. Anything else is not Vault (a login page, a proxy,
    another service on that port) and must not be read as "done" or as "not there"."""

    def request(self, method, url, headers=None, raise_exception=True, **kwargs):
        response = hvac.adapters.RawAdapter.request(self, method, url, headers=headers, raise_exception=False, **kwargs)
        status = response.status_code
        if status == 204 or (200 <= status < 300 and not response.content):
            return response
        body = None
        if 200 <= status < 300 or status == 404:
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                kind = (response.headers.get("Content-Type") or "no content type").split(";")[0].strip()
                raise NotVaultAnswer(f"HTTP {status} with {kind}")
        if not response.ok and raise_exception and not self.ignore_exceptions:
            self._raise_for_error(method, url, response)
        return body if 200 <= status < 300 else response


class DeadlineSession(requests.Session):
    """A session whose requests end within `total` seconds, whatever the server does.

    `requests`' own timeout bounds each socket read, so a server that sends one byte a second
    would hold a command for ever; here the request runs in a worker thread and the caller stops
    waiting at the deadline (the thread is a daemon and ends with the connection)."""

    def __init__(self, total: float) -> None:
        super().__init__()
        self.total = total

    def request(self, method, url, *args, **kwargs):
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["response"] = requests.Session.request(self, method, url, *args, **kwargs)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=work, name="vault-request", daemon=True)
        worker.start()
        worker.join(self.total)
        if worker.is_alive():
            raise TotalTimeout(f"no complete answer within {self.total:g}s")
        if "error" in box:
            raise box["error"]
        return box["response"]


def client_timeout(env: Mapping[str, str] | None = None) -> float:
    """`VAULT_CLIENT_TIMEOUT` as the Vault CLI reads it (seconds, or `30s`, `2m`); default 30 s."""
    env = os.environ if env is None else env
    raw = (env.get(TIMEOUT_ENV) or "").strip()
    if not raw:
        return float(DEFAULT_TIMEOUT)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", raw)
    if not m:
        raise KsecretsError(f"{TIMEOUT_ENV}: {raw!r} is not a duration (seconds, or e.g. 30s, 2m)")
    value = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    if value <= 0:
        raise KsecretsError(f"{TIMEOUT_ENV}: must be more than 0")
    return value


def new_client(
    address: str, *, token: str | None, verify: bool | str, namespace: str | None, timeout: float
) -> hvac.Client:
    """An hvac client whose every request ends within `timeout` and whose answers must be Vault's."""
    session = DeadlineSession(timeout)
    session.verify = verify  # hvac takes a given session's `verify` over its own argument
    return hvac.Client(
        url=address,
        token=token,
        verify=verify,
        namespace=namespace,
        timeout=timeout,
        session=session,
        adapter=StrictAdapter,
    )


def answer_was_lost(exc: BaseException) -> bool:
    """True when a request may have reached Vault but its answer did not reach us: the write may
    have happened. False for faults before sending (refused, DNS, TLS, connect timeout) and for
    answers Vault gave."""
    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)):
        return False
    if isinstance(exc, (requests.exceptions.ReadTimeout, requests.exceptions.ChunkedEncodingError)):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = repr(exc.args[0] if exc.args else exc)
        return not any(
            w in text
            for w in (
                "NewConnectionError",
                "NameResolutionError",
                "Failed to resolve",
                "Connection refused",
                "ConnectTimeout",
            )
        )
    return False


class Addressed(Protocol):
    """What the client needs of a stack's Vault config (`ksecrets.config.model.VaultConfig`): the
    port does not import the stack files."""

    @property
    def service_address(self) -> str: ...


def resolve_address(cfg: Addressed | None = None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    address = (env.get("VAULT_ADDR") or "").strip()
    if address:
        return address.rstrip("/")
    if cfg is not None:
        return cfg.service_address.rstrip("/")
    raise KsecretsError("no Vault address: set VAULT_ADDR or vault.address in the stack file")


def read_token(env: Mapping[str, str] | None = None, token_file: str | os.PathLike[str] | None = None) -> str:
    """`VAULT_TOKEN`, else the token file the Vault CLI's default token helper keeps."""
    env = os.environ if env is None else env
    token = (env.get("VAULT_TOKEN") or "").strip()
    if token:
        return token
    path = Path(token_file) if token_file is not None else Path(os.path.expanduser(TOKEN_FILE))
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    except OSError as exc:
        raise KsecretsError(f"{path}: cannot read the Vault token file ({exc.strerror})") from None
    if not token:
        raise KsecretsError(f"no Vault token: set VAULT_TOKEN or run `vault login` (which writes {path})")
    return token


def tls_verify(env: Mapping[str, str]) -> bool | str:
    """What `requests` should verify against, as the Vault CLI reads it: VAULT_SKIP_VERIFY, VAULT_CACERT."""
    if (env.get("VAULT_SKIP_VERIFY") or "").strip().lower() in ("1", "true", "yes"):
        return False
    cacert = (env.get("VAULT_CACERT") or "").strip()
    if cacert:
        if not Path(cacert).is_file():
            raise KsecretsError(f"VAULT_CACERT: {cacert}: no such file")
        return cacert
    return True


def make_client(
    cfg: Addressed | None = None,
    *,
    env: Mapping[str, str] | None = None,
    token_file: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> hvac.Client:
    """An hvac client for the stack's Vault (or `VAULT_ADDR`), authenticated by token.

    No request is made here; the first call reports an unreachable or sealed Vault.
    """
    env = os.environ if env is None else env
    address = resolve_address(cfg, env)
    if not address.startswith(("http://", "https://")):
        raise KsecretsError(f"Vault address {address!r} must start with http:// or https://")
    token = read_token(env, token_file)
    namespace = (env.get("VAULT_NAMESPACE") or "").strip() or None
    return new_client(
        address,
        token=token,
        verify=tls_verify(env),
        namespace=namespace,
        timeout=timeout if timeout is not None else client_timeout(env),
    )


def address_of(client: hvac.Client) -> str:
    return str(getattr(client, "url", "") or client.adapter.base_uri).rstrip("/")


def _sealed_status(client: hvac.Client) -> str | None:
    """Ask `sys/health` (unauthenticated) why Vault answered 503: sealed, standby or unknown."""
    try:
        response = client.adapter.get("/v1/sys/health", raise_exception=False)
    except (requests.RequestException, hx.VaultError):
        return None
    # hvac's JSON adapter gives a dict for 200 and the raw response otherwise (503 when sealed).
    if isinstance(response, dict):
        data = response
    else:
        try:
            data = response.json()
        except ValueError:
            data = {}
    if not isinstance(data, dict):
        data = {}
    if data.get("initialized") is False:
        return "not initialised (run `vault operator init`)"
    if data.get("sealed") is True:
        return "sealed (unseal it: `vault operator unseal` on each pod)"
    return None


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _vault_text(exc: hx.VaultError) -> str:
    errors = exc.errors if isinstance(exc.errors, list) else ([exc.errors] if exc.errors else [])
    return _one_line("; ".join(str(e) for e in errors if e))


def describe(exc: BaseException, client: hvac.Client, path: str, *, redact: Iterable[str] = ()) -> VaultError:
    """The one-line error for an exception raised while calling Vault at `path`."""
    address = address_of(client)
    if isinstance(exc, NotVaultAnswer):
        return VaultError(address, path, f"the answer is not Vault's ({exc}): is this address a Vault server?")
    if isinstance(exc, TotalTimeout):
        return VaultError(address, path, f"unreachable (timed out: {exc}; {TIMEOUT_ENV} sets the limit)")
    if isinstance(exc, requests.exceptions.SSLError):
        return VaultError(
            address, path, "TLS verification failed (set VAULT_CACERT to the CA that signed Vault's certificate)"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return VaultError(address, path, "unreachable (timed out)")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return VaultError(address, path, "unreachable (connection failed; check VAULT_ADDR and that Vault is running)")
    if isinstance(exc, requests.RequestException):
        return VaultError(address, path, f"request failed ({type(exc).__name__})")
    if isinstance(exc, hx.Forbidden):
        return VaultError(address, path, "permission denied (403): the token's policies do not allow this")
    if isinstance(exc, hx.Unauthorized):
        return VaultError(address, path, "not authenticated (401): the token is missing, expired or revoked")
    if isinstance(exc, hx.InvalidPath):
        return VaultError(address, path, "no such path (404)")
    if isinstance(exc, hx.VaultNotInitialized):
        return VaultError(address, path, "Vault is not initialised (501): run `vault operator init`")
    if isinstance(exc, hx.VaultDown):
        status = _sealed_status(client)
        return VaultError(address, path, f"Vault is {status}" if status else "Vault is unavailable (503)")
    if isinstance(exc, hx.UnsupportedOperation):
        return VaultError(address, path, "unsupported operation (405): is the mount of the right type?")
    if isinstance(exc, hx.InvalidRequest):
        text = _vault_text(exc)
        for secret in redact:
            if secret and secret in text:
                text = "the request was rejected"
                break
        return VaultError(address, path, f"bad request (400): {text}" if text else "bad request (400)")
    if isinstance(exc, hx.RateLimitExceeded):
        return VaultError(address, path, "rate limited (429)")
    if isinstance(exc, hx.VaultError):
        code = {hx.InternalServerError: 500, hx.BadGateway: 502}.get(type(exc))
        return VaultError(address, path, f"Vault error ({code or type(exc).__name__})")
    return VaultError(address, path, f"unexpected error ({type(exc).__name__})")


@contextlib.contextmanager
def vault_errors(client: hvac.Client, path: str, *, redact: Iterable[str] = ()) -> Iterator[None]:
    """Run a block of hvac calls; any Vault or network fault leaves as a one-line KsecretsError."""
    try:
        yield
    except KsecretsError:
        raise
    except (hx.VaultError, requests.RequestException) as exc:
        raise describe(exc, client, path, redact=redact) from None


def mount_info(client: hvac.Client, path: str) -> dict | None:
    """The mount serving `path`, as the Vault CLI's kv preflight reads it.

    `GET /v1/sys/internal/ui/mounts/<path>` answers with the mount's `path`, `type` and `options`
    (kv's `version`). Vault answers 403 both for a denied path and for a path no mount serves
    (so mounts cannot be enumerated); both give None here.
    """
    try:
        response = client.adapter.get(f"/v1/sys/internal/ui/mounts/{path}")
    except (hx.Forbidden, hx.InvalidPath):
        return None
    except (hx.VaultError, requests.RequestException) as exc:
        raise describe(exc, client, path) from None
    return _data_of(client, path, response)


def _data_of(client: hvac.Client, path: str, response: Any) -> dict[str, Any]:
    """The `data` map of a read's answer. An answer without it is not Vault's (a proxy, a login
    page): reading it as "not there yet" would make a caller write to an impostor."""
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(data, dict):
        raise VaultError(
            address_of(client),
            path,
            "the answer is not Vault's (JSON without a `data` map): is this address a Vault server?",
        )
    return data


def read_data(client: hvac.Client, path: str) -> dict[str, Any] | None:
    """GET /v1/<path> → the answer's `data`, None on 404; any other fault is a one-line VaultError."""
    with vault_errors(client, path):
        try:
            response = client.adapter.get(f"/v1/{path}")
        except hx.InvalidPath:
            return None
    return _data_of(client, path, response)


def send_write(
    client: hvac.Client, method: str, path: str, body: Mapping[str, Any], *, redact: Iterable[str] = ()
) -> str | None:
    """Send one write. Returns None, or why its answer was lost (it may have landed:
    `confirm_write` decides). Values in `redact` never reach an error message."""
    with vault_errors(client, path, redact=redact):
        try:
            client.adapter.request(method, f"/v1/{path}", json=dict(body))
        except requests.RequestException as exc:
            if answer_was_lost(exc):
                return describe(exc, client, path).reason
            raise
    return None


def confirm_write(
    client: hvac.Client, path: str, read_path: str, holds: Callable[[], bool], lost: str | None, *, retry: str
) -> None:
    """Read a write back before it counts: `holds()` must say Vault now holds what was written.
    `lost` is `send_write`'s answer; when the answer was lost and the read fails too, the outcome
    is unknown (exit 3) and `retry` says what to do (the caller knows whether it is idempotent)."""
    try:
        ok = holds()
    except KsecretsError as exc:
        if lost is None:
            raise
        raise WriteOutcomeUnknown(
            address_of(client),
            path,
            f"the write got no answer ({lost}) and reading {read_path} back failed "
            f"({getattr(exc, 'reason', exc)}): maybe written; check with `vault read {read_path}` or {retry}",
        ) from None
    if not ok:
        why = f"the write got no answer ({lost}) and" if lost else "written, but"
        raise VaultError(
            address_of(client),
            path,
            f"{why} reading {read_path} back does not show it: not a Vault server, or changed concurrently",
        )
