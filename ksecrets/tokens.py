"""Credential token formats with a fixed prefix or shape (AWS key IDs, GitHub and GitLab tokens,
JWTs): the one list, read by `scan` (committed files) and `envfile` (key names that are tokens).
Standard library only, below both."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Iterator


def line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


# Token formats with a fixed prefix or shape (each documented by its issuer). AWS's documentation
# example key ends in EXAMPLE and is not a credential.
_CREDENTIALS: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (
        re.compile(rb"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z2-7]{16}(?![A-Z0-9])"),
        "AWS access key ID",
    ),
    (re.compile(rb"(?<![A-Za-z0-9_])gh[opusr]_[A-Za-z0-9]{36}(?![A-Za-z0-9_])"), "GitHub token"),
    (re.compile(rb"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}(?![A-Za-z0-9_])"), "GitHub token"),
    (re.compile(rb"(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])"), "GitLab token"),
    # A JWT: base64url of '{"' starts with eyJ, for the header and the payload; then a signature.
    (re.compile(rb"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{16,}"), "JWT"),
)


def find_credentials(data: bytes) -> Iterator[tuple[int, str]]:
    for pattern, what in _CREDENTIALS:
        for match in pattern.finditer(data):
            if match.group(0).endswith(b"EXAMPLE"):
                continue
            if what == "JWT" and not _is_jwt(match.group(0)):
                continue
            yield line_of(data, match.start()), what


def _is_jwt(token: bytes) -> bool:
    import json

    head, payload, _ = token.split(b".", 2)
    try:
        for part in (head, payload):
            if not isinstance(json.loads(base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))), dict):
                return False
    except (ValueError, binascii.Error):
        return False
    return True
