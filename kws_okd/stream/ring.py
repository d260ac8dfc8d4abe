"""A fixed-capacity sample ring addressed by absolute sample index."""
from __future__ import annotations

import numpy as np


class RingBuffer:
    """Keeps the last ``capacity`` samples of an endless stream.

    Samples are addressed by their absolute index since the start of the stream, so
    callers never track wrap-around; reading samples that were already overwritten
    (or not yet written) is a programming error and raises.
    """

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self._data = np.zeros(self.capacity, dtype=np.float32)
        self.total = 0  # samples written since the start

    def write(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        if len(x) > self.capacity:  # only the tail can survive anyway
            self.total += len(x) - self.capacity
            x = x[-self.capacity:]
        pos = self.total % self.capacity
        first = min(len(x), self.capacity - pos)
        self._data[pos:pos + first] = x[:first]
        self._data[:len(x) - first] = x[first:]
        self.total += len(x)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` as a new contiguous array."""
        if start < self.total - self.capacity or stop > self.total or start > stop:
            raise IndexError(f"samples [{start}, {stop}) not in ring holding "
                             f"[{max(0, self.total - self.capacity)}, {self.total})")
        a, b = start % self.capacity, stop - start
        if a + b <= self.capacity:
            return self._data[a:a + b].copy()
        return np.concatenate([self._data[a:], self._data[:a + b - self.capacity]])

    def take(self, index: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Samples at absolute indices ``index`` (unchecked: the caller knows they are held)."""
        return np.take(self._data, index, mode="wrap", out=out)

    def reset(self) -> None:
        self._data[:] = 0
        self.total = 0
