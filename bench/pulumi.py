"""`pulumi preview` and `pulumi up` of one stack of 10, 100 and 1000 apps against a local API server,
beside `kubectl apply --server-side` of the same exported objects, in the same run.

The stack keeps `k8s-secrets:sealed` and `k8s-secrets:apps` in files beside the stack file
(README "Large stacks"): inline, the config the engine passes in PULUMI_CONFIG is over Linux's
128 KiB for one environment variable from about 50 apps on, and `pulumi` cannot start the program.

Everything real: the Pulumi CLI, Python host and Kubernetes provider of tools/ (`make e2e-tools`),
etcd + kube-apiserver + kube-controller-manager of the end-to-end harness on 127.0.0.1. Each size
gets two fresh clusters: one for Pulumi (preview, then up of a new stack), one for kubectl (one
`apply --server-side` of every object `ksecrets export` writes for the same stack file). The stack
is the export benchmark's (sealed-secrets; per app a namespace, ServiceAccount, Role, RoleBinding,
Deployment, SealedSecret). helm-controller is simulated as in the tests: the one HelmRelease is
marked Ready through the status subresource while `pulumi up` waits for it.

    .venv/bin/python bench/pulumi.py [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from bench.export import stack_doc  # noqa: E402
from ksecrets import yamlio  # noqa: E402
from ksecrets.config import load_stack_file  # noqa: E402
from ksecrets.config.includes import ENGINE_CONFIG_LIMIT, engine_config_size, engine_config_sizes, project_defaults  # noqa: E402,E501
from ksecrets.export import render  # noqa: E402
from tests.e2e.harness import binaries, missing_binaries  # noqa: E402
from tests.e2e.harness import procs  # noqa: E402
from tests.e2e.harness.gitops import bootstrap_flux, install_chart_crds  # noqa: E402
from tests.e2e.harness.kube import Cluster  # noqa: E402
from tests.e2e.harness.pulumi import HelmReleaseReady, PulumiProject  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NEEDED = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "pulumi",
    "pulumi-language-python",
    "pulumi-resource-kubernetes",
)
INCLUDED = ("sealed", "apps")
CRDS = sorted((ROOT / "ksecrets" / "schemas" / "crds").glob("*.yaml"))


def cluster(work: Path, name: str) -> Cluster:
    c = Cluster(work / name, binaries())
    c.start()
    install_chart_crds(c, CRDS)
    bootstrap_flux(c)
    return c


def split(doc: dict, root: Path, stack: str) -> dict[str, str]:
    """Move the big keys into stacks/<stack>/<key>.yaml under `root`; returns file → text."""
    files = {}
    for key in INCLUDED:
        rel = f"stacks/{stack}/{key}.yaml"
        files[rel] = yamlio.dump(doc["config"][f"k8s-secrets:{key}"])
        doc["config"][f"k8s-secrets:{key}"] = rel
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return files


def kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):,.2f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    missing = missing_binaries(NEEDED)
    if missing:
        print(f"bench/pulumi.py: not built: {', '.join(missing)}; run `make e2e-tools`", file=sys.stderr)
        return 2
    print(
        f"{'apps':>5} {'objects':>8} {'preview s':>10} {'up s':>8} {'kubectl s':>10} "
        f"{'preview/kubectl':>16} {'up/kubectl':>11}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="k8s-secrets-bench-pulumi-") as tmp:
        try:
            for apps in (int(s) for s in args.sizes.split(",")):
                work = Path(tmp) / str(apps)
                work.mkdir()
                inline = stack_doc(apps)
                inline["config"]["kubernetes:context"] = "e2e"
                sizes = engine_config_sizes(inline["config"], project_defaults(ROOT))
                doc = copy.deepcopy(inline)
                files = split(doc, work, "bench")
                text = yamlio.dump(doc)
                (work / "Pulumi.bench.yaml").write_text(text)
                print(
                    f"# {apps} apps: PULUMI_CONFIG inline {kib(engine_config_size(inline['config'], project_defaults(ROOT)))}"
                    f" (k8s-secrets:sealed {kib(sizes['k8s-secrets:sealed'])}, k8s-secrets:apps "
                    f"{kib(sizes['k8s-secrets:apps'])}); with both in files "
                    f"{kib(engine_config_size(doc['config'], project_defaults(ROOT)))}; limit "
                    f"{kib(ENGINE_CONFIG_LIMIT)}",
                    flush=True,
                )
                objects = [
                    o
                    for layer in ("infrastructure", "apps")
                    for o in render(load_stack_file(work / "Pulumi.bench.yaml")).objects[layer]
                ]

                kc = cluster(work, "kubectl")
                start = time.perf_counter()
                kc.kubectl(
                    "apply",
                    "--server-side",
                    "--field-manager=bench",
                    "--force-conflicts",
                    "-f",
                    "-",
                    input=yaml.safe_dump_all(objects),
                    timeout=3600,
                )
                kubectl_s = time.perf_counter() - start
                kc.stop()

                pc = cluster(work, "pulumi")
                project = PulumiProject(
                    work / "project", binaries(), "bench", kubeconfig=pc.kubeconfig, stack_file=text, context=None
                )
                for rel, body in files.items():
                    (project.project / rel).parent.mkdir(parents=True, exist_ok=True)
                    (project.project / rel).write_text(body)
                project.init()
                print(
                    f"# {apps} apps: {len(objects)} objects; kubectl {kubectl_s:.1f} s; pulumi preview...", flush=True
                )
                preview = project.run("preview", timeout=3600)
                print(f"# {apps} apps: preview {preview.seconds:.1f} s; pulumi up...", flush=True)
                with HelmReleaseReady(pc):
                    up = project.run("up", "--yes", "--skip-preview", timeout=3600)
                pc.stop()
                row = (apps, len(objects), preview.seconds, up.seconds, kubectl_s)
                rows.append(row)
                print(
                    f"{apps:>5} {len(objects):>8} {preview.seconds:>10.1f} {up.seconds:>8.1f} {kubectl_s:>10.2f} "
                    f"{preview.seconds / kubectl_s:>16.1f} {up.seconds / kubectl_s:>11.1f}",
                    flush=True,
                )
        finally:
            procs.stop_all()
    for (a0, n0, p0, u0, k0), (a1, n1, p1, u1, k1) in zip(rows, rows[1:]):
        print(
            f"{a0}->{a1} apps ({n1 / n0:.0f}x objects): preview x{p1 / p0:.1f}, up x{u1 / u0:.1f}, "
            f"kubectl x{k1 / k0:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
