"""Feature masking for the student in training (SpecAugment, Park et al., 2019).

The waveform augmentations (speech around the word, noise, a narrow band) change what a
clip sounds like; none makes the student hear a word with a part of its spectrum or a
stretch of its frames missing, which is what real voices, microphones and rooms do to the
cues a 9,000-parameter network leans on. ``SpecAugment`` masks, with probability ``p`` per
clip, ``freq_masks`` bands of 0 to ``freq_width`` feature bins and ``time_masks`` spans of
0 to ``time_width`` frames, filled with the clip's mean feature value (0 after per-utterance
normalisation: the masked cells carry no information rather than a loud or silent one).

It acts on the student's features inside :class:`kws_okd.models.registry.KWSNet`, in
training mode only: the teacher hears the waveform unmasked, so its targets stay those of
the whole word; checkpoints, exports and streaming never see it (it holds no parameters).
Draws come from torch's global generator on the CPU, which the trainer checkpoints, so a
resumed run masks the same cells.
"""
from __future__ import annotations

import torch
from torch import nn

from kws_okd.errors import ConfigError


def _spans(n_rows: int, size: int, count: int, width: int) -> torch.Tensor:
    """(n_rows, size) bool: ``count`` spans per row, each of 0..``width`` cells at a
    uniformly drawn start that keeps it inside ``size``."""
    out = torch.zeros(n_rows, size, dtype=torch.bool)
    cells = torch.arange(size)
    for _ in range(count):
        w = torch.randint(0, min(width, size) + 1, (n_rows, 1))
        start = (torch.rand(n_rows, 1) * (size - w + 1)).floor().long()
        out |= (cells >= start) & (cells < start + w)
    return out


class SpecAugment(nn.Module):
    def __init__(self, p: float = 0.5, freq_masks: int = 2, freq_width: int = 5, time_masks: int = 2,
                 time_width: int = 10):
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:
            raise ConfigError(f"spec_augment.p must be a probability, got {p}")
        for name, v in (("freq_masks", freq_masks), ("freq_width", freq_width),
                        ("time_masks", time_masks), ("time_width", time_width)):
            if int(v) != v or v < 0:
                raise ConfigError(f"spec_augment.{name} must be a whole number >= 0, got {v!r}")
        self.p = float(p)
        self.freq = (int(freq_masks), int(freq_width))
        self.time = (int(time_masks), int(time_width))

    def mask(self, b: int, f: int, t: int) -> torch.Tensor:
        """(b, f, t) bool: the cells masked in a batch of ``b`` clips of ``f`` bins x ``t`` frames."""
        chosen = torch.rand(b) < self.p
        m = _spans(b, f, *self.freq)[:, :, None] | _spans(b, t, *self.time)[:, None, :]
        return m & chosen[:, None, None]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # (B, F, T)
        if self.p == 0.0:
            return feats
        m = self.mask(*feats.shape).to(feats.device)
        fill = feats.detach().mean(dim=(1, 2), keepdim=True).expand_as(feats)
        return torch.where(m, fill, feats)

    def extra_repr(self) -> str:
        return f"p={self.p}, freq={self.freq}, time={self.time}"


def build_spec_augment(cfg: dict | None, role: str = "student") -> SpecAugment | None:
    """The ``spec_augment`` recipe entry as a module: None when absent, ``p: 0``, or for a
    teacher's own training."""
    if not cfg or float(cfg.get("p", 0.0)) == 0.0 or role == "teacher":
        return None
    return SpecAugment(**cfg)
