"""Progress of a notebook while papermill runs it: the cell and its step, and one line per training epoch with an ETA.

:class:`Progress` is both a ``logging`` handler (papermill logs ``Executing Cell N`` on the
``papermill`` logger) and the file papermill copies the kernel's stdout and stderr to. Lines
of TensorFlow's start-up noise (:data:`hemasuite.tools.site.NOISE`) are dropped; Keras'
``Epoch k/N`` and its result line become one line with seconds per epoch and the time left.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

import nbformat

from .site import NOISE

CELL = re.compile(r"^Executing Cell (\d+)")
EPOCH = re.compile(r"^Epoch (\d+)/(\d+)\s*$")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def step_titles(path: Path) -> dict[int, tuple[int, int, str]]:
    """``{executed cell number (1-based): (code cell k, of n, the step's heading)}``.

    Papermill inserts its parameters cell after the cell tagged ``parameters``; the heading
    is the first line of the closest markdown cell above.
    """
    layout = []
    for cell in nbformat.read(path, 4).cells:
        layout.append(cell)
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            layout.append(nbformat.v4.new_code_cell("# injected parameters"))
    code = [index for index, cell in enumerate(layout) if cell.cell_type == "code"]
    titles, heading = {}, ""
    for index, cell in enumerate(layout):
        if cell.cell_type == "markdown" and cell.source.strip():
            heading = cell.source.strip().splitlines()[0].lstrip("#").strip()
        elif cell.cell_type == "code":
            titles[index + 1] = (code.index(index) + 1, len(code), heading)
    return titles


def cell_seconds(executed: Path, source: Path) -> list[dict]:
    """Seconds of every code cell of the executed notebook (papermill's ``duration``), with its step's heading."""
    titles = step_titles(Path(source))
    timings = []
    for index, cell in enumerate(nbformat.read(executed, 4).cells):
        if cell.cell_type != "code" or index + 1 not in titles:
            continue
        number, _, heading = titles[index + 1]
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        timings.append({"cell": number, "step": heading,
                        "seconds": round(float(duration), 1) if duration is not None else None})
    return timings


class Progress(logging.Handler):
    """Prints ``label``'s cells and epochs to ``out`` as the kernel reports them (see the module docstring)."""

    def __init__(self, path: Path, label: str, out=None, clock=time.monotonic):
        super().__init__(logging.INFO)
        self.titles = step_titles(Path(path))
        self.label, self.out, self.clock = label, out or sys.stdout, clock
        self.buffer, self.epoch, self.fit_start, self.cell_start = "", None, None, clock()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def emit(self, record: logging.LogRecord) -> None:
        match = CELL.match(record.getMessage())
        if match and int(match[1]) in self.titles:
            number, total, heading = self.titles[int(match[1])]
            self.cell_start = self.clock()
            self.say(f"{self.label}: cell {number}/{total}" + (f": {heading}" if heading else ""))

    def write(self, text: str) -> int:
        self.buffer += ANSI.sub("", text).replace("\r", "\n")
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.line(line.rstrip())
        return len(text)

    def flush(self) -> None:
        pass

    def line(self, line: str) -> None:
        if not line.strip() or NOISE.match(line):
            return
        match = EPOCH.match(line)
        if match:
            k, n = int(match[1]), int(match[2])
            if k == 1 or self.fit_start is None:
                self.fit_start = self.clock()
            self.epoch = (k, n)
            return
        if self.epoch:
            k, n = self.epoch
            per_epoch = (self.clock() - self.fit_start) / k
            metrics = " - ".join(part.strip() for part in line.split(" - ")
                                 if ":" in part and "step" not in part)
            self.say(f"    epoch {k}/{n}  {metrics}  ({per_epoch:.0f} s/epoch, ETA {eta(per_epoch * (n - k))})")
            self.epoch = None
            return
        self.say(f"    {line}")


def eta(seconds: float) -> str:
    """``42 s`` or ``3.5 min``."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
