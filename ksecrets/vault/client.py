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
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import hvac
import hvac.exceptions as hx
import requests

from ksecrets.config.model import VaultConfig
from ksecrets.errors import KsecretsError

TOKEN_FILE = "~/.vault-token"
DEFAULT_TIMEOUT = 30


class VaultError(KsecretsError):
    """A Vault call failed. `address`, `path` and `reason` are kept for callers and tests."""

    def __init__(self, address: str, path: str, reason: str) -> None:
        self.address = address
        self.path = path
        self.reason = reason
        super().__init__(f"Vault {address}: {path}: {reason}")


def resolve_address(cfg: VaultConfig | None = None, env: Mapping[str, str] | None = None) -> str:
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


def make_client(cfg: VaultConfig | None = None, *, env: Mapping[str, str] | None = None,
                token_file: str | os.PathLike[str] | None = None,
                timeout: int = DEFAULT_TIMEOUT) -> hvac.Client:
    """An hvac client for the stack's Vault (or `VAULT_ADDR`), authenticated by token.

    No request is made here; the first call reports an unreachable or sealed Vault.
    """
    env = os.environ if env is None else env
    address = resolve_address(cfg, env)
    if not address.startswith(("http://", "https://")):
        raise KsecretsError(f"Vault address {address!r} must start with http:// or https://")
    token = read_token(env, token_file)
    namespace = (env.get("VAULT_NAMESPACE") or "").strip() or None
    return hvac.Client(url=address, token=token, verify=tls_verify(env), namespace=namespace, timeout=timeout)


def address_of(client: hvac.Client) -> str:
    return str(getattr(client, "url", "") or client.adapter.base_uri).rstrip("/")


def _sealed_status(client: hvac.Client) -> str | None:
    """Ask `sys/health` (unauthenticated) why Vault answered 503: sealed, standby or unknown."""
    try:
        response = client.adapter.get("/v1/sys/health", raise_exception=False)
    except requests.RequestException:
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


def describe(exc: BaseException, client: hvac.Client, path: str, *,
             redact: Iterable[str] = ()) -> KsecretsError:
    """The one-line error for an exception raised while calling Vault at `path`."""
    address = address_of(client)
    if isinstance(exc, requests.exceptions.SSLError):
        return VaultError(address, path, "TLS verification failed (set VAULT_CACERT to the CA that signed Vault's certificate)")
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
    data = response.get("data") if isinstance(response, dict) else None
    return data if isinstance(data, dict) else None
