"""Local processes of the end-to-end suite: started with a log file, stopped by PID.

Every process runs in its own session (process group), so stopping it also stops anything it
started. Every process started here is registered; :func:`stop_all` runs at the end of the session
(a pytest finalizer) and again at interpreter exit, so nothing outlives a failed run.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

_RUNNING: list["Proc"] = []


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, proc: "Proc | None" = None, interval: float = 0.2
) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` (and the process's log) otherwise."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(
                f"{proc.name} exited (code {proc.popen.returncode}) while waiting for {what}; "
                f"log: {proc.log}\n{proc.tail()}"
            )
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - a check may fail until the server is up
            last = exc
        time.sleep(interval)
    where = f"; log: {proc.log}\n{proc.tail()}" if proc is not None else ""
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last}){where}")


@dataclass
class Proc:
    name: str
    argv: Sequence[str]
    log: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen = field(init=False, repr=False)

    def start(self) -> "Proc":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        try:
            out.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(map(str, self.argv))}\n".encode())
            out.flush()
            env = dict(os.environ if self.env is None else self.env)
            self.popen = subprocess.Popen(
                list(map(str, self.argv)),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )
        finally:
            out.close()
        _RUNNING.append(self)
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
        """Stop the process group led by our PID: ``sig``, then SIGKILL after ``timeout``."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(10)
        if self in _RUNNING:
            _RUNNING.remove(self)

    def kill(self) -> None:
        """A crash: SIGKILL, no chance to clean up."""
        self.stop(timeout=0.1, sig=signal.SIGKILL)

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children first found, then theirs), read from /proc.

    Pulumi starts its language host and providers in process groups of their own, so killing the
    CLI's group leaves them running; their PIDs must be taken while the CLI is still their parent."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL `pid`, its process group and every process below it, each by PID."""
    for target in [*descendants(pid), pid]:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_all() -> None:
    for proc in reversed(list(_RUNNING)):
        proc.stop(timeout=5)


def running() -> list[Proc]:
    return list(_RUNNING)


atexit.register(stop_all)
