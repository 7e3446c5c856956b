"""Progress lines for long loops in the library (training, prediction, split checks): a slow run never looks stuck.

``LoopProgress(total, what, unit)`` prints ``what: done/total unit, rate, time left`` at most
every :data:`INTERVAL` seconds, the first line only once :data:`QUIET` seconds have
passed (short loops stay silent), and a closing line for a loop that printed any. The
lines go to standard output: the notebook's output, which the runner shows as it runs.
"""

from __future__ import annotations

import time

INTERVAL = 20.0
QUIET = 20.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class LoopProgress:
    """Counts ``update(n)`` calls up to ``total`` and prints progress (see the module doc)."""

    def __init__(self, total: int, what: str, unit: str = "items", interval: float = INTERVAL,
                 quiet: float = QUIET, clock=time.monotonic, out=print):
        self.total, self.what, self.unit = int(total), what, unit
        self.interval, self.quiet, self.clock, self.out = interval, quiet, clock, out
        self.done, self.start, self.note = 0, clock(), ""
        self.last: float | None = None
        self.shown = 0  # ``done`` at the last line printed

    def line(self) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        what = f"{self.what}, {self.note}" if self.note else self.what
        text = f"{what}: {self.done:,}/{self.total:,} {self.unit}, {rate:,.1f} {self.unit}/s"
        return text + (f", about {_duration(left)} left" if self.done < self.total and rate > 0 else
                       f", {_duration(elapsed)}")

    def update(self, n: int = 1, note: str = "") -> None:
        """``n`` more done; ``note`` (e.g. the epoch and its loss) is shown in the lines from now on."""
        self.done += n
        self.note = note or self.note
        now = self.clock()
        if now - self.start < self.quiet or (self.last is not None and now - self.last < self.interval):
            return
        self.last, self.shown = now, self.done
        self.out(self.line(), flush=True)

    def close(self) -> None:
        """The closing line, where a progress line was printed and work was done since."""
        if self.last is not None and self.done != self.shown:
            self.out(self.line(), flush=True)
