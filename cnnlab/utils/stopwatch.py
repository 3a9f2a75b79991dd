"""Where a run's time goes: seconds per stage, as metrics.json's `timings` records them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from cnnlab.utils.environment import claim_backend_start_seconds


class Stopwatch:
    """Seconds per stage of a run (metrics.json's `timings`): `with clock.stage("fit"):`.
    `setup` is whatever the other stages leave of the time since the clock started, and the
    start of the Keras backend when this is the process's first run."""

    STAGES = ("setup", "decode", "health", "fit", "score", "reports")

    def __init__(self):
        self.started = time.monotonic() - claim_backend_start_seconds()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - began

    def timings(self) -> dict[str, float]:
        """Every stage's seconds, rounded; setup the rest of the time so far."""
        spent = {name: self.seconds.get(name, 0.0) for name in self.STAGES[1:]}
        setup = time.monotonic() - self.started - sum(spent.values())
        return {name: round(value, 3) for name, value in {"setup": setup, **spent}.items()}
