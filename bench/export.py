"""Export time for one stack with 1, 10, 100 and 1000 apps, pinned to one core.

Each app has a namespace, ServiceAccount, Role, RoleBinding, Deployment and a SealedSecret with
three sealed values, so a stack of N apps is about 6N objects. The whole export is timed: load
and validate the stack file, build, schema-validate, dump YAML, write files (into a temp dir).

    .venv/bin/python bench/export.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ksecrets import yamlio  # noqa: E402
from ksecrets.usecases.export import export  # noqa: E402


def stack_doc(apps: int) -> dict:
    fake = base64.b64encode(b"\x02\x00" + bytes(range(256)) * 2 + b"x" * 40).decode()
    return {
        "config": {
            "k8s-secrets:backend": "sealed-secrets",
            "k8s-secrets:sealedSecrets": {"chartVersion": "2.18.5", "certificate": "certs/bench.pem"},
            "k8s-secrets:monitoring": {"enabled": False},
            "k8s-secrets:allowPlaceholders": ["apps.deployments.image"],
            "k8s-secrets:apps": [
                {
                    "name": f"app{i}",
                    "namespace": f"team{i}",
                    "secretName": f"app{i}-secrets",
                    "deployments": [
                        {
                            "name": f"app{i}",
                            "image": "ghcr.io/example/app:1.0.0",
                            "port": 8080,
                            "env": {"DATABASE_URL": "DATABASE_URL"},
                        }
                    ],
                }
                for i in range(apps)
            ],
            "k8s-secrets:sealed": [
                {
                    "name": f"app{i}-secrets",
                    "namespace": f"team{i}",
                    "scope": "strict",
                    "encryptedData": {"API_KEY": fake, "DATABASE_URL": fake, "PASSWORD": fake},
                }
                for i in range(apps)
            ],
        }
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the best is reported")
    parser.add_argument("--sizes", default="1,10,100,1000")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"{'apps':>6} {'objects':>8} {'files':>6} {'seconds':>8} {'ms/object':>10}")
    for apps in (int(s) for s in args.sizes.split(",")):
        best = float("inf")
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                (root / "Pulumi.bench.yaml").write_text(yamlio.dump(stack_doc(apps)))
                start = time.perf_counter()
                plan = export(root, ["bench"])
                best = min(best, time.perf_counter() - start)
                files = len(plan.write)
                objects = sum(1 for p in plan.write if p.name != "kustomization.yaml")
        print(f"{apps:>6} {objects:>8} {files:>6} {best:>8.3f} {1000 * best / objects:>10.3f}")


if __name__ == "__main__":
    main()
