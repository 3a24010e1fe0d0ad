"""k8s-secrets domain logic and the `ksecrets` command line.

Nothing in this package imports Pulumi (tests/test_layering.py): the Pulumi adapter of the config
is `components/pulumi_source.py`, beside the Pulumi layer.
"""

from __future__ import annotations

DISTRIBUTION = "k8s-secrets"


def version() -> str:
    """The version, written once in pyproject.toml: the installed package's metadata, or, in a
    source tree that is not installed, pyproject.toml beside the package."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, tomllib.TOMLDecodeError, KeyError):
            return "0+unknown"


def __getattr__(name: str) -> str:  # `ksecrets.__version__`, read when asked for (no import-time cost)
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
