"""Real, unlabelled recordings as OKD's out-of-distribution inputs.

A student learns how its teacher hears only on the inputs it is shown. Windows of real
human speech (no labels, no keywords; by default the klettres-data recordings of letters
and syllables) let it learn what a teacher that has heard people does with human voices.
The objective is unchanged OKD: these windows are ``x_ood`` and are only ever
distilled on (``KD(s(x_ood), t(x_ood))``), never given a label.

Each clip of the batch becomes one of:

* ``pure``: a real window instead of the clip;
* ``overlay``: the clip over a real window as background, at ``snr`` dB;
* ``splice``: the clip with real speech in place of its head or tail.

Pure windows are fixed, unaugmented recordings, so a teacher with an input cache
(``speech_embedding``) computes each of them once per run.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from kws_okd.augment.noise import mix_at_snr
from kws_okd.augment.registry import register_augmentation
from kws_okd.errors import ConfigError


def default_cache_dir() -> Path:
    from kws_okd.models.embedding_weights import cache_dir
    return cache_dir() / "real_audio"


@register_augmentation("real_audio")
class RealAudio(nn.Module):
    def __init__(self, folders=None, weights=(1.0, 0.0, 0.0), snr=(0.0, 20.0),
                 splice=(0.2, 0.6), fraction=1.0, cache_dir=None, holdout_frac=0.2, seed=0,
                 windows=None, talk=False):
        """``folders``: folders of recordings (``None`` = klettres-data). ``weights``:
        how often each clip becomes pure / overlay / splice. ``fraction``: size of the
        ``x_ood`` batch relative to the clean batch (clips drawn at random), which sets
        what the OOD term costs. ``windows`` (tests): a tensor of windows to use instead
        of loading folders. ``talk``: also the hedgewars voice packs of people talking
        that :func:`~kws_okd.data.real_speech.talk_packs` gives to training."""
        super().__init__()
        # Rows of the last batch that are a recording alone, with no training clip mixed
        # in: known to hold no keyword (the distillation may use that; OKD's reject_class).
        self.known_reject: torch.Tensor | None = None
        if not 0.0 < float(fraction) <= 1.0:
            raise ConfigError(f"real_audio.fraction must be in (0, 1], got {fraction!r}")
        self.fraction = float(fraction)
        w = torch.tensor([float(v) for v in weights])
        if w.numel() != 3 or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(f"real_audio.weights: three non-negative numbers for pure/overlay/"
                              f"splice, not all 0; got {weights!r}")
        self.register_buffer("weights", w / w.sum(), persistent=False)
        self.snr, self.splice = tuple(snr), tuple(splice)
        if windows is None:
            from kws_okd.data.real_speech import default_real_audio_folders, load_real_windows, talk_packs
            folders = default_real_audio_folders() if not folders else [Path(f) for f in folders]
            if talk:
                folders += talk_packs("train")
            windows, _ = load_real_windows(folders, cache_dir or default_cache_dir(),
                                           holdout_frac=holdout_frac, seed=seed)
        if len(windows) == 0:
            raise ConfigError("real_audio: no real-audio windows to train on")
        self.register_buffer("windows", torch.as_tensor(windows, dtype=torch.float32), persistent=False)

    def draw(self, b: int, n: int) -> torch.Tensor:
        idx = torch.randint(len(self.windows), (b,), device=self.windows.device)
        real = self.windows[idx]
        if real.shape[-1] != n:
            real = torch.nn.functional.pad(real, (0, max(0, n - real.shape[-1])))[:, :n]
        return real

    def forward(self, x):  # (B, N) waveforms -> (round(fraction * B), N)
        if self.fraction < 1.0:
            keep = max(1, round(self.fraction * x.shape[0]))
            x = x[torch.randperm(x.shape[0], device=x.device)[:keep]]
        b, n = x.shape
        real = self.draw(b, n).to(x)
        kind = torch.multinomial(self.weights, b, replacement=True).to(x.device)
        out = real.clone()                                      # 0: pure
        self.known_reject = kind == 0
        over = kind == 1
        if over.any():
            snr = torch.empty(int(over.sum()), device=x.device).uniform_(*self.snr)
            out[over] = mix_at_snr(x[over], real[over], snr)
        spl = kind == 2
        if spl.any():
            k = int(spl.sum())
            cut = (torch.empty(k, device=x.device).uniform_(*self.splice) * n).long()
            pos = torch.arange(n, device=x.device)[None]
            head = torch.rand(k, device=x.device) < 0.5         # real speech before or after
            take_real = torch.where(head[:, None], pos < cut[:, None], pos >= n - cut[:, None])
            out[spl] = torch.where(take_real, real[spl], x[spl])
        return out
