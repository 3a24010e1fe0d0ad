"""Run `__main__.py` the way the Python language host does, under mocks that answer like the engine.

`tests/pulumi_harness.py` runs a program under `pulumi.runtime.test`, which pumps the event loop
while the program runs; the language host does not: its exec script runs the module code with
`runpy` inside `pulumi.runtime.stack.run_in_stack` and only then drains (`wait_for_rpcs`). That
order is what makes the SDK's drain quadratic (components/sdk_drain.py), so this runs the real
`__main__.py` in that order, in a process of its own (fresh SDK state, a clean CPU count). (The
exec script of sdk/v3 v3.274.0, which the e2e suite's host runs, calls
`pulumi.runtime.run_in_stack` around `runpy.run_path(program)`; it also sets a thread pool of
4 × `--parallel` workers for the blocking RPCs, where this keeps asyncio's default.)

    python -m tests.pulumi_host --apps 100 [--delay 0.002] [--preview] [--no-shim]

The mocks answer one registration at a time, each after `--delay` seconds, as the engine's
serialised steps do (with instant answers nothing is pending when the drain starts); `--fail TYPE`
makes them refuse every resource of a type. It prints one JSON line: resources registered, how
often the stack was planned, the process's CPU seconds (all threads) from module start to the
end of the drain, and what the drain passed to `asyncio.wait` (calls, futures, the most at once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import runpy
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _stack_project(apps: int, root: Path) -> dict[str, str]:
    """The bench stack (bench/export.py) of `apps` apps, its growing keys in files as README
    "Large stacks" says; returns the config as the engine passes it (strings, JSON)."""
    from bench.export import stack_doc
    from ksecrets import yamlio

    doc = stack_doc(apps)
    config = doc["config"]
    config["kubernetes:context"] = "mocks"
    for key in ("sealed", "apps"):
        rel = f"stacks/bench/{key}.yaml"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(yamlio.dump(config[f"k8s-secrets:{key}"]))
        config[f"k8s-secrets:{key}"] = rel
    (root / "Pulumi.bench.yaml").write_text(yamlio.dump(doc))
    return {k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in config.items()}


def run(apps: int, delay: float, preview: bool, shim: bool, fail: str | None = None) -> dict[str, Any]:
    import pulumi
    import pulumi.runtime.stack as stack_module
    from pulumi.runtime import settings

    sys.path.insert(0, str(ROOT))
    from tests.pulumi_harness import RecordingMocks

    engine = threading.Lock()

    class SerialMocks(RecordingMocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
            with engine:  # one step at a time, as the engine's snapshot manager serialises them
                time.sleep(delay)
            if args.typ == fail:
                raise RuntimeError(f"mocks: refused {args.typ} {args.name}")
            return super().new_resource(args)

    drain = {"waits": 0, "futures": 0, "most": 0}
    real_wait = asyncio.wait

    async def counted_wait(fs, *args, **kwargs):  # type: ignore[no-untyped-def]
        fs = list(fs)
        drain["waits"] += 1
        drain["futures"] += len(fs)
        drain["most"] = max(drain["most"], len(fs))
        return await real_wait(fs, *args, **kwargs)

    # What __main__.py imports, imported before the clock starts (the count is of the run).
    import components.cluster  # noqa: F401
    import components.platform  # noqa: F401
    import components.pulumi_source  # noqa: F401
    import components.sdk_drain
    import ksecrets.usecases.stack_facts as stack_facts

    plans = {"count": 0}
    real_build = stack_facts.build_stack

    def counted_build(*args: Any, **kwargs: Any) -> Any:
        plans["count"] += 1
        return real_build(*args, **kwargs)

    stack_facts.build_stack = counted_build  # type: ignore[assignment]

    if not shim:
        components.sdk_drain.let_the_sdk_see_every_registration = lambda: None

    with tempfile.TemporaryDirectory(prefix="k8s-secrets-pulumi-host-") as tmp:
        config = _stack_project(apps, Path(tmp))
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        mocks = SerialMocks()
        pulumi.runtime.set_mocks(mocks, project="k8s-secrets", stack="bench", preview=preview)
        loop.run_until_complete(asyncio.sleep(0.05))  # the mocks' own root Stack registration
        # As the exec script: no root yet, the config from PULUMI_CONFIG, then run_in_stack(runpy).
        settings.set_root_resource(None)  # type: ignore[arg-type]
        settings.SETTINGS.rpc_manager.clear()
        settings.SETTINGS.outputs.clear()
        pulumi.runtime.set_all_config(config, [])
        cwd = os.getcwd()
        os.chdir(tmp)
        asyncio.wait = counted_wait  # type: ignore[assignment]
        started, cpu0 = time.perf_counter(), _cpu()
        try:
            loop.run_until_complete(
                stack_module.run_in_stack(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"))
            )
        finally:
            asyncio.wait = real_wait  # type: ignore[assignment]
            os.chdir(cwd)
        cpu, wall = _cpu() - cpu0, time.perf_counter() - started
        loop.close()
    return {
        "apps": apps,
        "resources": len(mocks.resources),
        "cpu": round(cpu, 2),
        "wall": round(wall, 2),
        "drain": drain,
        "plans": plans["count"],
        "shim": shim,
        "preview": preview,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.002, help="seconds per registration (serialised)")
    parser.add_argument("--preview", action="store_true")
    parser.add_argument("--no-shim", action="store_true", help="without components/sdk_drain.py")
    parser.add_argument("--fail", metavar="TYPE", help="the engine refuses every resource of this type")
    args = parser.parse_args()
    print(json.dumps(run(args.apps, args.delay, args.preview, not args.no_shim, args.fail)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
