"""The real Pulumi engine against the harness's API server: CLI, Python language host, Kubernetes provider.

Built from their Go modules (tools/pulumi, tools/pulumi-language-python, tools/pulumi-kubernetes;
see README "Running it with Pulumi" for the versions and why). Each project runs in a folder of
its own: a copy of the program's files (the stack file gets the passphrase salt there, never in
the clone), a local state backend (``file://``), the passphrase secrets provider, ``PULUMI_HOME``
in the same folder, and plugins found on ``PATH`` only (no download: automatic plugin
acquisition is off). Every ``pulumi`` run is its own process group, killed by PID on timeout.

Simulated here, and said so: helm-controller. :class:`HelmReleaseReady` marks each HelmRelease
Ready through the status subresource while ``pulumi up`` waits for it (``pulumi.com/waitFor``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import ROOT, TOOLS, _build_module, procs
from .gitops import mark_helmreleases_ready
from .kube import Cluster

PASSPHRASE = "e2e-passphrase-not-a-secret"
# `pulumi preview` persists nothing, so it always runs without the snapshot manager's per-step
# checkpoints (README "Large stacks": most of the CLI's CPU at 100+ apps), as CI and the README run it.
SKIP_CHECKPOINTS = {"PULUMI_SKIP_CHECKPOINTS": "true"}
# The file backend's bucket (gocloud fileblob) writes each object to a temp file and renames it
# into place, but first rewrites a `<file>.attrs` sidecar in place (truncate, then write): a kill in
# between leaves an empty `.attrs` and the state unreadable ("failed to load checkpoint: EOF",
# tests/e2e/test_pulumi_crash.py). `metadata=skip` writes no sidecar: the rename is the whole
# write, atomic. Pulumi reads no attribute of its state files (README "Pulumi at a thousand apps").
BACKEND_QUERY = "?metadata=skip"
# The program's files a project folder needs (directories are linked, files copied).
_LINKED = ("components", "ksecrets", "policy", "certs", ".venv")
_COPIED = ("Pulumi.yaml", "__main__.py")


def exec_shim() -> Path:
    """``pulumi-language-python-exec``: the Python SDK's entry script, published in sdk/v3's module
    (the version tools/pulumi builds against); the host runs it with the project's python."""
    out = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "github.com/pulumi/pulumi/sdk/v3"],
        cwd=TOOLS / "pulumi",
        capture_output=True,
        text=True,
        check=True,
        env=_build_module()._go_env(),
    )
    return Path(out.stdout.strip()) / "python" / "cmd" / "pulumi-language-python-exec"


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.code == 0

    def json(self) -> Any:
        """The document a `--json` run printed (the CLI's warnings share the stream, before it)."""
        start = 0 if self.out.startswith("{") else self.out.index("\n{") + 1
        return json.JSONDecoder().raw_decode(self.out[start:])[0]


