"""`pulumi preview` of many stacks: `ksecrets preview --all-stacks` (Automation API, components/
automation.py) at --parallel 1 and 2, beside the loop a user would write (`pulumi preview --stack S`
for each stack, one after another), in one run; wall seconds and the CPU seconds of every process
the run started (the children's rusage: CLI, language host, Python program, provider).

Everything real: the Pulumi CLI, Python host and Kubernetes provider of tools/ (`make e2e-tools`),
the file backend with the passphrase provider, etcd + kube-apiserver + kube-controller-manager of
the end-to-end harness on 127.0.0.1 (each preview reads the cluster). The stacks are the export
benchmark's stack of `--apps` apps (sealed-secrets), `--stacks` times, each with its own state.

    .venv/bin/python bench/pulumi_many.py [--stacks 10] [--apps 100]
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.export import stack_doc  # noqa: E402
from bench.pulumi import NEEDED, cluster, split  # noqa: E402
from ksecrets import yamlio  # noqa: E402
from tests.e2e.harness import binaries, missing_binaries, procs  # noqa: E402
from tests.e2e.harness.pulumi import SKIP_CHECKPOINTS, PulumiProject  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int, str]:
    started, cpu0 = time.monotonic(), _children_cpu()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=7200)
    finally:
        if proc.poll() is None:
            procs.kill_tree(proc.pid)
    return time.monotonic() - started, _children_cpu() - cpu0, proc.returncode, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=10)
    parser.add_argument("--apps", type=int, default=100)
    args = parser.parse_args()
    missing = missing_binaries(NEEDED)
    if missing:
        print(f"bench/pulumi_many.py: not built: {', '.join(missing)}; run `make e2e-tools`", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    print(f"# {args.stacks} stacks x {args.apps} apps, pulumi preview, load average {load:.1f} at the start")
    print(f"{'how':<44} {'wall s':>8} {'CPU s':>8} {'s/stack':>8} {'exit':>5}")
    with tempfile.TemporaryDirectory(prefix="k8s-secrets-bench-many-") as tmp:
        work = Path(tmp)
        try:
            kc = cluster(work, "cluster")
            names = [f"s{i:02d}" for i in range(args.stacks)]
            project = None
            for name in names:
                doc = copy.deepcopy(stack_doc(args.apps))
                doc["config"]["kubernetes:context"] = "e2e"
                files = split(doc, work, name)
                project = PulumiProject(
                    work / "project", binaries(), name, kubeconfig=kc.kubeconfig, stack_file=yamlio.dump(doc)
                )
                for rel, body in files.items():
                    (project.project / rel).parent.mkdir(parents=True, exist_ok=True)
                    (project.project / rel).write_text(body)
                project.init()
            assert project is not None
            env = project.env()
            runs = [
                (
                    "pulumi preview --stack S, one after another",
                    None,
                ),
                ("ksecrets preview --all-stacks --parallel 1", ["--parallel", "1"]),
                ("ksecrets preview --all-stacks --parallel 2", ["--parallel", "2"]),
            ]
            for label, flags in runs:
                if flags is None:
                    script = " && ".join(
                        f"{project.bin / 'pulumi'} preview --non-interactive --stack {n} > /dev/null" for n in names
                    )
                    wall, cpu, code, out = timed(["sh", "-c", script], project.project, {**env, **SKIP_CHECKPOINTS})
                else:
                    argv = [sys.executable, "-m", "ksecrets", "preview", "--all-stacks", *flags]
                    wall, cpu, code, out = timed([*argv, "--root", str(project.project)], project.project, env)
                print(f"{label:<44} {wall:>8.1f} {cpu:>8.1f} {wall / len(names):>8.1f} {code:>5}", flush=True)
                if code:
                    print(out[-3000:], file=sys.stderr)
            kc.stop()
        finally:
            procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
