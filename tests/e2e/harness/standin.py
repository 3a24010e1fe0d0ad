"""The loop shared by the harness's stand-ins for programs that do not run here (helm-controller:
`gitops.HelmStandIn`; the scheduler and kubelet: `kubelet.PodStandIn`): a daemon thread calling
`step()` every `interval` seconds until stopped.

What a real controller retries is retried here too: the API server's 429 (API Priority and
Fairness sheds load on a busy machine), 5xx, a refused or reset connection and a timeout are
counted in `retried` and tried again at the next tick. Anything else is a finding, kept in
`errors`, which the tests assert empty.
"""

from __future__ import annotations

import threading

import requests

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code in TRANSIENT_STATUS
    return isinstance(exc, (requests.ConnectionError, requests.Timeout))


class StandInLoop:
    name = "stand-in"

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.errors: list[str] = []
        self.retried = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> None:  # pragma: no cover - each stand-in defines it
        raise NotImplementedError

    def failed(self, what: str, status: int, text: str) -> None:
        """A request answered `status`: transient ones are tried again at the next tick."""
        if status in TRANSIENT_STATUS:
            self.retried += 1
        else:
            self.errors.append(f"{what}: {status} {text[:200]}")

    def start_loop(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - a finding unless the server asked to retry
                if is_transient(exc):
                    self.retried += 1
                else:
                    self.errors.append(str(exc))
