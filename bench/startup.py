"""Start-up time of every `ksecrets` subcommand next to the imports any sealing tool needs.

The baseline is `python -c "import cryptography.hazmat.primitives.asymmetric.rsa, yaml"` with the
same interpreter: what a Python tool that seals must load, whatever it does. For each subcommand we
time `ksecrets <sub> --help` (parser built, nothing run) and, for `seal`, a real offline seal of
one Secret from stdin and `seal --version`. Each command runs ROUNDS times interleaved with the
baseline and the best of each is kept (other load on the machine only slows things down). Both
wall time and CPU time (user+sys of the child) are shown: on a busy shared machine the wall figure
moves with other processes' load, the CPU figure much less. The target is a ratio of at most 1.5.

Bytecode: `pip install` compiles every module, so a user's `ksecrets` never compiles source at
start-up. This machine sets PYTHONDONTWRITEBYTECODE=1, which would make every run of the editable
install compile ksecrets from source (about 50 ms); the benchmark lets Python cache bytecode
under a temporary PYTHONPYCACHEPREFIX (for the baseline too) and warms it up before timing.

Run: .venv/bin/python bench/startup.py   (BENCH_ROUNDS=N, default 15)
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ksecrets.cli import SUBCOMMANDS  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
TARGET = 1.5
BASELINE = [sys.executable, "-c", "import cryptography.hazmat.primitives.asymmetric.rsa, yaml"]
SECRET = (
    b"apiVersion: v1\nkind: Secret\nmetadata: {name: app-secrets, namespace: my-app}\n"
    b"stringData: {API_KEY: not-a-real-key-0123456789}\n"
)


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("SEALED_SECRETS_")}


def timed(argv: list[str], stdin: bytes | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=ENV)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.decode()[:300]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def cases() -> list[tuple[str, list[str], bytes | None]]:
    # The console script pip installs (what users run), next to this interpreter.
    script = Path(sys.executable).parent / "ksecrets"
    ksecrets = [str(script)] if script.exists() else [sys.executable, "-m", "ksecrets"]
    out = []
    for name in SUBCOMMANDS:
        try:
            __import__(f"ksecrets.cli.{SUBCOMMANDS[name][0]}")
        except ModuleNotFoundError:
            continue
        out.append((f"{name} --help", [*ksecrets, name, "--help"], None))
    out.append(("seal --version", [*ksecrets, "seal", "--version"], None))
    out.append(("seal (one Secret, stdin)", [*ksecrets, "seal", "--cert", "certs/staging.pem"], SECRET))
    return out


def main() -> int:
    cache = tempfile.TemporaryDirectory(prefix="ksecrets-bench-pycache-")
    ENV["PYTHONPYCACHEPREFIX"] = cache.name
    todo = cases()
    for _, argv, stdin in [("baseline", BASELINE, None), *todo]:  # warm-up: write the bytecode cache
        timed(argv, stdin)
    best_base, cpu_base = float("inf"), float("inf")
    best = {label: float("inf") for label, _, _ in todo}
    cpu = {label: float("inf") for label, _, _ in todo}
    for _ in range(ROUNDS):
        for label, argv, stdin in todo:
            wall, used = timed(BASELINE, None)
            best_base, cpu_base = min(best_base, wall), min(cpu_base, used)
            wall, used = timed(argv, stdin)
            best[label], cpu[label] = min(best[label], wall), min(cpu[label], used)
    print(
        f'baseline: python -c "import cryptography.hazmat.primitives.asymmetric.rsa, yaml": '
        f"{best_base * 1000:.0f} ms wall, {cpu_base * 1000:.0f} ms CPU (best of {ROUNDS * len(todo)})"
    )
    print()
    print("| command | wall ms | ratio | CPU ms | ratio |")
    print("|---|---:|---:|---:|---:|")
    worst = worst_cpu = 0.0
    for label, _, _ in todo:
        ratio, ratio_cpu = best[label] / best_base, cpu[label] / cpu_base
        worst, worst_cpu = max(worst, ratio), max(worst_cpu, ratio_cpu)
        print(
            f"| `ksecrets {label}` | {best[label] * 1000:.0f} | {ratio:.2f} | {cpu[label] * 1000:.0f} | {ratio_cpu:.2f} |"
        )
    print()
    print(
        f"worst ratio: wall {worst:.2f}, CPU {worst_cpu:.2f} (target <= {TARGET}); best of {ROUNDS} runs each, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
