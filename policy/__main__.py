"""k8s-secrets guardrails: `pulumi preview --policy-pack policy` (see pack.py for the policies)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from pack import POLICIES  # noqa: E402

PolicyPack(
    name="k8s-secrets-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
