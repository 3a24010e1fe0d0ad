#!/usr/bin/env python3
"""Build the real upstream programs of the end-to-end suite from their published Go modules.

Each folder beside this file is one Go module (``go.mod`` + ``go.sum``): it requires exactly one
upstream module at a pinned version and names the programs to build with ``tool`` directives.
That is the one place every version is written. Nothing upstream is copied into the repository;
``go build`` fetches the modules through the Go module proxy into Go's own module cache.

Binaries go into a cache outside the clone, keyed by the upstream version and a hash of the
tools module (so a change of pin or of go.sum builds again and never reuses a stale binary)::

    ${XDG_CACHE_HOME:-~/.cache}/k8s-secrets/e2e/<folder>/<version>-<hash>/<program>

    python3 tools/build.py            build what is missing (idempotent), print what it did
    python3 tools/build.py --list     print "<program> <path>" per program, build nothing
    python3 tools/build.py --only vault --only etcd

The end-to-end suite finds the programs with :func:`binaries` (never a PATH lookup), and
refuses to run with a clear message when one is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TOOLS = Path(__file__).resolve().parent

# The file name a program gets when its package path's last element says little.
RENAME = {
    "go.etcd.io/etcd/server/v3": "etcd",
    "github.com/bitnami-labs/sealed-secrets/cmd/controller": "sealed-secrets-controller",
    "github.com/hashicorp/vault": "vault",
    "github.com/hashicorp/vault-secrets-operator": "vault-secrets-operator",
}

@dataclass(frozen=True)
class Prepare:
    """Steps a module needs before ``go build`` (a ``go generate`` whose output is not published).

    The module is copied out of Go's read-only module cache into ``<cache>/<folder>/<version>-<hash>/src``
    and prepared there; the build then uses that copy through a ``replace`` written into a copy of the
    tools go.mod beside it (``-modfile``), never into the committed one. In ``steps`` (cwd, argv),
    ``{src}`` is the copy, ``{work}`` the folder beside it and ``{tools}`` the tools folder; go
    commands run in ``{tools}`` see the modfile with the replace.
    """

    module: str
    steps: tuple[tuple[str, tuple[str, ...]], ...]
    env: tuple[tuple[str, str], ...] = ()


# pulumi-resource-kubernetes embeds schema-embed.json and terraform-mapping-embed.json, which its
# ``go generate`` (generate.go) writes from the committed schema.json with the release version set
# in it; the same version goes into the binary with -X (LDFLAGS), as its own Makefile does. The
# module is served only as the pseudo-version of the v4.25.0 tag commit, so the release is named here.
_K8S_PROVIDER_RELEASE = "4.25.0"
PREPARE: dict[str, Prepare] = {
    "pulumi-kubernetes": Prepare(
        module="github.com/pulumi/pulumi-kubernetes/provider/v4",
        steps=(
            ("{tools}", ("go", "build", "-o", "{work}/generate", "{src}/cmd/pulumi-resource-kubernetes/generate.go")),
            ("{src}/cmd/pulumi-resource-kubernetes", ("{work}/generate",)),
        ),
        env=(("VERSION", _K8S_PROVIDER_RELEASE),),
    ),
    # The flux CLI embeds cmd/flux/manifests/*.yaml, which upstream's manifests/scripts/bundle.sh
    # writes from the controllers' release assets (downloaded, not in any module). Only `flux
    # install` and `flux bootstrap` read them; the suite uses neither, so the build embeds one file
    # saying so (`flux install --export` of this binary prints no controller).
    "flux": Prepare(
        module="github.com/fluxcd/flux2/v2",
        steps=(
            ("{src}/cmd/flux", ("sh", "-c", "mkdir -p manifests && printf '%s\\n' "
                                "'# k8s-secrets e2e build: the release manifests are not bundled (no flux install/bootstrap)' "
                                "> manifests/not-bundled.yaml")),
        ),
    ),
}


# Version stamps upstream's own release builds set with -ldflags -X (a module build has none:
# kube-apiserver would report v0.0.0-master, which clients such as kubectl refuse to parse).
# {version} ({semver} without its "v"), {major} and {minor} come from the pinned version of the folder's upstream module.
_K8S_VERSION_VARS = ("gitVersion={version}", "gitMajor={major}", "gitMinor={minor}", "gitTreeState=clean",
                     "buildDate=1970-01-01T00:00:00Z")
LDFLAGS: dict[str, list[str]] = {
    "kubernetes": [f"-X {pkg}.{var}" for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
                   for var in _K8S_VERSION_VARS],
    "sealed-secrets": ["-X main.VERSION={version}"],
    # The CLI (pkg/v3) and the host read sdk/v3's go/common/version.Version, as upstream's
    # goreleaser stamps it ({{.Tag}}: v3.274.0); `pulumi version` prints it.
    "pulumi": ["-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={version}"],
    "pulumi-language-python": ["-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={version}"],
    "pulumi-kubernetes": ["-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=" + _K8S_PROVIDER_RELEASE],
    # As flux2's Makefile does, without the tag's "v" (`flux version --client` prints it).
    "flux": ["-X main.VERSION={semver}"],
}


@dataclass(frozen=True)
class Program:
    folder: str  # tools/<folder>
    package: str  # Go package path of the main package
    name: str  # file name of the binary
    module: str  # the upstream module that holds it
    version: str  # its pinned version
    path: Path  # where the binary lives in the cache

    @property
    def built(self) -> bool:
        return self.path.is_file() and os.access(self.path, os.X_OK)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "k8s-secrets" / "e2e"


def _parse_go_mod(text: str) -> tuple[dict[str, str], list[str]]:
    """The ``require`` versions and ``tool`` paths of a go.mod (blocks or single lines)."""
    requires: dict[str, str] = {}
    tools: list[str] = []
    block = None
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if block:
            if line == ")":
                block = None
                continue
            words = line.split()
        else:
            m = re.match(r"^(require|tool|replace|exclude)\s*\($", line)
            if m:
                block = m.group(1)
                continue
            words = line.split()
            if not words or words[0] not in ("require", "tool"):
                continue
            block_kw, words = words[0], words[1:]
            if block_kw == "require" and len(words) >= 2:
                requires[words[0]] = words[1]
            elif block_kw == "tool" and words:
                tools.append(words[0])
            continue
        if block == "require" and len(words) >= 2:
            requires[words[0]] = words[1]
        elif block == "tool" and words:
            tools.append(words[0])
    return requires, tools


def _owner(package: str, requires: dict[str, str]) -> tuple[str, str]:
    """The required module that holds ``package`` (the longest matching prefix)."""
    best = ""
    for mod in requires:
        if (package == mod or package.startswith(mod + "/")) and len(mod) > len(best):
            best = mod
    if not best:
        raise SystemExit(f"build.py: tools: {package}: no require line holds this package")
    return best, requires[best]


def programs() -> list[Program]:
    out: list[Program] = []
    for gomod in sorted(TOOLS.glob("*/go.mod")):
        folder = gomod.parent.name
        text = gomod.read_text()
        gosum = gomod.parent / "go.sum"
        digest = hashlib.sha256(text.encode() + (gosum.read_bytes() if gosum.exists() else b""))
        digest.update("\0".join(LDFLAGS.get(folder, [])).encode())
        if folder in PREPARE:
            digest.update(repr(PREPARE[folder]).encode())
        requires, tools = _parse_go_mod(text)
        for package in tools:
            module, version = _owner(package, requires)
            name = RENAME.get(package) or package.rstrip("/").rsplit("/", 1)[-1]
            path = cache_root() / folder / f"{version}-{digest.hexdigest()[:12]}" / name
            out.append(Program(folder, package, name, module, version, path))
    return out


def binaries() -> dict[str, Path]:
    """Program name → its binary in the cache (built or not)."""
    return {p.name: p.path for p in programs()}


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never let a go.work elsewhere change what is built.
    env["GOWORK"] = "off"
    env["GOFLAGS"] = "-mod=readonly"
    return env


def _ldflags(program: Program) -> str:
    m = re.match(r"v(\d+)\.(\d+)", program.version)
    major, minor = m.groups() if m else ("", "")
    stamps = [f.format(version=program.version, semver=program.version.lstrip("v"), major=major, minor=minor) for f in LDFLAGS.get(program.folder, [])]
    return " ".join(["-s", "-w", *stamps])


def _prepare(program: Program, prep: Prepare) -> dict[str, str]:
    """Copy the module out of the module cache, run its steps; returns the go env for the build."""
    folder = TOOLS / program.folder
    work = program.path.parent / "prepare"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    env = _go_env()
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{prep.module}@{program.version}"],
        cwd=folder, env=env, check=True, capture_output=True, text=True,
    ).stdout
    src = work / "src"
    shutil.copytree(json.loads(out)["Dir"], src)
    for root, dirs, files in os.walk(src):
        for name in dirs + files:
            p = os.path.join(root, name)
            os.chmod(p, os.stat(p).st_mode | 0o200)
    shutil.copyfile(folder / "go.mod", work / "go.mod")
    shutil.copyfile(folder / "go.sum", work / "go.sum")
    subprocess.run(
        ["go", "mod", "edit", f"-modfile={work / 'go.mod'}", f"-replace={prep.module}={src}"],
        cwd=folder, env=env, check=True,
    )
    env["GOFLAGS"] = f"-mod=readonly -modfile={work / 'go.mod'}"
    env.update(dict(prep.env))
    subst = {"{src}": str(src), "{work}": str(work), "{tools}": str(folder)}

    def fill(text: str) -> str:
        for key, value in subst.items():
            text = text.replace(key, value)
        return text

    for cwd, argv in prep.steps:
        try:
            subprocess.run([fill(a) for a in argv], cwd=fill(cwd), env=env, check=True)
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"build.py: {program.name} {program.version}: prepare step {argv[0]} failed (exit {exc.returncode})")
    return env


def build(program: Program) -> float:
    """Build one program into its cache path (atomically); returns the seconds it took."""
    started = time.monotonic()
    program.path.parent.mkdir(parents=True, exist_ok=True)
    prep = PREPARE.get(program.folder)
    env = _prepare(program, prep) if prep else _go_env()
    fd, tmp = tempfile.mkstemp(prefix=f".{program.name}.", dir=program.path.parent)
    os.close(fd)
    cmd = ["go", "build", "-trimpath", f"-ldflags={_ldflags(program)}", "-o", tmp, program.package]
    try:
        subprocess.run(cmd, cwd=TOOLS / program.folder, env=env, check=True)
        os.chmod(tmp, 0o755)
        os.replace(tmp, program.path)
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"build.py: {program.name} {program.version}: go build failed (exit {exc.returncode})")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if prep:
            shutil.rmtree(program.path.parent / "prepare", ignore_errors=True)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="print '<program> <path>' per program")
    ap.add_argument("--only", action="append", default=[], help="a tools folder or program name")
    args = ap.parse_args(argv)
    chosen = [p for p in programs() if not args.only or p.folder in args.only or p.name in args.only]
    if args.list:
        for p in chosen:
            print(f"{p.name} {p.path}")
        return 0
    if shutil.which("go") is None:
        print("build.py: go is not on PATH (Go 1.24 or newer is needed)", file=sys.stderr)
        return 2
    total = time.monotonic()
    for i, p in enumerate(chosen, 1):
        label = f"[{i}/{len(chosen)}] {p.name} ({p.module} {p.version})"
        if p.built:
            print(f"{label}: cached", flush=True)
            continue
        print(f"{label}: building...", flush=True)
        seconds = build(p)
        print(f"{label}: built in {seconds:.0f} s -> {p.path}", flush=True)
    print(f"e2e tools ready in {time.monotonic() - total:.0f} s ({cache_root()})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
