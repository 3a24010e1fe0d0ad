"""Many stacks at once: `pulumi preview` or `pulumi up` over a selection of stacks through the
Pulumi Automation API (`ksecrets preview|up --all-stacks` runs this; issue 22 item 6).

    python -m components.automation {preview,up} [--parallel N] [--no-checkpoints] [--root DIR] STACK...

Each stack runs in its own `LocalWorkspace` over the project folder (the program is the project's
`__main__.py`, as `pulumi up` runs it), at most `--parallel` at once. A stack's output is held
until it finishes and then printed whole under its name, so two stacks' lines never interleave;
a table of every stack follows, and the exit code is the worst stack's (0 all ok, else the first
failing code in the order 2 > 1 > any other). A preview runs with `PULUMI_SKIP_CHECKPOINTS=true`
(it persists nothing); `up` keeps its checkpoints (README "Large stacks") unless `--no-checkpoints`:
then each stack's `up` runs with them skipped, under a run marker, and first recovers a run that
did not finish (components/recovery.py; README "Pulumi at a thousand apps").

Here because it imports Pulumi: nothing under `ksecrets/` does, so `ksecrets up` resolves the
selection and starts this module.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

OPERATIONS = ("preview", "up")
SKIP_CHECKPOINTS = {"PULUMI_SKIP_CHECKPOINTS": "true"}
_CODE = re.compile(r"^ code: (-?\d+)$", re.MULTILINE)


@dataclass
class StackRun:
    stack: str
    operation: str
    code: int = 0
    seconds: float = 0.0
    changes: dict[str, int] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0

    def summary(self) -> str:
        if not self.ok:
            return self.problem or f"failed (exit {self.code})"
        shown = {k: v for k, v in sorted(self.changes.items()) if v}
        return ", ".join(f"{k} {v}" for k, v in shown.items()) or "no resources"


def _exit_code(exc: Exception) -> int:
    """The CLI's exit code from an Automation API `CommandError` (it keeps only the text)."""
    found = _CODE.search(str(exc))
    return int(found.group(1)) if found and int(found.group(1)) != 0 else 1


def _last_error_line(text: str) -> str:
    """The engine's own one-line reason (`error: ...`), never the whole log."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("error:")]
    return lines[-1][:300] if lines else ""


def run_stack(root: Path, stack: str, operation: str, env: dict[str, str], no_checkpoints: bool = False) -> StackRun:
    from pulumi import automation as auto

    from components import recovery

    run = StackRun(stack, operation)
    started = time.monotonic()
    extra = dict(SKIP_CHECKPOINTS) if operation == "preview" else {}
    try:
        workspace = auto.LocalWorkspace(work_dir=str(root), env_vars={**env, **extra})
        target = auto.Stack.select(stack, workspace)
        if operation == "up" and no_checkpoints:
            run.changes = recovery.run_up(root, stack, env, run.output.append)
        elif operation == "preview":
            result = target.preview(on_output=run.output.append, color="never", diff=False)
            run.changes = {str(k): int(v) for k, v in result.change_summary.items()}
        else:
            up = target.up(on_output=run.output.append, color="never", show_secrets=False)
            run.changes = {str(k): int(v) for k, v in (up.summary.resource_changes or {}).items()}
    except recovery.RecoveryError as exc:
        run.code, run.problem = 2, f"ksecrets: {exc}"
        run.output.append(run.problem)
    except auto.StackNotFoundError:
        run.code, run.problem = 2, f"no stack {stack!r} in this backend: run `pulumi stack init {stack}`"
    except auto.CommandError as exc:
        run.code = _exit_code(exc)
        text = str(exc)
        run.problem = _last_error_line(text) or f"pulumi {operation} failed (exit {run.code})"
        # What the CLI printed on stderr belongs to this stack's block too.
        stderr = text.split("\n stderr: ", 1)[1] if "\n stderr: " in text else ""
        run.output.extend(ln for ln in stderr.splitlines() if ln.strip())
    run.seconds = time.monotonic() - started
    return run


def worst(codes: list[int]) -> int:
    failed = [c for c in codes if c]
    if not failed:
        return 0
    for preferred in (2, 1):
        if preferred in failed:
            return preferred
    return failed[0]


def table(runs: list[StackRun]) -> str:
    rows = [("stack", "operation", "result", "seconds", "changes")]
    for r in sorted(runs, key=lambda r: r.stack):
        rows.append((r.stack, r.operation, "ok" if r.ok else f"FAILED ({r.code})", f"{r.seconds:.1f}", r.summary()))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows)


def run_many(
    root: Path,
    stacks: list[str],
    operation: str,
    parallel: int,
    out=None,
    env: dict[str, str] | None = None,
    no_checkpoints: bool = False,
) -> list[StackRun]:
    """Run `operation` on every stack, `parallel` at once; print each stack's block as it finishes."""
    out = out or sys.stdout
    lock = threading.Lock()
    base = dict(env if env is not None else {})

    def one(stack: str) -> StackRun:
        run = run_stack(root, stack, operation, base, no_checkpoints)
        with lock:  # one stack's block at a time: never two stacks' lines interleaved
            verdict = "ok" if run.ok else f"FAILED (exit {run.code})"
            out.write(f"=== {stack}: pulumi {operation} {verdict} in {run.seconds:.1f} s\n")
            for line in run.output:
                out.write(line if line.endswith("\n") else line + "\n")
            out.flush()
        return run

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="stack") as pool:
        return list(pool.map(one, stacks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.automation", description=__doc__.splitlines()[0])
    parser.add_argument("operation", choices=OPERATIONS)
    parser.add_argument("stacks", nargs="+", metavar="STACK")
    parser.add_argument("--parallel", type=int, default=2, help="stacks at once (default 2)")
    parser.add_argument(
        "--no-checkpoints",
        action="store_true",
        help="up: skip the engine's per-step checkpoints, safely (a run marker; a killed run is recovered first)",
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the project folder (Pulumi.yaml)")
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error("--parallel must be 1 or more")
    if args.no_checkpoints and args.operation != "up":
        parser.error("--no-checkpoints is for up (a preview always skips them)")
    stacks = list(dict.fromkeys(args.stacks))
    runs = run_many(
        args.root.resolve(), stacks, args.operation, args.parallel, env={}, no_checkpoints=args.no_checkpoints
    )
    print()
    print(table(runs))
    code = worst([r.code for r in runs])
    failed = [r.stack for r in runs if not r.ok]
    if failed:
        print(f"ksecrets: pulumi {args.operation} failed for {', '.join(failed)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    os.environ.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    sys.exit(main())
