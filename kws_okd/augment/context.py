"""Speech around the word: training clips with the neighbours a sentence would give them.

Corpus clips hold one word with near silence around it. In running speech ("i said stop
again") the one-second window that holds a keyword also holds the end of the word
before and the start of the word after, 30-150 ms away; students trained on isolated
words then miss most keywords inside sentences (docs/decisions.md). ``ContextSpeech``
adds that context to a training batch: for a clip chosen with probability ``p``, the
tail of another clip's speech is laid before its word and the head of a third clip's
speech after it, each behind a short pause, at a level relative to the word's. The
label stays the clip's own: the word in the middle is what the window is about. Clips
of the silence class neither get nor give context.

It acts on the waveform batch before the objective, for the student alone: the teacher
labels the word as it was (:class:`TeacherHearsClean`: trained on isolated words, it gives
its targets where it is reliable, and its embedding cache keeps hitting). It draws from
torch's global generator, whose state the trainer checkpoints (a resumed run draws the
same contexts).
"""
from __future__ import annotations

import torch
from torch import nn

from kws_okd.audio.activity import speech_spans
from kws_okd.errors import ConfigError


class ContextSpeech(nn.Module):
    def __init__(self, p: float = 0.5, gap_ms=(30.0, 150.0), level=(0.4, 1.0), side_p: float = 0.75,
                 sample_rate: int = 16000, silence_index: int | None = None):
        super().__init__()
        if not 0.0 <= float(p) <= 1.0 or not 0.0 < float(side_p) <= 1.0:
            raise ConfigError(f"context_speech: p and side_p must be probabilities, got p={p}, side_p={side_p}")
        if not 0.0 <= gap_ms[0] <= gap_ms[1] or not 0.0 < level[0] <= level[1]:
            raise ConfigError(f"context_speech: gap_ms {list(gap_ms)} and level {list(level)} must be "
                              "ranges [low, high] with 0 <= low <= high (level > 0)")
        self.p, self.side_p = float(p), float(side_p)
        self.gap = (int(gap_ms[0] * sample_rate / 1000), int(gap_ms[1] * sample_rate / 1000))
        self.level = (float(level[0]), float(level[1]))
        self.sample_rate = sample_rate
        self.silence_index = silence_index

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or len(wav) < 2:
            return wav
        b, n = wav.shape
        speech = torch.ones(b, dtype=torch.bool, device=wav.device)
        if self.silence_index is not None:
            speech = y != self.silence_index
        donors = torch.nonzero(speech).flatten()
        chosen = speech & (torch.rand(b) < self.p).to(wav.device)
        if len(donors) < 2 or not chosen.any():
            return wav
        spans = speech_spans(wav.detach().cpu().numpy(), self.sample_rate).tolist()
        peaks = wav.abs().amax(dim=1)
        out = wav.clone()
        for i in torch.nonzero(chosen).flatten().tolist():
            a, e = spans[i]
            # Each side with probability side_p, and at least one side.
            before, after = (torch.rand(2) < self.side_p).tolist()
            if not (before or after):
                before, after = (True, False) if torch.rand(1).item() < 0.5 else (False, True)
            for side, on in (("before", before), ("after", after)):
                if not on:
                    continue
                k = int(torch.randint(len(donors), (1,)))
                j = int(donors[k])
                if j == i:   # never the clip's own word: the next donor instead
                    j = int(donors[(k + 1) % len(donors)])
                gap = int(torch.randint(self.gap[0], self.gap[1] + 1, (1,)))
                da, de = spans[j]
                if side == "before":
                    room = a - gap
                    take = min(de - da, room)
                    if take <= 0:
                        continue
                    piece, at = wav[j, de - take:de], room - take
                else:
                    room = n - (e + gap)
                    take = min(de - da, room)
                    if take <= 0:
                        continue
                    piece, at = wav[j, da:da + take], e + gap
                lvl = float(torch.empty(1).uniform_(*self.level))
                scale = lvl * float(peaks[i]) / (float(peaks[j]) + 1e-9)
                out[i, at:at + take] += piece * scale
        return out


class TeacherHearsClean:
    """The teacher, as the objective calls it, hearing the batch's clips without the context
    the student hears: a call whose first rows are the augmented batch (KD's ``t(x)``, OKD's
    ``t([x, x_ood])``) gets the clean clips in their place; any other input (an
    augmenter's) passes through unchanged."""

    def __init__(self, teacher, heard: torch.Tensor, clean: torch.Tensor):
        self.teacher, self.heard, self.clean = teacher, heard, clean

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b = len(self.heard)
        if x.shape[0] >= b and x.shape[1:] == self.heard.shape[1:] and torch.equal(x[:b], self.heard):
            x = torch.cat([self.clean, x[b:]])
        return self.teacher(x)


def build_context(cfg: dict | None, classes, role: str = "student") -> ContextSpeech | None:
    """The ``context_speech`` recipe entry as a module (None when absent or ``p: 0``, and for
    a teacher's own training)."""
    if not cfg or float(cfg.get("p", 0.0)) == 0.0 or role == "teacher":
        return None
    silence = list(classes).index("_silence_") if "_silence_" in classes else None
    return ContextSpeech(**cfg, silence_index=silence)
