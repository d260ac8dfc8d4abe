"""The streaming keyword detector shared by the microphone, file, stdin and tests.

Samples arrive in blocks of any size. Every ``hop`` a window (1 s) ending at the
newest sample is classified; feature frames are computed once, when their samples
arrive, and kept in a frame ring (only the few frames touching the window's padded
edges are recomputed per window). Posteriors are averaged over the last ``smooth``
windows, compared with per-keyword thresholds, and a refractory period stops one
utterance from firing twice.

Work happens only at fixed absolute sample positions, with the same grouping of
frames whatever the block sizes were, so block size cannot change detections.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from kws_okd.data.words import KEYWORDS_12
from kws_okd.errors import ConfigError
from kws_okd.stream.backends import as_window_model
from kws_okd.stream.features import edge_pieces, edge_ranges
from kws_okd.stream.ring import RingBuffer


class Detection(NamedTuple):
    time_s: float   # stream time of the window end at which it fired
    keyword: str
    score: float    # smoothed posterior


@dataclass
class StreamConfig:
    hop_ms: float = 20.0
    window_s: float = 1.0
    smooth: int = 5                 # windows in the posterior moving average
    threshold: float = 0.7
    thresholds: dict = field(default_factory=dict)   # per-keyword overrides
    refractory_s: float = 1.0
    keywords: list | None = None    # default: see default_keywords()


def default_keywords(classes) -> list[str]:
    """The ten command words when the model knows them, else every non-filler class."""
    kw = [c for c in classes if c in KEYWORDS_12]
    return kw or [c for c in classes if not c.startswith("_")]


class Detector:
    """Thresholds + refractory period over a stream of smoothed posteriors. Kept apart
    from the engine so a recorded score trace can be re-detected at any threshold."""

    def __init__(self, keywords, thresholds, refractory_s: float):
        self.keywords = list(keywords)
        self.thr = np.asarray(thresholds, dtype=np.float64)
        self.refractory_s = refractory_s
        self._until = -np.inf

    def reset(self):
        self._until = -np.inf

    def update(self, time_s: float, scores: np.ndarray) -> Detection | None:
        if time_s < self._until:
            return None
        above = scores >= self.thr
        if not above.any():
            return None
        k = int(np.argmax(np.where(above, scores, -np.inf)))
        self._until = time_s + self.refractory_s
        return Detection(round(time_s, 6), self.keywords[k], float(scores[k]))


def detect_trace(times, scores, keywords, thresholds, refractory_s) -> list[Detection]:
    """Re-run detection on a recorded trace (times (n,), scores (n, K)); only hops with a
    score over threshold are visited, which keeps threshold sweeps fast."""
    det = Detector(keywords, thresholds, refractory_s)
    cand = np.nonzero((scores >= det.thr).any(axis=1))[0]
    out = []
    for i in cand:
        d = det.update(float(times[i]), scores[i])
        if d:
            out.append(d)
    return out


class StreamEngine:
    def __init__(self, model, classes, config: StreamConfig | None = None,
                 sample_rate: int = 16000, record: bool = False, threads: int | None = 1):
        self.cfg = cfg = config or StreamConfig()
        # One window is far too little work to share between threads; on a busy machine
        # extra threads only wait on each other (measured: ~25x slower under load).
        self.threads = threads
        self.model = as_window_model(model, sample_rate, cfg.window_s)
        self.classes = list(classes)
        self.sample_rate = sample_rate
        self.stateful = hasattr(self.model, "step")
        self.hop = int(round(sample_rate * cfg.hop_ms / 1000))
        if self.hop <= 0:
            raise ConfigError(f"hop_ms={cfg.hop_ms}: must be positive")
        if cfg.smooth < 1:
            raise ConfigError(f"smooth={cfg.smooth}: must be at least 1 window")
        self.num_samples = self.hop if self.stateful else int(round(sample_rate * cfg.window_s))
        if not self.stateful and getattr(self.model, "num_samples", self.num_samples) != self.num_samples:
            raise ConfigError(f"window_s={cfg.window_s}: the model expects "
                              f"{self.model.num_samples / sample_rate:g} s windows")
        self.keywords = list(cfg.keywords or default_keywords(self.classes))
        unknown = [k for k in self.keywords if k not in self.classes]
        if unknown:
            raise ConfigError(f"keywords {unknown} are not classes of the model; it knows {self.classes}")
        bad = [k for k in cfg.thresholds if k not in self.keywords]
        if bad:
            raise ConfigError(f"thresholds given for {bad}, which are not keywords {self.keywords}")
        self.kw_index = np.array([self.classes.index(k) for k in self.keywords])
        self.detector = Detector(self.keywords, [cfg.thresholds.get(k, cfg.threshold) for k in self.keywords],
                                 cfg.refractory_s)
        # Incremental features need windows to start on the frame grid.
        self.incremental = (not self.stateful and self.model.incremental
                            and self.hop % self.model.hop == 0)
        extra = self.model.n_fft if self.incremental else 0
        self.ring = RingBuffer(self.num_samples + extra + self.hop)
        self.record = record
        self.reset()

    # -- state -----------------------------------------------------------------
    def reset(self):
        self.ring.reset()
        self.detector.reset()
        self._posts: deque = deque(maxlen=self.cfg.smooth)
        self._next_eval = self.num_samples        # absolute sample index of the next window end
        self._frames = None       # frame ring (F, capacity), column = stream frame % capacity
        self._next_frame = None
        self.times: list[float] = []
        self.scores: list[np.ndarray] = []
        if self.stateful:
            self.model.reset()

    # -- input -----------------------------------------------------------------
    def feed(self, block) -> list[Detection]:
        """Push samples (mono float32 at ``sample_rate``); return detections they triggered."""
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        prev = torch.get_num_threads()
        if self.threads and prev != self.threads:
            torch.set_num_threads(self.threads)
        try:
            return self._feed(x)
        finally:
            if self.threads and prev != self.threads:
                torch.set_num_threads(prev)

    def _feed(self, x: np.ndarray) -> list[Detection]:
        out, i = [], 0
        while i < len(x):
            take = min(len(x) - i, self._next_eval - self.ring.total)
            self.ring.write(x[i:i + take])
            i += take
            if self.ring.total == self._next_eval:
                d = self._evaluate(self._next_eval)
                self._next_eval += self.hop
                if d:
                    out.append(d)
        return out

    def run(self, blocks) -> list[Detection]:
        out = []
        for b in blocks:
            out.extend(self.feed(b))
        return out

    # -- per-hop work ------------------------------------------------------------
    def _evaluate(self, end: int) -> Detection | None:
        start = end - self.num_samples
        if self.stateful:
            logits = self.model.step(self.ring.read(start, end))
            if logits is None:
                return None
        elif self.incremental:
            logits = self.model.classify(self._window_frames(start, end))
        else:
            logits = self.model.classify_wave(self.ring.read(start, end))
        logits = np.asarray(logits, dtype=np.float64)
        post = np.exp(logits - logits.max())
        self._posts.append(post / post.sum())
        smoothed = np.mean(self._posts, axis=0)[self.kw_index]
        t = end / self.sample_rate
        if self.record:
            self.times.append(t)
            self.scores.append(smoothed.astype(np.float32))
        return self.detector.update(t, smoothed)

    def _window_frames(self, start: int, end: int) -> np.ndarray:
        m, hop, n_fft, pad = self.model, self.model.hop, self.model.n_fft, self.model.n_fft // 2
        lo, hi = edge_ranges(n_fft, hop, self.num_samples)
        first, last = start // hop + lo, start // hop + hi   # stream frames inside the window
        if self._next_frame is None or self._next_frame < first:
            self._next_frame = first
        window = self.ring.read(start, end)
        left, n_left, right, n_right = edge_pieces(n_fft, hop, window)
        pieces = [left, right]
        new_from = self._next_frame
        if new_from <= last:  # new frames: their samples all arrived by now
            pieces.append(self.ring.read(new_from * hop - pad, last * hop - pad + n_fft))
        # One front-end call for all pieces (zero-padded to one length; the extra frames
        # are dropped): per-call overhead dominates this little work.
        batch = np.zeros((len(pieces), max(len(p) for p in pieces)), dtype=np.float32)
        for i, p in enumerate(pieces):
            batch[i, :len(p)] = p
        out = m.frames(batch)
        if self._frames is None:
            self._cap = last - first + 1 + self.hop // hop + 2
            self._frames = np.zeros((out.shape[1], self._cap), dtype=np.float32)
        if new_from <= last:
            idx = np.arange(new_from, last + 1)
            self._frames[:, idx % self._cap] = out[2, :, :len(idx)]
            self._next_frame = last + 1
        mid = self._frames[:, np.arange(first, last + 1) % self._cap]
        return np.concatenate([out[0, :, :n_left], mid, out[1, :, :n_right]], axis=1)

    # -- results ---------------------------------------------------------------
    def trace(self) -> tuple[np.ndarray, np.ndarray]:
        """Recorded (times, smoothed keyword scores) when built with ``record=True``."""
        if not self.times:
            return np.zeros(0), np.zeros((0, len(self.keywords)), dtype=np.float32)
        return np.asarray(self.times), np.stack(self.scores)
