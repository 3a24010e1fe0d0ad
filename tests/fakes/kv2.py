"""The one kv-v2 store behind every fake Vault in the tests (`tests/vault/fakevault.py`, the
rotation suite's `FakeKV`, the impostor Vault), so they cannot disagree on check-and-set.

Semantics as the kv-v2 plugin's `path_data.go` has them (and the API docs,
developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2):

- a key's current version counts every version written, soft-deleted ones included;
- `options.cas` present: the write lands only if it equals the current version (0: the key was
  never written), else 400 "check-and-set parameter did not match the current version";
- `options.cas` absent: the write lands, unless the mount (`<mount>/config`) or the key's
  metadata sets `cas_required`, then 400 "check-and-set parameter required for this call";
- a read of a soft-deleted latest version is a 404 that still carries the version's metadata.

Methods return (status, JSON body or None); the HTTP wrappers add headers and routing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

CAS_MISMATCH = "check-and-set parameter did not match the current version"
CAS_REQUIRED = "check-and-set parameter required for this call"


def rfc3339(t: float) -> str:
    """Vault's timestamp shape: UTC, nanoseconds, a Z."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return f"{whole}.{int((t % 1) * 1e9):09d}Z"


@dataclass
class KV2:
    """One kv-v2 mount: path → versions (None = soft-deleted), their created times, the key's
    custom_metadata and cas_required."""

    cas_required: bool = False  # the mount's config
    clock: Callable[[], float] = time.time
    versions: dict[str, list[dict[str, Any] | None]] = field(default_factory=dict)
    created: dict[str, list[float]] = field(default_factory=dict)
    deleted: dict[str, dict[int, float]] = field(default_factory=dict)  # path → version → deletion time
    custom: dict[str, dict[str, str]] = field(default_factory=dict)
    key_cas_required: set[str] = field(default_factory=set)

    # -- the test side -----------------------------------------------------------------------
    def seed(self, path: str, data: dict[str, Any], at: float | None = None) -> int:
        """A version written behind the client's back (no check-and-set); its number."""
        self.versions.setdefault(path, []).append(dict(data))
        self.created.setdefault(path, []).append(self.clock() if at is None else at)
        return len(self.versions[path])

    def version(self, path: str) -> int:
        """The key's current version (0: never written)."""
        return len(self.versions.get(path, []))

    def latest(self, path: str) -> dict[str, Any] | None:
        versions = self.versions.get(path) or []
        return versions[-1] if versions else None

    def delete_latest(self, path: str) -> None:
        """`DELETE <mount>/data/<path>`: the latest version is soft-deleted; the number stays."""
        n = self.version(path)
        if n:
            self.versions[path][-1] = None
            self.deleted.setdefault(path, {})[n] = self.clock()

    # -- the HTTP side -----------------------------------------------------------------------
    def _metadata(self, path: str, n: int) -> dict[str, Any]:
        gone = self.deleted.get(path, {}).get(n)
        return {
            "created_time": rfc3339(self.created[path][n - 1]),
            "custom_metadata": self.custom.get(path) or None,
            "deletion_time": "" if gone is None else rfc3339(gone),
            "destroyed": False,
            "version": n,
        }

    def read(self, path: str) -> tuple[int, dict[str, Any]]:
        n = self.version(path)
        if not n:
            return 404, {"errors": []}
        current = self.versions[path][-1]
        body = {"data": {"data": current, "metadata": self._metadata(path, n)}}
        return (404 if current is None else 200), body

    def write(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """`POST/PUT <mount>/data/<path>` with `{"data": ..., "options": {"cas": N}}`."""
        options = body.get("options") or {}
        if "cas" in options:
            if int(options["cas"]) != self.version(path):
                return 400, {"errors": [CAS_MISMATCH]}
        elif self.cas_required or path in self.key_cas_required:
            return 400, {"errors": [CAS_REQUIRED]}
        n = self.seed(path, body["data"])
        meta = self._metadata(path, n)
        return 200, {
            "data": {k: meta[k] for k in ("created_time", "custom_metadata", "deletion_time", "destroyed", "version")}
        }

    def read_metadata(self, path: str) -> tuple[int, dict[str, Any]]:
        n = self.version(path)
        if not n:
            return 404, {"errors": []}
        versions = {
            str(i): {
                k: v for k, v in self._metadata(path, i).items() if k in ("created_time", "deletion_time", "destroyed")
            }
            for i in range(1, n + 1)
        }
        return 200, {
            "data": {
                "current_version": n,
                "oldest_version": 0,
                "max_versions": 0,
                "cas_required": path in self.key_cas_required,
                "custom_metadata": self.custom.get(path) or None,
                "versions": versions,
            }
        }

    def write_metadata(self, path: str, body: dict[str, Any]) -> tuple[int, None]:
        """`POST <mount>/metadata/<path>`: custom_metadata is replaced as a whole, cas_required set."""
        if "custom_metadata" in body:
            self.custom[path] = {str(k): str(v) for k, v in (body.get("custom_metadata") or {}).items()}
        if "cas_required" in body:
            (self.key_cas_required.add if body["cas_required"] else self.key_cas_required.discard)(path)
        return 204, None
