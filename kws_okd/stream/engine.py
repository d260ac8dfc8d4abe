"""The streaming keyword detector shared by the microphone, file, stdin and tests.

Samples arrive in blocks of any size. Every ``hop`` a window (1 s) ending at the
newest sample is classified; feature frames are computed once, when their samples
arrive, and kept in a frame ring (only the few frames touching the window's padded
edges are recomputed per window). Posteriors are averaged over the last ``smooth``
windows, compared with per-keyword thresholds, and a refractory period stops one
utterance from firing twice.

Work happens only at fixed absolute sample positions, with the same grouping of
frames whatever the block sizes were, so block size cannot change detections. When a
block completes several windows (file input), models that can (``max_batch > 1``,
ONNX Runtime) classify them in one call; their per-window results do not depend on
the batch (tested bit for bit), so neither do detections.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from kws_okd.data.words import KEYWORDS_12
from kws_okd.errors import ConfigError
from kws_okd.stream.backends import as_window_model
from kws_okd.stream.features import edge_ranges
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
        # (PyTorch models; ONNX Runtime models fix their threads when they are built.)
        self.threads = threads
        self.model = as_window_model(model, sample_rate, cfg.window_s)
        self._torch = getattr(self.model, "runtime", "torch") == "torch"
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
        self.max_batch = 1 if self.stateful else max(1, int(getattr(self.model, "max_batch", 1)))
        extra = self.model.n_fft if self.incremental else 0
        self.ring = RingBuffer(self.num_samples + extra + self.hop)
        self.record = record
        self.reset()

    # -- state -----------------------------------------------------------------
    def reset(self):
        self.ring.reset()
        self.detector.reset()
        self._hist = np.zeros((self.cfg.smooth - 1, len(self.classes)))   # last posteriors
        self._next_eval = self.num_samples        # absolute sample index of the next window end
        self._frames = None       # frame ring (F, capacity), column = stream frame % capacity
        self._next_frame = None
        self._edges = None
        self.windows = 0          # windows classified since the start
        self.times: list[float] = []
        self.scores: list[np.ndarray] = []
        if self.stateful:
            self.model.reset()

    # -- input -----------------------------------------------------------------
    def feed(self, block) -> list[Detection]:
        """Push samples (mono float32 at ``sample_rate``); return detections they triggered."""
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        if not (self.threads and self._torch):
            return self._feed(x)
        import torch
        prev = torch.get_num_threads()
        if prev != self.threads:
            torch.set_num_threads(self.threads)
        try:
            return self._feed(x)
        finally:
            if prev != self.threads:
                torch.set_num_threads(prev)

    def _feed(self, x: np.ndarray) -> list[Detection]:
        out, i, pending = [], 0, []
        while i < len(x):
            take = min(len(x) - i, self._next_eval - self.ring.total)
            self.ring.write(x[i:i + take])
            i += take
            if self.ring.total == self._next_eval:
                pending.append((self._next_eval, self._window_input(self._next_eval)))
                self._next_eval += self.hop
                # Classify when the batch is full or this block completes no further window.
                if len(pending) >= self.max_batch or len(x) - i < self._next_eval - self.ring.total:
                    out += self._classify(pending)
                    pending = []
        return out

    def run(self, blocks) -> list[Detection]:
        out = []
        for b in blocks:
            out.extend(self.feed(b))
        return out

    # -- per-hop work ------------------------------------------------------------
    def _window_input(self, end: int):
        start = end - self.num_samples
        if self.incremental:
            return self._window_frames(start, end)
        return self.ring.read(start, end)   # a hop (stateful) or a whole window

    def _classify(self, pending) -> list[Detection]:
        m, ends = self.model, [e for e, _ in pending]
        if self.stateful:
            logits = m.step(pending[0][1])
            if logits is None:
                return []
            logits = np.asarray(logits, dtype=np.float64)[None]
        elif len(pending) > 1:
            logits = np.asarray(m.classify_batch(np.stack([v for _, v in pending])), dtype=np.float64)
        else:
            v = pending[0][1]
            logits = np.asarray(m.classify(v) if self.incremental else m.classify_wave(v), dtype=np.float64)[None]
        n = len(logits)
        post = np.exp(logits - logits.max(axis=1, keepdims=True))
        post /= post.sum(axis=1, keepdims=True)
        # Moving average over the last ``smooth`` windows, summed oldest first whatever the
        # batch (the order np.mean over a window list uses; zeros stand in before the
        # start), so batching cannot change a bit.
        hist = np.concatenate([self._hist, post])
        acc = hist[:n].copy()
        for k in range(1, self.cfg.smooth):
            acc += hist[k:k + n]
        count = np.minimum(np.arange(self.windows + 1, self.windows + 1 + n), self.cfg.smooth)
        smoothed = acc[:, self.kw_index] / count[:, None]
        self._hist = hist[n:]
        self.windows += n
        times = np.asarray(ends) / self.sample_rate
        if self.record:
            self.times.extend(times.tolist())
            self.scores.extend(smoothed.astype(np.float32))
        out = []
        for j in np.nonzero((smoothed >= self.detector.thr).any(axis=1))[0]:
            d = self.detector.update(float(times[j]), smoothed[j])
            if d:
                out.append(d)
        return out

    def _window_frames(self, start: int, end: int) -> np.ndarray:
        """The raw feature frames (F, n_frames) of the window ``[start, end)``: interior
        frames from the frame ring (each computed once, when its samples arrived), the
        frames at both ends from the window's edge samples, reflect-padded as
        ``center=True`` pads them."""
        m, hop, n_fft, pad = self.model, self.model.hop, self.model.n_fft, self.model.n_fft // 2
        if self._edges is None:
            lo, hi = edge_ranges(n_fft, hop, self.num_samples)
            # Sample offsets of the reflect-padded edge pieces (np.pad(.., mode="reflect")):
            # left from the window start, right from the start of the window's tail.
            head, tail = (lo - 1) * hop + n_fft - pad, self.num_samples - (hi + 1) * hop + pad
            left = np.concatenate([np.arange(pad, 0, -1), np.arange(head)])
            right = np.concatenate([np.arange(tail), tail - 2 - np.arange(pad)])
            # Each piece is gathered from one contiguous read of the samples it spans (a
            # wrap-around np.take on the ring costs more than the rest of the hop's NumPy).
            self._edges = (lo, hi, left - left.min(), int(left.min()), int(np.ptp(left)) + 1,
                           right - right.min(), int(right.min()), int(np.ptp(right)) + 1, tail)
        lo, hi, left, left0, left_n, right, right0, right_n, tail = self._edges
        first, last = start // hop + lo, start // hop + hi   # stream frames inside the window
        if self._next_frame is None or self._next_frame < first:
            self._next_frame = first
        new_from = self._next_frame
        n_new = last - new_from + 1       # new frames: their samples all arrived by now
        # One front-end call for all pieces (zero-padded to one length; the extra frames
        # are dropped): per-call overhead dominates this little work.
        width = max(len(left), len(right), (n_new - 1) * hop + n_fft)
        batch = np.zeros((3 if n_new > 0 else 2, width), dtype=np.float32)
        a, b = start + left0, end - tail + right0
        np.take(self.ring.read(a, a + left_n), left, out=batch[0, :len(left)])
        np.take(self.ring.read(b, b + right_n), right, out=batch[1, :len(right)])
        if n_new > 0:
            batch[2, :(n_new - 1) * hop + n_fft] = self.ring.read(new_from * hop - pad, last * hop - pad + n_fft)
        out = m.frames(batch)
        if self._frames is None:
            # Frame ring, kept twice over so that a window's interior frames are one slice.
            self._cap = last - first + 1 + self.hop // hop + 2
            self._frames = np.zeros((out.shape[1], 2 * self._cap), dtype=np.float32)
        cap = self._cap
        if n_new > 0:
            cols = np.arange(new_from, last + 1) % cap
            new = out[2, :, :n_new]
            self._frames[:, cols] = new
            self._frames[:, cols + cap] = new
            self._next_frame = last + 1
        a = first % cap
        return np.concatenate([out[0, :, :lo], self._frames[:, a:a + last - first + 1],
                               out[1, :, :self.num_samples // hop - hi]], axis=1)

    # -- results ---------------------------------------------------------------
    def trace(self) -> tuple[np.ndarray, np.ndarray]:
        """Recorded (times, smoothed keyword scores) when built with ``record=True``."""
        if not self.times:
            return np.zeros(0), np.zeros((0, len(self.keywords)), dtype=np.float32)
        return np.asarray(self.times), np.stack(self.scores)
