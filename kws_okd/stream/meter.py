"""A one-line input level meter for the live demo, redrawn in place on stderr so that
stdout carries only detections."""
from __future__ import annotations

import math
import sys
import time

import numpy as np


class LevelMeter:
    """``update(block)`` after each block; at most every ``interval_s`` the line
    ``level  -23.4 dBFS |########.........|`` is redrawn with ``\\r``. The bar spans
    ``floor_db`` .. 0 dBFS; the level is that of the blocks since the last redraw.
    Call :meth:`clear` before printing anything else to the same terminal."""

    def __init__(self, stream=None, width: int = 30, floor_db: float = -60.0, interval_s: float = 0.1,
                 clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.width, self.floor_db, self.interval_s, self.clock = width, floor_db, interval_s, clock
        self._sum, self._n, self._last, self._shown = 0.0, 0, -math.inf, 0

    def update(self, block: np.ndarray) -> None:
        x = np.asarray(block, dtype=np.float64).reshape(-1)
        self._sum += float(np.dot(x, x))
        self._n += len(x)
        now = self.clock()
        if now - self._last >= self.interval_s and self._n:
            rms = math.sqrt(self._sum / self._n)
            self.draw(20 * math.log10(rms) if rms > 0 else -math.inf)
            self._sum, self._n, self._last = 0.0, 0, now

    def render(self, level_db: float) -> str:
        frac = 0.0 if level_db == -math.inf else min(1.0, max(0.0, 1 - level_db / self.floor_db))
        full = int(round(frac * self.width))
        shown = "  -inf" if level_db == -math.inf else f"{max(level_db, -99.9):6.1f}"
        return f"level {shown} dBFS |{'#' * full}{'.' * (self.width - full)}|"

    def draw(self, level_db: float) -> None:
        line = self.render(level_db)
        self.stream.write("\r" + line)
        self.stream.flush()
        self._shown = len(line)

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0
