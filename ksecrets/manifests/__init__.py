"""Pure builders: stack config → Kubernetes objects as plain dicts. No Pulumi, no I/O."""

from ksecrets.manifests.plan import Manifest, Planned
from ksecrets.manifests.stack import build_stack

__all__ = ["Manifest", "Planned", "build_stack"]
