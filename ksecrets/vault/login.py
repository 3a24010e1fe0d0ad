"""A Vault login for the in-cluster programs (the rotator, the snapshot CronJob): `VAULT_TOKEN`
when set (a workstation run), else the Kubernetes auth method with the pod's projected
service-account token, all read from the environment (never from flags, which `ps` shows):

    VAULT_ADDR, VAULT_CACERT, VAULT_SKIP_VERIFY, VAULT_NAMESPACE   as for the Vault CLI
    VAULT_TOKEN                       when set, used as is
    KSECRETS_VAULT_ROLE               otherwise: log in with the Kubernetes auth method as this role,
    KSECRETS_VAULT_AUTH_MOUNT         at this auth mount (default kubernetes),
    KSECRETS_VAULT_TOKEN_FILE         with this projected service-account token
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Mapping

from ksecrets import validators
from ksecrets.errors import KsecretsError
from ksecrets.vault import client as vc

DEFAULT_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
log = logging.getLogger("ksecrets.vault")


def check_names(*items: tuple[str, str, Callable[[str], str | None]]) -> None:
    """Names that go into Vault request paths, as (where, value, `ksecrets.validators` check)."""
    for where, value, check in items:
        problem = check(value)
        if problem:
            raise KsecretsError(f"{where}: {problem}")


def vault_login(env: Mapping[str, str]) -> vc.VaultClient:
    """A Vault client: `VAULT_TOKEN` when set, else a Kubernetes-auth login with the pod's token."""
    if (env.get("VAULT_TOKEN") or "").strip():
        return vc.make_client(env=env)
    role = (env.get("KSECRETS_VAULT_ROLE") or "").strip()
    if not role:
        raise KsecretsError("no Vault credentials: set VAULT_TOKEN, or KSECRETS_VAULT_ROLE for Kubernetes auth")
    mount = (env.get("KSECRETS_VAULT_AUTH_MOUNT") or "kubernetes").strip().strip("/")
    check_names(
        ("KSECRETS_VAULT_ROLE", role, validators.vault_name),
        ("KSECRETS_VAULT_AUTH_MOUNT", mount, validators.vault_mount),
    )
    token_file = Path(env.get("KSECRETS_VAULT_TOKEN_FILE") or DEFAULT_TOKEN_FILE)
    try:
        jwt = token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise KsecretsError(f"{token_file}: cannot read the service-account token ({exc.strerror})") from None
    if not jwt:
        raise KsecretsError(f"{token_file}: the service-account token is empty")
    address = vc.resolve_address(None, env)
    # Same TLS rules as make_client (VAULT_CACERT, VAULT_SKIP_VERIFY); the token comes from the login.
    client = vc.new_client(
        address,
        token=None,
        verify=vc.tls_verify(env),
        namespace=(env.get("VAULT_NAMESPACE") or None),
        timeout=vc.client_timeout(env),
    )
    with vc.vault_errors(client, f"auth/{mount}/login"):
        try:
            client.auth.kubernetes.login(role=role, jwt=jwt, mount_point=mount)
        except (KeyError, TypeError):  # a 200 without `auth.client_token`: not Vault's login answer
            raise vc.VaultError(
                address,
                f"auth/{mount}/login",
                "the answer is not Vault's (no auth.client_token): is this address a Vault server?",
            ) from None
    log.info("logged in to Vault %s as role %s (auth/%s)", address, role, mount)
    return client
