"""Run the Pulumi program in-process under `pulumi.runtime.set_mocks` and record every resource.

No CLI, engine or provider plugin is involved: the mocks answer each registration with its own
inputs, so what we record is exactly what the program asked Pulumi to create.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Callable

import pulumi


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]
    custom: bool


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Registered] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs), bool(args.custom)))
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        return {}, []


def run_program(
    program: Callable[[], Any], *, stack: str, config: dict[str, Any] | None = None, project: str = "k8s-secrets"
) -> tuple[RecordingMocks, Any]:
    """Run `program()` under mocks and wait for every registration; return the mocks and result."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False)
    pulumi.runtime.settings._set_config_secret_keys = None  # noqa: SLF001 (reset between runs)
    if config is not None:
        pulumi.runtime.set_all_config(
            {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()},
            secret_keys=[k for k in config if k.endswith("manualValues")],
        )
    result: dict[str, Any] = {}

    @pulumi.runtime.test
    def _run():
        result["value"] = program()
        return pulumi.Output.from_input(None)

    _run()
    return mocks, result.get("value")


def resolve(output: Any) -> Any:
    """The plain value of an Output (or nested structure of Outputs) under mocks."""

    async def go(value: Any) -> Any:
        if isinstance(value, pulumi.Output):
            return await go(await value.future())
        if isinstance(value, dict):
            return {k: await go(v) for k, v in value.items()}
        if isinstance(value, list):
            return [await go(v) for v in value]
        return value

    return asyncio.get_event_loop().run_until_complete(go(output))
