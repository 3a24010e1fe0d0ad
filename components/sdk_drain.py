"""Let the Python SDK drain a large program in linear time (README "Large stacks", issue 22 item 5).

The SDK (pulumi 3.272.0, the newest on PyPI) runs the program's module code, then
`pulumi.runtime.stack.wait_for_rpcs` drains it in two loops:

1. every RPC the program started (`RPCManager.rpcs`), awaited one at a time: linear;
2. then every Output still pending (`SETTINGS.outputs`), through `asyncio.wait(pending,
   FIRST_COMPLETED)` in a loop: each pass adds and removes a done-callback on *every* pending
   Output to collect the few that finished, so N Outputs finishing a few at a time cost O(N²).

The language host's exec script (sdk/v3 v3.274.0's, checked) runs the module code with `runpy`
inside `run_in_stack`, and a synchronous program never yields to the event loop before
`wait_for_rpcs` starts, so the RPC
tasks it created (one per registration) have not yet run their first step, which is where each
appends itself to `RPCManager.rpcs`. Loop 1 finds the list empty and the whole deployment is
drained by loop 2: about 350k done-callbacks at 100 apps, growing with the square of the apps.

The remedy uses public API only: an async entry point (`pulumi.run`, awaited after the module code
and before the drain) that yields to the event loop once. Every RPC task then takes its first
step and is in `RPCManager.rpcs`, so loop 1 awaits each registration once and loop 2 finds
(almost) nothing pending. Nothing else changes: the same registrations, in the same order, and a
failed registration still fails the program from the SDK's own loop.

`tests/components/test_sdk_drain.py` runs the program the way the language host does, under
mocks that answer one registration at a time, and fails when the SDK's drain stops being
quadratic without this (then delete this module and its call in `__main__.py`) or when this
stops making it linear.
"""

from __future__ import annotations

import asyncio

import pulumi


async def _yield_once() -> None:
    await asyncio.sleep(0)


def let_the_sdk_see_every_registration() -> None:
    """Call once, at the end of `__main__.py` (``pulumi.run`` may be called once per program)."""
    pulumi.run(_yield_once)
