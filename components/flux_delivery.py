"""What a `pulumi preview` of a flux-delivered stack says about the layers Flux applies.

Under `delivery: flux` (README "Delivery: pulumi or flux") Pulumi registers the stack's sync/
Kustomizations only (and the manual backend's never-exported Secrets): the apps and
infrastructure layers reach the cluster from `k8s/<stack>/` in Git, so the engine's plan cannot
show their changes. The program therefore renders the stack as `ksecrets export` does and compares
it with the committed `k8s/<stack>/` (the export diff of `ksecrets export --check`, for this one
stack): which files, and so which objects, Flux will apply differently from what the config says,
and how many objects each layer holds. `__main__.py` prints these lines with `pulumi.log` (here, beside the program, because `ksecrets.usecases.export`
itself builds on `ksecrets.usecases`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ksecrets.usecases import export
from ksecrets.config.model import StackConfig


@dataclass
class Report:
    info: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def report(cfg: StackConfig) -> Report:
    root = Path(cfg.root)
    rendered = export.render(cfg)
    where = f"{export.OUTPUT_DIR}/{cfg.stack}"
    out = Report()
    counts = ", ".join(f"{len(rendered.objects[layer])} in {where}/{layer}" for layer in export.LAYERS)
    out.info.append(f"delivery flux: Flux applies the stack from Git ({counts}); Pulumi registers {where}/sync")
    result = export.plan(root, [rendered], prune_stacks=False)
    lines = result.lines(root)
    if lines:
        out.warnings.append(
            f"delivery flux: {len(lines)} file(s) of {where}/ and {export.ENTRY_DIR}/{cfg.stack}/ differ from what "
            f"{cfg.source} renders; Flux applies what "
            "is committed, so these changes reach the cluster once `ksecrets export` is run and committed:"
        )
        out.warnings += [f"  {line}" for line in lines]
    else:
        out.info.append(f"delivery flux: {where}/ is up to date with {cfg.source}")
    return out
