"""Errors that the command line turns into one line and an exit code.

Messages name the file, the key path and the line, never a secret value: a value may be a
password, and an exception message ends up in CI logs.
"""

from __future__ import annotations


class KsecretsError(Exception):
    """Bad input or configuration: one line on stderr, exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line, always: a multi-line message in CI logs hides the part that matters.
        super().__init__(" ".join(str(message).split()))


class ConfigError(KsecretsError):
    """A stack file or config value is invalid. Formats as `<file>: <key path>: <problem>`."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        self.source = source
        self.path = path
        self.problem = problem
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {problem}")


class CheckFailed(KsecretsError):
    """A check found differences (drift, stale certificate, leak): exit code 1."""

    exit_code = 1
