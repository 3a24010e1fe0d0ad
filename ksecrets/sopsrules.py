"""What a SOPS file looks like, without any cryptography (standard library only): the shape of an
encrypted value, the `sops` metadata key and the rules saying which values a file encrypts.

`ksecrets.sealing.sops` (the format: age, AES-GCM, the MAC) builds on this; `ksecrets.scan` uses it
alone to tell an encrypted SOPS file from one whose values are in clear. The rules are sops.go's
shouldBeEncrypted (sops 3.13) without the comment rules, which `ksecrets` does not support.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ksecrets.errors import KsecretsError

METADATA_KEY = "sops"
# What Flux's documentation and `.sops.yaml` creation rules use for Kubernetes Secrets.
SECRET_ENCRYPTED_REGEX = "^(data|stringData)$"
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
ENC = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]")
RULE_NAMES = ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex")
COMMENT_RULE_NAMES = ("unencrypted_comment_regex", "encrypted_comment_regex")


class SopsError(KsecretsError):
    """A SOPS file that cannot be read, decrypted or verified (one line, never a value)."""


def looks_like_sops(text: str) -> bool:
    """Cheap test for callers choosing a reader: a top-level `sops:` key with a `mac`."""
    return bool(re.search(r"^sops:\s*$", text, re.M)) and bool(re.search(r"^\s+mac:", text, re.M))


def is_ciphertext(value: object) -> bool:
    """One encrypted SOPS value (`ENC[AES256_GCM,...]`)."""
    return isinstance(value, str) and ENC.match(value) is not None


@dataclass(frozen=True)
class Rules:
    """Which leaves are encrypted (sops.go shouldBeEncrypted, without the comment rules)."""

    unencrypted_suffix: str = ""
    encrypted_suffix: str = ""
    unencrypted_regex: str = ""
    encrypted_regex: str = ""
    mac_only_encrypted: bool = False

    def encrypted(self, path: Sequence[str]) -> bool:
        result = True
        if self.unencrypted_suffix and any(p.endswith(self.unencrypted_suffix) for p in path):
            result = False
        if self.encrypted_suffix:
            result = any(p.endswith(self.encrypted_suffix) for p in path)
        if self.unencrypted_regex and any(re.search(self.unencrypted_regex, p) for p in path):
            result = False
        if self.encrypted_regex:
            result = any(re.search(self.encrypted_regex, p) for p in path)
        return result


def rules(meta: Mapping[str, Any], source: str) -> Rules:
    for name in COMMENT_RULE_NAMES:
        if meta.get(name):
            raise SopsError(f"{source}: sops.{name} is not supported (comments are not kept here)")
    given = {name: meta[name] for name in RULE_NAMES if meta.get(name)}
    if len(given) > 1:
        raise SopsError(f"{source}: sops: more than one of {', '.join(RULE_NAMES)}")
    for name, value in given.items():
        if not isinstance(value, str):
            raise SopsError(f"{source}: sops.{name}: not a string")
        if name.endswith("regex"):
            try:
                re.compile(value)
            except re.error:
                raise SopsError(f"{source}: sops.{name}: not a regular expression this reader understands") from None
    if not given:
        given = {"unencrypted_suffix": DEFAULT_UNENCRYPTED_SUFFIX}
    only = meta.get("mac_only_encrypted", False)
    if isinstance(only, str):
        only = only.lower() in ("1", "t", "true")
    return Rules(**given, mac_only_encrypted=bool(only))
