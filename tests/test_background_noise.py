"""Background noise under the training word (kws_okd/augment/background.py)."""

import pytest
import torch

from kws_okd.audio.activity import speech_spans
from kws_okd.augment.background import BackgroundNoise, build_background_noise
from kws_okd.augment.context import ContextSpeech
from kws_okd.errors import ConfigError
from kws_okd.train.brain import what_each_hears
from tests.test_context import SR, clip, train_with_spy


def batch():
    wav = torch.stack([clip(0.40, 0.60, 0.5, 300.0), clip(0.20, 0.80, 0.1, 500.0),
                       1e-3 * torch.randn(SR, generator=torch.Generator().manual_seed(3)),
                       clip(0.30, 0.50, 0.9, 700.0)])
    return wav, torch.tensor([0, 1, 11, 2])


def test_noise_sits_at_the_drawn_snr_against_the_words_active_level():
    torch.manual_seed(0)
    wav, y = batch()
    aug = BackgroundNoise(p=1.0, snr=(5.0, 5.0), types=["white", "hum"], silence_index=11)
    out = aug(wav, y)
    assert torch.equal(out[2], wav[2])                 # the silence clip is noise already
    for i in (0, 1, 3):
        a, e = speech_spans(wav[i].numpy(), SR)[0].tolist()
        p_speech = wav[i, a:e].pow(2).mean()
        p_noise = (out[i] - wav[i]).pow(2).mean()      # over the whole second
        assert float(10 * torch.log10(p_speech / p_noise)) == pytest.approx(5.0, abs=1e-3)
    # A quiet word gets quieter noise: the SNR follows the word, not the clip.
    assert (out[1] - wav[1]).pow(2).mean() < (out[3] - wav[3]).pow(2).mean()
    assert torch.equal(BackgroundNoise(p=0.0, types=["white"])(wav, y), wav)


def test_p_chooses_about_that_share_of_clips():
    torch.manual_seed(1)
    wav = clip(0.4, 0.6).repeat(400, 1)
    out = BackgroundNoise(p=0.25, snr=(10, 20), types=["pink"])(wav, torch.zeros(400, dtype=torch.long))
    changed = (out != wav).any(1).float().mean()
    assert 0.18 < float(changed) < 0.32


def test_file_noise_comes_from_the_folder(tmp_path):
    from tests.conftest import write_tone
    folder = tmp_path / "_background_noise_"
    folder.mkdir()
    write_tone(folder / "tone.wav", freq=1000.0, seconds=2.0)
    torch.manual_seed(0)
    wav, y = batch()
    aug = build_background_noise({"p": 1.0, "snr": [0, 0], "types": ["files"], "folders": None},
                                 ["a", "b", "c", "_silence_"], default_folder=folder)
    assert aug.silence_index == 3 and aug.source.types == ["files"]
    added = aug(wav, torch.tensor([0, 1, 2, 0]))[0] - wav[0]
    spec = torch.fft.rfft(added).abs()
    assert int(spec.argmax()) == 1000                  # 1 Hz bins over one second: the tone


def test_the_recipe_entry_builds_the_module_and_bad_settings_are_named(tmp_path):
    classes = ["yes", "_unknown_", "_silence_"]
    cfg = {"p": 0.5, "snr": [0, 20], "types": ["files", "white"], "folders": None}
    assert build_background_noise({"p": 0.0}, classes) is None and build_background_noise(None, classes) is None
    assert build_background_noise(cfg, classes, role="teacher") is None      # the student alone hears it
    # No noise folder: generated noise only.
    assert build_background_noise(cfg, classes, default_folder=tmp_path / "none").source.types == ["white"]
    with pytest.raises(ConfigError, match="background_noise.types: nothing to draw from"):
        build_background_noise(dict(cfg, types=["files"]), classes, default_folder=tmp_path / "none")
    with pytest.raises(ConfigError, match="background_noise.p must be a probability"):
        BackgroundNoise(p=2.0)
    with pytest.raises(ValueError, match=r"background_noise.snr: SNR range \[20.0, 0.0\]"):
        BackgroundNoise(snr=(20, 0), types=["white"])


def test_the_teacher_hears_neither_noise_nor_context_unless_told():
    torch.manual_seed(0)
    wav, y = batch()
    noise = BackgroundNoise(p=1.0, snr=(5, 5), types=["white"], silence_index=11)
    heard, clean = what_each_hears(wav, y, None, noise)
    assert clean is wav and not torch.equal(heard[0], wav[0])
    ctx = ContextSpeech(p=1.0, side_p=1.0, silence_index=11, teacher_hears="context")
    torch.manual_seed(0)
    heard, clean = what_each_hears(wav, y, ctx, noise)
    torch.manual_seed(0)
    with_context = ctx(wav, y)
    assert torch.equal(clean, with_context)            # the teacher hears the context it was told to
    assert not torch.equal(heard, with_context)        # and never the noise
    heard, clean = what_each_hears(wav, y, None, None)
    assert heard is wav and clean is wav


def test_runs_with_noise_get_their_own_folders_and_the_trainer_noises_every_batch(tiny_corpus, tmp_path,
                                                                                  monkeypatch):
    from kws_okd.train.config import load_recipe, noise_tag
    assert noise_tag(0) == "" and noise_tag("0.5") == "+noise0.5"
    assert load_recipe("student", ["background_noise.p=0.5"]).exp_dir.endswith("okd+context0.5+noise0.5/seed0")
    pt = train_with_spy(monkeypatch, BackgroundNoise, tiny_corpus, tmp_path, "context_speech.p=0",
                        "background_noise.p=1.0")
    assert pt.parent.parent.name == "bcresnet2-erm+noise1"
