"""Start-up time of every `ksecrets` subcommand next to the imports any sealing tool needs.

The baseline is `python -c "import cryptography.hazmat.primitives.asymmetric.rsa, yaml"` with the
same interpreter: what a Python tool that seals must load, whatever it does. For each subcommand we
time `ksecrets <sub> --help` (parser built, nothing run) and, for `seal`, a real offline seal of
one Secret from stdin and `seal --version`. Each command runs ROUNDS times interleaved with the
baseline and the best of each is kept (other load on the machine only slows things down). The
target is a ratio of at most 1.5.

Run: .venv/bin/python bench/startup.py   (BENCH_ROUNDS=N, default 15)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ksecrets.cli import SUBCOMMANDS  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
TARGET = 1.5
BASELINE = [sys.executable, "-c", "import cryptography.hazmat.primitives.asymmetric.rsa, yaml"]
SECRET = (b"apiVersion: v1\nkind: Secret\nmetadata: {name: app-secrets, namespace: my-app}\n"
          b"stringData: {API_KEY: not-a-real-key-0123456789}\n")


def timed(argv: list[str], stdin: bytes | None) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.decode()[:300]}")
    return elapsed


def cases() -> list[tuple[str, list[str], bytes | None]]:
    ksecrets = [sys.executable, "-m", "ksecrets"]
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
    todo = cases()
    best_base = float("inf")
    best = {label: float("inf") for label, _, _ in todo}
    for _ in range(ROUNDS):
        for label, argv, stdin in todo:
            best_base = min(best_base, timed(BASELINE, None))
            best[label] = min(best[label], timed(argv, stdin))
    print(f"baseline: python -c \"import cryptography.hazmat.primitives.asymmetric.rsa, yaml\": "
          f"{best_base * 1000:.0f} ms (best of {ROUNDS * len(todo)})")
    print()
    print("| command | ms | baseline ms | ratio |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    for label, _, _ in todo:
        ratio = best[label] / best_base
        worst = max(worst, ratio)
        print(f"| `ksecrets {label}` | {best[label] * 1000:.0f} | {best_base * 1000:.0f} | {ratio:.2f} |")
    print()
    print(f"worst ratio {worst:.2f} (target <= {TARGET}); best of {ROUNDS} runs each, {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
