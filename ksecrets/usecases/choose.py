"""The guide's decision matrix: which backend an environment gets, and why, in the guide's terms.

A pure function of the answers `ksecrets init` collects (team size, security, compliance, GitOps,
rotation, audit, dynamic secrets, and what the team uses today). The rules are written once, in
`RULES`, in the order they are tried: the first that applies to an environment decides, and its
`why` is the explanation `init` prints and writes into the stack file. `tests/cli/test_init.py`
checks the matrix as a table, one row per rule. Requirements of compliance, audit, rotation and
dynamic secrets bind the production environments; the others get the lighter GitOps backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# The answers' vocabularies, each written once (the prompts and the flags' choices read them).
TEAM_SIZES = ("small", "medium", "large")  # 1-5 people, 6-20, more than 20
SECURITY = ("standard", "high")
COMPLIANCE = ("none", "soc2", "iso27001", "pci-dss", "hipaa", "gdpr")
GITOPS = ("flux", "none")
ROTATION = ("manual", "automated")
AUDIT = ("git", "access-log")  # who changed what (Git history) / who read which secret, when
CLUSTERS = ("managed", "self-hosted", "local")
CI = ("github", "none")
SECRET_KINDS = ("app-config", "api-keys", "database", "tls")
CURRENT = ("none", "plaintext", "sealed-secrets", "sops", "vault", "other")


# What the team uses today that the matrix keeps (asked as a tool, not compared as a backend).
KEEP_VAULT = ("vault",)
KEEP_SOPS = ("sops",)


@dataclass(frozen=True)
class Answers:
    """What the guide asks before it recommends (one set for the whole project)."""

    team_size: str = "small"
    security: str = "standard"
    compliance: str = "none"
    gitops: str = "flux"
    rotation: str = "manual"
    audit: str = "git"
    dynamic_secrets: bool = False
    current: str = "none"


@dataclass(frozen=True)
class Rule:
    name: str  # the matrix's factor
    applies: Callable[[Answers, bool], bool]  # (answers, production?)
    backend: str
    why: str


# Tried in order; the last one always applies.
RULES: tuple[Rule, ...] = (
    Rule(
        "dynamic secrets",
        lambda a, prod: a.dynamic_secrets and prod,
        "vault",
        "dynamic secrets: only Vault issues short-lived database credentials (VaultDynamicSecret)",
    ),
    Rule(
        "compliance",
        lambda a, prod: a.compliance != "none" and prod,
        "vault",
        "compliance: an audit device logs every read, one policy per app, values never in Git",
    ),
    Rule(
        "audit",
        lambda a, prod: a.audit == "access-log" and prod,
        "vault",
        "audit: who read which secret and when is in Vault's audit log; Git only shows who changed it",
    ),
    Rule(
        "rotation",
        lambda a, prod: a.rotation == "automated" and prod,
        "vault",
        "rotation: automated in the cluster (the rotator CronJob, PostgreSQL passwords too)",
    ),
    Rule(
        "security and team size",
        lambda a, prod: a.security == "high" and a.team_size == "large" and prod,
        "vault",
        "security: a large team with high requirements needs access policies per app, not one cluster key",
    ),
    Rule(
        "Vault today",
        lambda a, prod: a.current in KEEP_VAULT,
        "vault",
        "Vault today: the team already runs it; the operator syncs its values, nothing to migrate",
    ),
    Rule(
        "no GitOps",
        lambda a, prod: a.gitops == "none",
        "manual",
        "no GitOps: Pulumi applies the stack, values are Pulumi config secrets (never exported to k8s/)",
    ),
    Rule(
        "SOPS today",
        lambda a, prod: a.current in KEEP_SOPS,
        "sops",
        "GitOps, SOPS today: encrypted files in Git that Flux decrypts with an age key, no controller to run",
    ),
    Rule(
        "GitOps",
        lambda a, prod: True,
        "sealed-secrets",
        "GitOps with a small or medium need: values sealed into Git, the controller unseals them; "
        "rotation is semi-automated (`ksecrets rotate` re-seals)",
    ),
)


@dataclass(frozen=True)
class Choice:
    environment: str
    backend: str
    rule: str
    why: str


def choose(answers: Answers, environment: str, production: bool) -> Choice:
    """The first rule of the matrix that applies to this environment."""
    for rule in RULES:
        if rule.applies(answers, production):
            return Choice(environment, rule.backend, rule.name, rule.why)
    raise AssertionError("the last rule always applies")  # pragma: no cover


def choose_all(answers: Answers, environments: Sequence[str], production: Sequence[str]) -> list[Choice]:
    return [choose(answers, env, env in production) for env in environments]
