"""Servers on 127.0.0.1 that are not Vault, or a Vault whose answers get lost, for the tests.

`Impostor(mode)` runs a `ThreadingHTTPServer` on a free port of 127.0.0.1 in a daemon thread;
`stop()` shuts it down and closes every connection it holds (tests call it in a finalizer).

Modes:
- `html`: every request gets 200 and an HTML page (a login page, a proxy's landing page);
- `json`: every request gets 200 and JSON of another service's shape;
- `trickle`: every answer's headers arrive one byte a second, for ever;
- `lost-write`: a kv-v2 Vault for reads; a write is taken in and the connection dropped without an
  answer, and from then on every connection is dropped (Vault fell over mid-write);
- `lost-answer`: as `lost-write`, but the write lands and reads keep working (only the answer was lost).

Its kv-v2 is the shared store of every fake Vault (`tests/fakes/kv2.py`): a write lands only as
check-and-set allows.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.kv2 import KV2


class Impostor:
    def __init__(self, mode: str, kv: dict[str, dict[str, str]] | None = None, odd: Any = None) -> None:
        self.mode = mode
        self.odd = odd  # mode "odd-version": what the server says in every version field
        self.store = KV2()
        for p, d in (kv or {}).items():
            self.store.seed(p, d)
        self.dead = False
        self.requests: list[tuple[str, str]] = []
        self.stopping = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                body = self._body()
                owner.requests.append((self.command, self.path))
                if owner.mode == "html":
                    return self._send(
                        200, b"<!doctype html><html><body>Sign in</body></html>", "text/html; charset=utf-8"
                    )
                if owner.mode == "json":
                    return self._send(200, json.dumps({"status": "ok", "items": []}).encode())
                if owner.mode == "trickle":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    self.wfile.flush()
                    while not owner.stopping.wait(1):
                        self.wfile.write(b"a")
                        self.wfile.flush()
                    return
                return owner.kv_answer(self, body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.addr = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def kv(self) -> dict[str, list]:
        """path → versions, as the store keeps them."""
        return self.store.versions

    def kv_answer(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        if self.dead:
            h.close_connection = True
            return
        path = h.path.split("?")[0]
        if path.startswith("/v1/sys/internal/ui/mounts/secret/"):
            return h._send(
                200,
                json.dumps(
                    {"request_id": "r", "data": {"path": "secret/", "type": "kv", "options": {"version": "2"}}}
                ).encode(),
            )
        if self.mode == "odd-version" and path.startswith("/v1/secret/metadata/"):
            key = path[len("/v1/secret/metadata/") :]
            if h.command != "GET":
                return h._send(204, b"")
            status, answer = self.store.read_metadata(key)
            if status == 200:
                answer["data"]["current_version"] = self.odd
                answer["data"]["custom_metadata"] = {"ksecrets-rotation-version": str(self.odd)}
            return h._send(status, json.dumps({"request_id": "r", **answer}).encode())
        if path.startswith("/v1/secret/data/"):
            key = path[len("/v1/secret/data/") :]
            if h.command == "GET":
                status, answer = self.store.read(key)
                if self.mode == "odd-version" and "data" in answer:
                    answer["data"]["metadata"]["version"] = self.odd
                return h._send(status, json.dumps({"request_id": "r", **answer}).encode())
            if self.mode == "odd-version":
                status, answer = self.store.write(key, json.loads(body))
                return h._send(status, json.dumps({"request_id": "r", **answer}).encode())
            if self.mode == "lost-answer":
                self.store.write(key, json.loads(body))
            else:
                self.dead = True
            h.close_connection = True  # taken in, never answered
            return
        return h._send(404, b'{"errors":[]}')

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
