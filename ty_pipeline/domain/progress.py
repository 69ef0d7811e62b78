"""Progress lines with an ETA for long loops (descriptions, LLM calls), logged at a steady pace."""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    def __init__(
        self,
        what: str,
        total: int,
        log: Callable[[str], None],
        *,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.total, self.log, self.every_s, self.clock = what, total, log, every_s, clock
        self.done = 0
        self.started = clock()
        self._last_log = self.started

    def eta_s(self) -> float | None:
        elapsed = self.clock() - self.started
        if self.done == 0 or elapsed <= 0:
            return None
        return (self.total - self.done) / (self.done / elapsed)

    def line(self) -> str:
        eta = self.eta_s()
        rate = self.done / max(self.clock() - self.started, 1e-9)
        eta_text = "unknown" if eta is None else _fmt(eta)
        return f"{self.what}: {self.done}/{self.total} done, {rate:.1f}/s, ETA {eta_text}"

    def step(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if self.done >= self.total or now - self._last_log >= self.every_s:
            self._last_log = now
            self.log(self.line())


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
