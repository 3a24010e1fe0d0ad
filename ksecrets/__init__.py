"""k8s-secrets domain logic and the `ksecrets` command line.

Nothing in this package imports Pulumi, except the one adapter
`ksecrets.config.pulumi_source`, which is imported only by `__main__.py` and `components/`.
"""

__version__ = "0.1.0"
