"""Stack configuration: the typed model and its loaders.

`load_stack("staging")` reads `Pulumi.staging.yaml`; `parse(raw, ...)` validates a mapping of
`k8s-secrets:` keys from any source (the Pulumi adapter is `components/pulumi_source.py`).
"""

from ksecrets.config.load import load_stack, load_stack_file, parse
from ksecrets.config.names import stack_files
from ksecrets.config.model import App, StackConfig

__all__ = ["App", "StackConfig", "load_stack", "load_stack_file", "parse", "stack_files"]
