"""Block-by-block polyphase resampling whose output does not depend on block sizes."""
from __future__ import annotations

from math import gcd

import numpy as np


def kaiser_lowpass(numtaps: int, cutoff: float, beta: float = 5.0) -> np.ndarray:
    """``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))`` (cutoff relative to
    Nyquist, unit gain at DC) in NumPy: importing scipy.signal costs a second of start-up."""
    m = np.arange(numtaps) - (numtaps - 1) / 2
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    return h / h.sum()


class StreamResampler:
    """Rational-rate resampler (``up/down`` after reducing ``sr_out/sr_in``) with the
    Kaiser-windowed low-pass that ``scipy.signal.resample_poly`` designs.

    Output sample ``n`` sits at input position ``n * down / up``; it is produced as
    soon as the filter has all the input it needs, so feeding the same samples in any
    blocks gives the same output (delayed by half the filter, a few milliseconds).
    """

    def __init__(self, sr_in: int, sr_out: int, half_taps: int = 10):
        g = gcd(sr_in, sr_out)
        self.up, self.down = sr_out // g, sr_in // g
        self.identity = self.up == self.down
        if self.identity:
            return
        max_rate = max(self.up, self.down)
        n = 2 * half_taps * max_rate + 1
        h = kaiser_lowpass(n, 1.0 / max_rate, 5.0) * self.up
        # Pad so every phase has the same number of taps.
        taps = -(-n // self.up)
        h = np.concatenate([h, np.zeros(taps * self.up - n)])
        # phases[p, j] multiplies input (i - j) for output phase p.
        self.phases = h.reshape(taps, self.up).T.astype(np.float64)
        self.taps = taps
        self._hist = np.zeros(taps + 1)  # last inputs before the buffer (with margin)
        self._consumed = 0                # absolute index of self._hist's end
        self._n = 0                       # next output index

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if self.identity:
            return x.astype(np.float32)
        buf = np.concatenate([self._hist, x])
        base = self._consumed - len(self._hist)   # absolute index of buf[0]
        end = self._consumed + len(x)             # inputs available: [.., end)
        # Output n needs inputs up to i = n*down // up.
        last_n = ((end - 1) * self.up + self.up - 1) // self.down if end > 0 else -1
        ns = np.arange(self._n, last_n + 1)
        if len(ns):
            pos = ns * self.down
            i, p = pos // self.up, pos % self.up
            idx = (i - base)[:, None] - np.arange(self.taps)[None, :]
            vals = np.where(idx >= 0, buf[np.clip(idx, 0, None)], 0.0)
            y = np.einsum("nj,nj->n", vals, self.phases[p])
            self._n = int(ns[-1]) + 1
        else:
            y = np.zeros(0)
        self._consumed = end
        self._hist = buf[-(self.taps + 1):]
        return y.astype(np.float32)