@dataclass
class PulumiProject:
    workdir: Path
    bins: dict[str, Path]
    stack: str
    kubeconfig: Path | None = None
    stack_file: str | None = None  # text of Pulumi.<stack>.yaml (default: the repo's)
    context: str | None = "e2e"  # set as the stack's kubernetes:context (None: keep the stack file's)
    # A checkout to run in as it is (its own Pulumi.yaml, stack files and .venv, which `pulumi
    # install` makes), instead of a copy of the repo's files that uses the repo's .venv.
    checkout: Path | None = None
    runs: list[Result] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.project = self.checkout or self.workdir / "project"
        self.home = self.workdir / "pulumi-home"
        self.state = self.workdir / "state"
        self.bin = self.workdir / "bin"
        for d in (self.project, self.home, self.state, self.bin):
            d.mkdir(parents=True, exist_ok=True)
        if self.checkout is None:
            for name in _LINKED:
                if not (self.project / name).is_symlink():
                    (self.project / name).symlink_to(ROOT / name)
            for name in _COPIED:
                shutil.copyfile(ROOT / name, self.project / name)
        target = self.project / f"Pulumi.{self.stack}.yaml"
        if not target.exists():  # a project folder reopened keeps its stack file (salt, config)
            target.write_text(
                self.stack_file if self.stack_file is not None else (ROOT / f"Pulumi.{self.stack}.yaml").read_text()
            )
        # The language host finds its exec script next to its own executable (not a symlink).
        if self.checkout is None:
            shutil.copy2(self.bins["pulumi-language-python"], self.bin / "pulumi-language-python")
        else:
            self._host_with_runtime_options()
        shutil.copy2(exec_shim(), self.bin / "pulumi-language-python-exec")
        (self.bin / "pulumi-language-python-exec").chmod(0o755)
        for name in ("pulumi", "pulumi-resource-kubernetes"):
            link = self.bin / name
            if link.is_symlink():
                link.unlink()
            link.symlink_to(self.bins[name])

    def _host_with_runtime_options(self) -> None:
        """The language host, started with Pulumi.yaml's runtime options as flags.

        The CLI of the host's own release (3.68) passed each runtime option as ``-<key>=<value>``
        plus ``-root=<project root>``; the CLI built here (3.274) passes them in ``ProgramInfo``
        instead, which host 3.68 predates: started bare, it has no virtualenv and `pulumi install`
        would make the venv in the project root itself. So a wrapper passes the options the 3.68
        host defines (only ``virtualenv``: it has no ``toolchain``, pip is what it does) as the
        3.68 CLI did. The host binary is the real one, beside its exec script."""
        runtime = yaml.safe_load((self.project / "Pulumi.yaml").read_text())["runtime"]
        options = runtime.get("options", {}) if isinstance(runtime, dict) else {}
        flags = [f"-virtualenv={options['virtualenv']}"] if "virtualenv" in options else []
        flags.append(f"-root={self.project}")
        real = self.bin / "pulumi-language-python-host"
        shutil.copy2(self.bins["pulumi-language-python"], real)
        wrapper = self.bin / "pulumi-language-python"
        wrapper.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in [str(real), *flags]) + ' "$@"\n')
        wrapper.chmod(0o755)

    @property
    def python(self) -> Path:
        """The interpreter that runs the program (and the policy pack)."""
        return (self.project if self.checkout is not None else ROOT) / ".venv" / "bin" / "python"

    # ---- running pulumi --------------------------------------------------------------------
    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        venv = self.python.parent
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "KUBE"))}
        env.update(
            {
                "PATH": f"{self.bin}:{venv}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "PULUMI_HOME": str(self.home),
                "PULUMI_BACKEND_URL": f"file://{self.state}{BACKEND_QUERY}",
                "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
                "PULUMI_SKIP_UPDATE_CHECK": "true",
                "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
                "PULUMI_PYTHON_CMD": str(venv / "python"),
                "PULUMI_SKIP_CONFIRMATIONS": "true",
                "PULUMI_COPILOT": "false",
                "NO_COLOR": "1",
                # As in CI: the kubeconfig file comes from the environment; the stack's own
                # `kubernetes:context` picks the cluster in it (never the file's current-context).
                "KUBECONFIG": str(self.kubeconfig or self.workdir / "no-such-kubeconfig"),
            }
        )
        if self.checkout is not None:
            # As on a workstation: `python3` from PATH makes the venv, the host then runs the
            # program with the venv's own python (host 3.68 joins PULUMI_PYTHON_CMD to the venv's bin/).
            del env["PULUMI_PYTHON_CMD"]
        if extra:
            env.update(extra)
        return env

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 600,
        env: dict[str, str] | None = None,
        stack: bool = True,
    ) -> Result:
        started = time.monotonic()
        proc = self.start(*args, env=env, stack=stack)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except BaseException:
            procs.kill_tree(proc.pid)  # the host and providers too: they have groups of their own
            proc.communicate()
            raise
        finally:
            if proc.poll() is None:
                procs.kill_tree(proc.pid)
        # A secret value given on the command line (`config set --secret K V`) is never logged.
        shown = tuple(args[:-1]) + ("[secret]",) if "--secret" in args else tuple(args)
        result = Result(shown, proc.returncode, out, time.monotonic() - started)
        self.runs.append(result)
        log = self.workdir / "pulumi.log"
        with open(log, "a") as fh:
            fh.write(f"\n=== pulumi {' '.join(shown)} -> {result.code} ({result.seconds:.1f} s)\n{out}")
        if check and not result.ok:
            raise AssertionError(f"pulumi {' '.join(shown)} failed ({result.code}); log: {log}\n{out[-4000:]}")
        return result

    def start(
        self, *args: str, env: dict[str, str] | None = None, stack: bool = True, stdout: Any = subprocess.PIPE
    ) -> subprocess.Popen:
        """`pulumi <args>` started in a process group of its own (stop it with `procs.kill_tree`).
        A preview runs with `SKIP_CHECKPOINTS` unless `env` says otherwise."""
        argv = [str(self.bin / "pulumi"), *args, "--non-interactive"]
        if stack:
            argv += ["--stack", self.stack]
        if args and args[0] == "preview":
            env = {**SKIP_CHECKPOINTS, **(env or {})}
        return subprocess.Popen(
            argv,
            cwd=self.project,
            env=self.env(env),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )

    def init(self) -> "PulumiProject":
        """Select (creating) the stack in the local backend, pointed at the harness's cluster."""
        self.run("stack", "init", self.stack, stack=False)
        if self.kubeconfig is not None and self.context is not None:
            self.run("config", "set", "kubernetes:context", self.context)
        return self

    def policy_pack(self, pack: Path | None = None) -> str:
        """What to pass to ``--policy-pack`` for the pack in ``policy/`` (or ``pack``).

        The language host served as a Go module (sdk/v3 v3.68.0) predates ``ProgramInfo``: asked
        to run a policy-pack folder, it runs ``python ""`` (the project's own program). So the
        pack is started through the CLI's executable-analyzer path instead, with the command the
        current host runs for an analyzer: ``python -u -m pulumi.policy <engine> <pack dir>``,
        from the pack's folder. The pack, pulumi-policy and the engine are the real ones."""
        pack = pack or (self.project / "policy")
        runner = self.workdir / "policy-runner" / "run-policy-pack"
        runner.parent.mkdir(exist_ok=True)
        shutil.copyfile(pack / "PulumiPolicy.yaml", runner.parent / "PulumiPolicy.yaml")
        runner.write_text(f"#!/bin/sh\ncd '{pack}' && exec '{self.python}' -u -m pulumi.policy \"$@\" '{pack}'\n")
        runner.chmod(0o755)
        return str(runner)

    def export(self) -> dict[str, Any]:
        return json.loads(self.run("stack", "export", "--show-secrets=false").out)

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.run("stack", "output", "--json").out)


class HelmReleaseReady:
    """Simulated helm-controller while ``pulumi up`` runs: every HelmRelease that appears is
    marked Ready through the status subresource (a background thread, stopped on exit)."""

    def __init__(self, cluster: Cluster, interval: float = 0.5) -> None:
        self.cluster = cluster
        self.interval = interval
        self.marked: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                items = (self.cluster.get("/apis/helm.toolkit.fluxcd.io/v2/helmreleases") or {}).get("items", [])
                todo = [
                    i
                    for i in items
                    if f"{i['metadata']['namespace']}/{i['metadata']['name']}" not in self.marked or not _ready(i)
                ]
                self.marked.update(mark_helmreleases_ready(self.cluster, todo))
            except Exception:  # noqa: BLE001 - the server may be busy; try again
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "HelmReleaseReady":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _ready(obj: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in obj.get("status", {}).get("conditions", [])
    )
