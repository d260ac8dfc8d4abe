"""Speech around the word (kws_okd/augment/context.py)."""
import pytest
import torch

from kws_okd.audio.activity import speech_spans
from kws_okd.augment.context import ContextSpeech, build_context
from kws_okd.errors import ConfigError

SR = 16000


def clip(start_s, end_s, amp=0.5, freq=300.0, n=SR):
    t = torch.arange(n) / SR
    x = amp * torch.sin(2 * torch.pi * freq * t)
    mask = (t >= start_s) & (t < end_s)
    return x * mask + 1e-4 * torch.randn(n, generator=torch.Generator().manual_seed(int(freq)))


def test_speech_spans_find_the_word_to_10_ms():
    wav = torch.stack([clip(0.40, 0.60), clip(0.0, 0.25), clip(0.7, 1.0)])
    assert speech_spans(wav.numpy(), SR).tolist() == [[6400, 9600], [0, 4000], [11200, 16000]]


def test_context_goes_around_the_word_behind_a_pause_and_keeps_the_word():
    torch.manual_seed(0)
    wav = torch.stack([clip(0.40, 0.60, 0.5, 300.0), clip(0.30, 0.70, 0.8, 500.0), clip(0.35, 0.65, 0.2, 700.0)])
    y = torch.tensor([0, 1, 2])
    aug = ContextSpeech(p=1.0, gap_ms=(50, 50), level=(0.5, 0.5), side_p=1.0)
    out = aug(wav, y)
    for i in range(3):
        a, e = speech_spans(wav[i].numpy(), SR)[0].tolist()
        assert torch.equal(out[i, a - 800:e + 800], wav[i, a - 800:e + 800])   # word and 50 ms pauses intact
        added = out[i] - wav[i]
        assert added[:a - 800].abs().max() > 0 and added[e + 800:].abs().max() > 0
        # level: the context's peak is half the word's peak
        assert float(added.abs().max()) == pytest.approx(0.5 * float(wav[i].abs().max()), rel=0.05)
    # the context that ends right before clip 0's pause is the tail of another clip's word
    a0 = int(speech_spans(wav[0].numpy(), SR)[0, 0])
    tail = (out[0] - wav[0])[a0 - 800 - 160:a0 - 800]
    assert tail.abs().max() > 0.05


def test_silence_clips_neither_get_nor_give_context_and_p0_is_identity():
    torch.manual_seed(1)
    wav = torch.stack([clip(0.4, 0.6), 1e-3 * torch.randn(SR), clip(0.3, 0.5, freq=600.0)])
    y = torch.tensor([0, 11, 1])
    aug = ContextSpeech(p=1.0, side_p=1.0, silence_index=11)
    out = aug(wav, y)
    assert torch.equal(out[1], wav[1])
    # clip 0's only donor is clip 2 (the silence clip gives nothing, a clip is not its own donor)
    added = out[0] - wav[0]
    assert added.abs().max() > 0
    assert torch.equal(ContextSpeech(p=0.0)(wav, y), wav)


def test_build_context_from_the_recipe_and_bad_settings_are_named():
    assert build_context({"p": 0.0}, ["a", "b"]) is None and build_context(None, ["a"]) is None
    aug = build_context({"p": 0.5, "gap_ms": [30, 150], "level": [0.4, 1.0], "side_p": 0.75},
                        ["yes", "_unknown_", "_silence_"])
    assert aug.silence_index == 2 and aug.gap == (480, 2400)
    with pytest.raises(ConfigError, match="context_speech"):
        ContextSpeech(p=1.5)
    with pytest.raises(ConfigError, match="gap_ms"):
        ContextSpeech(gap_ms=(100, 50))


def spy_on_forward(monkeypatch, cls) -> list:
    """Wrap ``cls.forward(wav, y)``: the list gets, per call, whether it changed the batch."""
    calls = []
    real = cls.forward

    def spy(self, wav, y):
        out = real(self, wav, y)
        calls.append(bool((out != wav).any()))
        return out

    monkeypatch.setattr(cls, "forward", spy)
    return calls


def train_with_spy(monkeypatch, cls, tiny_corpus, tmp_path, *extra):
    """Train a tiny ERM student with ``extra`` overrides and a spy on ``cls.forward``;
    asserts the spy changed every training batch (once per step, never at validation)
    and returns the model file."""
    import json

    from kws_okd.train.config import load_recipe
    from kws_okd.train.run import train
    from tests.test_train import overrides
    calls = spy_on_forward(monkeypatch, cls)
    pt = train(load_recipe("student", overrides(tiny_corpus, tmp_path, "distill=erm", *extra)))
    steps = json.loads((pt.parent / "train_summary.json").read_text())["steps"]
    assert len(calls) == steps and all(calls)
    return pt


def test_the_trainer_hands_every_training_batch_through_the_context(tiny_corpus, tmp_path, monkeypatch):
    pt = train_with_spy(monkeypatch, ContextSpeech, tiny_corpus, tmp_path, "context_speech.p=1.0")
    cfg = (pt.parent / "config.yaml").read_text()
    assert "context_speech:\n  p: 1.0" in cfg


def test_runs_with_context_get_their_own_folders_and_share_the_teacher():
    from kws_okd.train.config import context_tag, load_recipe
    assert context_tag(0) == "" and context_tag("0.5") == "+context0.5"
    plain, ctx = load_recipe("student", ["context_speech.p=0"]), load_recipe("student", [])   # on by default
    assert plain.exp_dir.endswith("bcresnet2-okd/seed0")
    assert ctx.exp_dir.endswith("bcresnet2-okd+context0.5/seed0")
    # The teacher hears clean words: students share the teacher trained without context.
    assert "teacher-speech_embedding/seed0" in ctx.teacher_ckpt == plain.teacher_ckpt
    assert load_recipe("teacher", ["context_speech.p=0.5"]).exp_dir.endswith("speech_embedding/seed0")


def test_teacher_hears_the_clean_clips_in_kd_and_okd():
    from kws_okd.augment.context import TeacherHearsClean
    from kws_okd.distill.losses import build_objective
    torch.manual_seed(0)
    clean = torch.randn(4, 100)
    heard = clean + torch.randn(4, 100)          # the student's input: clips with context
    x_ood = torch.randn(2, 100)
    net = torch.nn.Linear(100, 3)
    calls = []

    def teacher(x):
        calls.append(x.clone())
        return net(x)
    t = TeacherHearsClean(teacher, heard, clean)
    y = torch.tensor([0, 1, 2, 0])
    build_objective("kd")(net, t, heard, y)
    assert torch.equal(calls[-1], clean)
    build_objective("okd")(net, t, heard, y, augment=lambda x: x_ood)
    assert torch.equal(calls[-1], torch.cat([clean, x_ood]))
    t(x_ood)                                     # any other input (an augmenter's) passes through
    assert torch.equal(calls[-1], x_ood)


def test_a_teachers_own_training_gets_no_context():
    cfg = {"p": 0.5}
    assert build_context(cfg, ["yes", "_silence_"], role="teacher") is None
    assert build_context(cfg, ["yes", "_silence_"], role="student").p == 0.5
