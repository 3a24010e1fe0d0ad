"""A small in-memory Vault behind `responses`, answering as the documented HTTP API does.

Only the endpoints ksecrets uses, with the response shapes of the API docs
(developer.hashicorp.com/vault/api-docs): kv-v2 read/write with check-and-set (the shared store
`tests/fakes/kv2.py`, which the rotation suite's fake uses too), sys/mounts,
sys/auth, sys/policies/acl, sys/audit, the kubernetes auth config and roles, the database
engine's config and roles, sys/internal/ui/mounts (the CLI's kv preflight) and sys/health.

Every request is logged as (method, path, json body or None), so tests assert the exact
requests; `writes()` is the non-GET part of the log.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import responses

from tests.fakes.kv2 import KV2

ADDR = "http://vault.test:8200"


class FakeVault:
    def __init__(self, rsps: responses.RequestsMock, addr: str = ADDR, token: str = "test-token") -> None:
        self.addr = addr
        self.token = token
        self.log: list[tuple[str, str, Any]] = []
        self.mounts: dict[str, dict[str, Any]] = {
            "sys": {"type": "system", "options": None},
            "cubbyhole": {"type": "cubbyhole", "options": None},
            "identity": {"type": "identity", "options": None},
        }
        self.auth: dict[str, dict[str, Any]] = {"token": {"type": "token", "options": None}}
        self.policies: dict[str, str] = {"default": "# default policy\n", "root": ""}
        self.audit: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, Any]] = {}  # auth/<m>/config, auth/<m>/role/<r>, <db>/roles/<r>
        self.kv1: dict[tuple[str, str], list[dict[str, Any]]] = {}  # kv-v1 mounts: (mount, key) → writes
        self.kv2: dict[str, KV2] = {}  # kv-v2 mounts: mount → its store
        self.sealed = False
        self.deny: set[str] = set()  # paths answering 403
        self.fail_cas_once: set[tuple[str, str]] = set()  # simulate a concurrent writer
        rsps.add_callback(responses.GET, re.compile(re.escape(addr) + r"/v1/.*"), callback=self._handle)
        for method in (responses.POST, responses.PUT, responses.DELETE):
            rsps.add_callback(method, re.compile(re.escape(addr) + r"/v1/.*"), callback=self._handle)

    # -- helpers for tests ---------------------------------------------------------------------
    def writes(self) -> list[tuple[str, str, Any]]:
        return [entry for entry in self.log if entry[0] != "GET"]

    def enable_kv2(self, mount: str = "secret") -> None:
        self.mounts[mount] = {"type": "kv", "options": {"version": "2"}}

    def store(self, mount: str) -> KV2:
        """The kv-v2 store of a mount (created on first use, as the mount's data is)."""
        return self.kv2.setdefault(mount, KV2())

    def put_kv(self, mount: str, path: str, data: dict[str, Any]) -> int:
        return self.store(mount).seed(path, data)

    def kv_latest(self, mount: str, path: str) -> dict[str, Any] | None:
        return self.store(mount).latest(path)

    def delete_latest(self, mount: str, path: str) -> None:
        self.store(mount).delete_latest(path)

    # -- the HTTP side -------------------------------------------------------------------------
    def _answer(self, request):
        url = urlsplit(request.url)
        path = url.path[len("/v1/") :]
        body = json.loads(request.body) if request.body else None
        self.log.append((request.method, path, body))
        if path == "sys/health":
            code = 503 if self.sealed else 200
            return (
                code,
                {},
                json.dumps(
                    {
                        "initialized": True,
                        "sealed": self.sealed,
                        "standby": False,
                        "version": "2.0.4",
                        "cluster_name": "vault-cluster-test",
                    }
                ),
            )
        if self.sealed:
            return 503, {}, json.dumps({"errors": ["Vault is sealed"]})
        if request.headers.get("X-Vault-Token") != self.token:
            return 403, {}, json.dumps({"errors": ["permission denied"]})
        if any(path == d or path.startswith(d + "/") for d in self.deny):
            return 403, {}, json.dumps({"errors": ["1 error occurred:\n\t* permission denied\n\n"]})
        return self._route(request.method, path, body, url.query)

    def _handle(self, request):  # noqa: F811 - every JSON answer says so, as Vault's do
        code, headers, text = self._answer(request)
        if text:
            headers = {"Content-Type": "application/json", **headers}
        return code, headers, text

    @staticmethod
    def _ok(data: Any) -> tuple[int, dict, str]:
        return 200, {"Content-Type": "application/json"}, json.dumps(data)

    @staticmethod
    def _no_content() -> tuple[int, dict, str]:
        return 204, {}, ""

    @staticmethod
    def _missing() -> tuple[int, dict, str]:
        return 404, {"Content-Type": "application/json"}, json.dumps({"errors": []})

    @staticmethod
    def _bad(message: str) -> tuple[int, dict, str]:
        return 400, {"Content-Type": "application/json"}, json.dumps({"errors": [message]})

    def _listing(self, table: dict[str, dict[str, Any]]) -> tuple[int, dict, str]:
        data = {
            f"{k}/": {
                "type": v["type"],
                "options": v.get("options"),
                "description": v.get("description", ""),
                "config": {},
            }
            for k, v in sorted(table.items())
        }
        # Vault answers with the mounts both at the top level and under "data".
        return self._ok({**data, "data": data, "request_id": "r"})

    def _mount_for(self, path: str) -> str | None:
        best = None
        for mount in self.mounts:
            if path == mount or path.startswith(mount + "/"):
                if best is None or len(mount) > len(best):
                    best = mount
        return best

    def _route(self, method: str, path: str, body: Any, query: str):
        if path == "sys/mounts" and method == "GET":
            return self._listing(self.mounts)
        if path.startswith("sys/mounts/") and method == "POST":
            self.mounts[path[len("sys/mounts/") :]] = {"type": body["type"], "options": body.get("options")}
            return self._no_content()
        if path == "sys/auth" and method == "GET":
            return self._listing(self.auth)
        if path.startswith("sys/auth/") and method == "POST":
            self.auth[path[len("sys/auth/") :]] = {
                "type": body["type"],
                "options": None,
                "description": body.get("description", ""),
            }
            return self._no_content()
        if path.startswith("sys/policies/acl/"):
            name = path[len("sys/policies/acl/") :]
            if method == "GET":
                if name not in self.policies:
                    return self._missing()
                return self._ok({"data": {"name": name, "policy": self.policies[name]}})
            self.policies[name] = body["policy"]
            return self._no_content()
        if path == "sys/audit" and method == "GET":
            data = {
                f"{k}/": {"type": v["type"], "path": f"{k}/", "options": v["options"], "description": ""}
                for k, v in sorted(self.audit.items())
            }
            return self._ok({**data, "data": data})
        if path.startswith("sys/audit/") and method == "PUT":
            self.audit[path[len("sys/audit/") :]] = {"type": body["type"], "options": body.get("options") or {}}
            return self._no_content()
        if path.startswith("sys/internal/ui/mounts/") and method == "GET":
            mount = self._mount_for(path[len("sys/internal/ui/mounts/") :])
            if mount is None:
                # Vault answers 403 for a path no mount serves, so mounts cannot be enumerated.
                return (
                    403,
                    {},
                    json.dumps(
                        {
                            "errors": [
                                "preflight capability check returned 403, please ensure client's policies grant access to path"
                            ]
                        }
                    ),
                )
            m = self.mounts[mount]
            return self._ok(
                {
                    "data": {
                        "path": f"{mount}/",
                        "type": m["type"],
                        "options": m.get("options"),
                        "description": "",
                        "config": {},
                    }
                }
            )
        if path.startswith("auth/") or re.match(r"[^/]+/(config|roles)/", path):
            mount = self._mount_for(path) if not path.startswith("auth/") else None
            if not path.startswith("auth/") and (mount is None or self.mounts[mount]["type"] != "database"):
                return self._kv_route(method, path, body)
            if method == "GET":
                return self._ok({"data": self.objects[path]}) if path in self.objects else self._missing()
            stored = dict(body)
            if re.match(r"[^/]+/config/", path):
                stored = {
                    "plugin_name": body["plugin_name"],
                    "allowed_roles": body.get("allowed_roles", []),
                    "connection_details": {"connection_url": body["connection_url"], "username": body["username"]},
                    "verify_connection": body.get("verify_connection", True),
                }
            if re.fullmatch(r"auth/[^/]+/config", path) and "token_reviewer_jwt" in stored:
                # Vault keeps the JWT but never returns it: a read says only whether one is set.
                stored["token_reviewer_jwt_set"] = bool(stored.pop("token_reviewer_jwt"))
            if path.startswith("auth/") and "/role/" in path:
                stored.setdefault("alias_name_source", "serviceaccount_uid")
                stored["policies"] = stored.get("token_policies", [])
            self.objects[path] = stored
            return self._no_content()
        return self._kv_route(method, path, body)

    def _kv_route(self, method: str, path: str, body: Any):
        mount = self._mount_for(path)
        if mount is None:
            return self._missing()
        m = self.mounts[mount]
        rest = path[len(mount) + 1 :]
        if m["type"] != "kv":
            return 404, {}, json.dumps({"errors": ["1 error occurred:\n\t* unsupported path\n\n"]})
        if (m.get("options") or {}).get("version") != "2":
            # kv-v1: `data/<path>` is just a key name.
            if method == "GET":
                versions = self.kv1.get((mount, rest)) or []
                return self._ok({"data": versions[-1]}) if versions else self._missing()
            self.kv1.setdefault((mount, rest), []).append(dict(body))
            return self._no_content()
        store = self.store(mount)
        if rest == "config":
            if method == "GET":
                return self._ok(
                    {"data": {"cas_required": store.cas_required, "max_versions": 0, "delete_version_after": "0s"}}
                )
            if "cas_required" in body:
                store.cas_required = bool(body["cas_required"])
            return self._no_content()
        kind, _, key = rest.partition("/")
        if kind == "metadata" and key:
            if method == "GET":
                return self._json(*store.read_metadata(key))
            return self._json(*store.write_metadata(key, body or {}))
        if kind != "data" or not key:
            return self._missing()
        if method == "GET":
            return self._json(*store.read(key))
        if method == "DELETE":
            store.delete_latest(key)
            return self._no_content()
        if (mount, key) in self.fail_cas_once:
            self.fail_cas_once.discard((mount, key))
            store.seed(key, {"other": "writer"})
        return self._json(*store.write(key, body))

    @staticmethod
    def _json(code: int, data: Any) -> tuple[int, dict, str]:
        if data is None:
            return code, {}, ""
        return code, {"Content-Type": "application/json"}, json.dumps(data)
