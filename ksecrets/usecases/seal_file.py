"""`ksecrets seal --merge-into FILE`: seal a Secret's keys into an existing SealedSecret file, in
place, as kubeseal's `--merge-into` does (the file's name, namespace and scope; its other keys
kept). Locked from the read to the write: parallel runs on one file all land; the write is atomic
and keeps the file's mode. Also the size check every sealed output passes before it is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ksecrets.errors import KsecretsError

if TYPE_CHECKING:
    from ksecrets.sealing.certs import SealingCert
    from ksecrets.sealing.secret_input import SecretInput


def check_size(sealed: dict, source: str) -> None:
    """A SealedSecret the API server would refuse (too large, names too long) is an error, before any write."""
    from ksecrets.limits import size_problem

    problem = size_problem(sealed)
    if problem:
        raise KsecretsError(f"{source}: SealedSecret {sealed['metadata'].get('name', '')}: {problem}; nothing written")


def merge_into_file(
    path: str,
    secret: SecretInput,
    cert: SealingCert,
    *,
    scope: str | None,
    fmt: str | None,
    source: str,
    render: Callable[[dict, str], str],
) -> list[str]:
    """Seal `secret`'s keys into the SealedSecret at `path`; the keys sealed, sorted. `fmt` None:
    the file's own format (JSON if it starts with `{`); `render` writes the object in a format."""
    from ksecrets.fileio import atomic_write_text, locked, read_bytes
    from ksecrets.sealing.sealedsecret import merge_sealed, parse_sealed_secret, seal_secret, sealed_scope
    from ksecrets.sealing.secret_input import SCOPE_ANNOTATIONS

    with locked(path, "SealedSecret file") as target:
        text = read_bytes(str(target), "SealedSecret file").decode("utf-8", "replace")
        orig = parse_sealed_secret(text, path)
        # As kubeseal: the values are sealed for the file's name and namespace; but a Secret (or
        # --namespace) that says another namespace is refused, not moved without a word.
        file_ns = orig["metadata"].get("namespace") or ""
        if secret.namespace and file_ns and secret.namespace != file_ns:
            raise KsecretsError(
                f"{source}: namespace {secret.namespace!r} (the Secret's or --namespace) is not the namespace of {path} "
                f"({file_ns!r}); the values would be sealed for {file_ns!r}: fix the Secret's namespace, "
                "or seal it into another file"
            )
        secret.name = orig["metadata"]["name"]
        secret.namespace = file_ns
        if scope is None and not any(k in secret.annotations for k in SCOPE_ANNOTATIONS.values()):
            scope = sealed_scope(orig)
        update = seal_secret(secret, cert, scope=scope, source=source)
        merged = merge_sealed(orig, update, path)
        check_size(merged, path)  # all keys of the file, not only this run's
        fmt = fmt or ("json" if text.lstrip().startswith("{") else "yaml")
        atomic_write_text(target, render(merged, fmt), target.stat().st_mode & 0o777)
    return sorted(update["spec"]["encryptedData"])
