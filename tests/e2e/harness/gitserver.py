"""A Git server on 127.0.0.1 that source-controller clones over smart HTTP.

Git's own ``git http-backend`` (the CGI program git ships for smart HTTP) does all of Git's part;
this file only puts it behind a small HTTP server, run as its own process so the harness can stop
it (and kill it, for the fault tests) by PID::

    python3 tests/e2e/harness/gitserver.py --root DIR --port PORT

serves every bare repository under DIR at ``http://127.0.0.1:PORT/<name>.git`` (clone, fetch and,
where ``http.receivepack`` is set, push). :class:`GitServer` makes the bare repository, starts and
stops the process; :class:`Workspace` is a work tree with commits pushed to it over HTTP.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

# The CGI program; `git --exec-path` names the folder git keeps it in.
_BACKEND = "git-http-backend"


def _backend_path() -> str:
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
    return os.path.join(exec_path, _BACKEND)


class _Handler(BaseHTTPRequestHandler):
    """One request → one run of ``git http-backend`` (CGI/1.1: request in env and stdin, response
    headers then body on stdout)."""

    server_version = "k8s-secrets-e2e-git/1"
    root: str = ""
    backend: str = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._cgi()

    def do_POST(self) -> None:  # noqa: N802
        self._cgi()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _cgi(self) -> None:
        url = urlsplit(self.path)
        body = self._body() if self.command == "POST" else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": self.request_version,
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        for header, var in (("Content-Encoding", "HTTP_CONTENT_ENCODING"), ("Git-Protocol", "GIT_PROTOCOL")):
            if self.headers.get(header):
                env[var] = self.headers[header]
        res = subprocess.run([self.backend], input=body, env=env, capture_output=True, timeout=120)
        out = res.stdout
        sep = out.find(b"\r\n\r\n")
        head, rest = (
            (out[:sep], out[sep + 4 :]) if sep >= 0 else out.split(b"\n\n", 1) if b"\n\n" in out else (b"", out)
        )
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        if res.returncode != 0 and not head:
            status = 500
            rest = res.stderr
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)
        if res.stderr:
            sys.stderr.write(res.stderr.decode(errors="replace"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="git http-backend (smart HTTP) on 127.0.0.1")
    ap.add_argument("--root", required=True, help="folder holding the bare repositories")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    _Handler.root = str(Path(args.root).resolve())
    _Handler.backend = _backend_path()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    print(f"serving {_Handler.root} on http://127.0.0.1:{args.port}/ with {_Handler.backend}", flush=True)
    httpd.serve_forever()
    return 0


# ---- the harness's side -------------------------------------------------------------------------
def git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="e2e",
        GIT_AUTHOR_EMAIL="e2e@example.invalid",
        GIT_COMMITTER_NAME="e2e",
        GIT_COMMITTER_EMAIL="e2e@example.invalid",
        GIT_CONFIG_NOSYSTEM="1",
        HOME=str(cwd),
    )
    res = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


@dataclass
class GitServer:
    """The server process and the bare repository ``<name>.git`` it serves."""

    workdir: Path
    name: str = "k8s-secrets"
    port: int = 0
    proc: object = None
    requests_log: Path = field(init=False)

    def __post_init__(self) -> None:
        from .procs import free_port

        self.port = self.port or free_port()
        self.root = self.workdir / "repos"
        self.bare = self.root / f"{self.name}.git"
        self.requests_log = self.workdir / "git-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.name}.git"

    def init(self) -> "GitServer":
        self.bare.mkdir(parents=True, exist_ok=True)
        git("init", "--bare", "--initial-branch=main", "--quiet", str(self.bare), cwd=self.workdir)
        git("config", "http.receivepack", "true", cwd=self.bare)
        return self

    def start(self) -> "GitServer":
        import requests

        from .procs import Proc, wait_for

        argv = [sys.executable, __file__, "--root", str(self.root), "--port", str(self.port)]
        self.proc = Proc("git-server", argv, self.requests_log).start()
        wait_for(
            "the Git server's info/refs",
            lambda: requests.get(f"{self.url}/info/refs?service=git-upload-pack", timeout=2).status_code == 200,
            30,
            self.proc,  # type: ignore[arg-type]
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()  # type: ignore[attr-defined]

    def head(self, branch: str = "main") -> str:
        return git("rev-parse", f"refs/heads/{branch}", cwd=self.bare).stdout.strip()


@dataclass
class Workspace:
    """A work tree whose commits are pushed to the server over smart HTTP, as a user pushes."""

    root: Path
    server: GitServer

    @classmethod
    def of_project(cls, src: Path, dest: Path, server: GitServer) -> "Workspace":
        """A work tree holding the project's tracked files as they are in ``src`` now."""
        files = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=src,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        dest.mkdir(parents=True, exist_ok=True)
        for raw in files:
            if not raw:
                continue
            rel = raw.decode()
            if not (src / rel).is_file():
                continue  # deleted in the work tree
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dest / rel)
        git("init", "--initial-branch=main", "--quiet", ".", cwd=dest)
        git("remote", "add", "origin", server.url, cwd=dest)
        return cls(dest, server)

    def commit(self, message: str) -> str:
        """Commit everything in the work tree (additions, changes, removals); returns the SHA."""
        git("add", "--all", ".", cwd=self.root)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.root)
        return git("rev-parse", "HEAD", cwd=self.root).stdout.strip()

    def push(self) -> float:
        """``git push`` over HTTP; returns time.monotonic() when it returned."""
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=self.root)
        return time.monotonic()


if __name__ == "__main__":
    sys.exit(main())
