"""Where the speech is in a clip: one rule for the long-audio composers and for training
augmentation that places speech around a word."""
from __future__ import annotations

import numpy as np


def speech_spans(x: np.ndarray, sr: int, floor_db: float = 35.0) -> np.ndarray:
    """``(B, 2)`` sample ranges ``[start, end)`` of the speech in each row of ``x``
    (``(B, N)``, or one clip ``(N,)``): the 10 ms frames within ``floor_db`` of the row's
    loudest frame, from the first such frame to the last."""
    x = np.atleast_2d(x)
    hop = sr // 100
    b, length = x.shape
    n = max(1, length // hop)
    rms = np.sqrt(np.mean(x[:, :n * hop].reshape(b, n, hop) ** 2, axis=2) + 1e-12)
    active = rms >= rms.max(axis=1, keepdims=True) * 10 ** (-floor_db / 20)
    first = active.argmax(axis=1)
    last = n - 1 - active[:, ::-1].argmax(axis=1)
    return np.stack([first * hop, np.minimum(length, (last + 1) * hop)], axis=1)
