"""Background noise under the training word, as a microphone in a room would add it.

Corpus clips are clean: the word over a faint noise floor. A detector then meets a fan, a
television or a street, and the students trained on clean words miss most keywords at
5 dB (docs/decisions.md). ``BackgroundNoise`` mixes noise into a training batch: a clip
chosen with probability ``p`` gets one noise source (a window of the background-noise
files, or generated white / pink / brown noise, hum or machinery) at an SNR drawn
uniformly from ``snr`` dB, measured against the power of the clip's speech span (the
active level, the same rule the long-audio composer uses), not the whole second, whose
silence would make the word louder than the SNR says. The label stays the clip's own.
Clips of the silence class are left as they are: they are noise already.

Like :mod:`kws_okd.augment.context`, the student alone hears it: a teacher labels the
word it can hear best (the noisy-student, clean-teacher set-up of robust distillation).
It draws from torch's global generator, which the trainer checkpoints.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from kws_okd.audio.activity import speech_spans
from kws_okd.augment.noise import GENERATED, AddNoise, check_snr, mix_at_snr
from kws_okd.errors import ConfigError


class BackgroundNoise(nn.Module):
    def __init__(self, p: float = 0.5, snr=(0.0, 20.0), types=("files", *GENERATED), folders=(),
                 sample_rate: int = 16000, silence_index: int | None = None):
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:
            raise ConfigError(f"background_noise.p must be a probability, got {p}")
        lo, hi = check_snr("background_noise.snr", *snr)
        folders = [str(f) for f in (folders or []) if f]
        types = [t for t in types if t != "files" or folders]   # no folder: generated noise only
        if not types:
            raise ConfigError("background_noise.types: nothing to draw from (the noise folders are "
                              "missing and no generated type is listed)")
        self.source = AddNoise(lo, hi, types=types, noise_dirs=folders, sample_rate=sample_rate)
        self.p, self.sample_rate, self.silence_index = float(p), sample_rate, silence_index

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return wav
        b, n = wav.shape
        chosen = torch.rand(b) < self.p
        if self.silence_index is not None:
            chosen &= y.cpu() != self.silence_index
        rows = torch.nonzero(chosen).flatten()
        if not len(rows):
            return wav
        x = wav[rows]
        spans = torch.from_numpy(speech_spans(x.detach().cpu().numpy(), self.sample_rate)).to(wav.device)
        t = torch.arange(n, device=wav.device)[None]
        active = ((t >= spans[:, :1]) & (t < spans[:, 1:])).to(x)
        p_speech = (x.pow(2) * active).sum(1) / active.sum(1).clamp_min(1)
        out = wav.clone()
        out[rows] = mix_at_snr(x, *self.source.draw(x), signal_power=p_speech)
        return out


def build_background_noise(cfg: dict | None, classes, default_folder: str | Path | None = None,
                           role: str = "student") -> BackgroundNoise | None:
    """The ``background_noise`` recipe entry as a module: None when absent, ``p: 0``, or
    for a teacher's own training. ``folders: null`` means ``default_folder`` (the corpus's
    ``_background_noise_``) when it exists."""
    if not cfg or float(cfg.get("p", 0.0)) == 0.0 or role == "teacher":
        return None
    cfg = dict(cfg)
    folders = cfg.pop("folders", None)
    if folders is None:
        folders = [default_folder] if default_folder and Path(default_folder).is_dir() else []
    silence = list(classes).index("_silence_") if "_silence_" in classes else None
    return BackgroundNoise(**cfg, folders=folders, silence_index=silence)
