"""Real, unlabelled recordings as OKD's x_ood: what the augmentation makes, and that a
real-audio window never reaches a labelled loss."""
import pytest
import torch
import torch.nn.functional as F

from kws_okd.augment import build_augmentation
from kws_okd.augment.noise import measured_snr
from kws_okd.augment.real_audio import RealAudio
from kws_okd.distill import build_objective
from kws_okd.errors import ConfigError

N = 400
MARK = 7.0  # real windows carry it in their first sample; clips stay in [-1, 1]


def real_windows(k=5):
    g = torch.Generator().manual_seed(1)
    w = 0.3 * torch.randn(k, N, generator=g)
    w[:, 0] = MARK
    return w


def clips(b=8):
    return 0.2 * torch.randn(b, N, generator=torch.Generator().manual_seed(2))


def test_pure_windows_are_drawn_from_the_pool_unchanged():
    pool = real_windows()
    aug = RealAudio(weights=(1, 0, 0), windows=pool)
    out = aug(clips())
    assert out.shape == (8, N)
    for row in out:
        assert any(torch.equal(row, w) for w in pool)


def test_overlay_puts_the_clip_over_real_audio_at_the_drawn_snr():
    torch.manual_seed(0)
    pool = real_windows()
    aug = RealAudio(weights=(0, 1, 0), snr=(10.0, 10.0), windows=pool)
    x = clips()
    out = aug(x)
    background = out - x
    torch.testing.assert_close(measured_snr(x, out), torch.full((8,), 10.0), atol=1e-3, rtol=0)
    # The background is a scaled pool window.
    for b in background:
        assert any(torch.allclose(b / b[0] * MARK, w, atol=1e-4) for w in pool)


def test_splice_keeps_the_clip_on_one_side_and_real_speech_on_the_other():
    torch.manual_seed(0)
    pool = real_windows()
    aug = RealAudio(weights=(0, 0, 1), splice=(0.25, 0.25), windows=pool)
    x = clips()
    out = aug(x)
    cut = int(0.25 * N)
    for o, c in zip(out, x):
        head_real = torch.equal(o[cut:], c[cut:]) and any(torch.equal(o[:cut], w[:cut]) for w in pool)
        tail_real = torch.equal(o[:N - cut], c[:N - cut]) and any(torch.equal(o[N - cut:], w[N - cut:])
                                                                  for w in pool)
        assert head_real or tail_real


def test_bad_weights_are_refused():
    with pytest.raises(ConfigError, match="weights"):
        build_augmentation({"name": "real_audio", "weights": [0, 0, 0], "windows": real_windows()})
    with pytest.raises(ConfigError, match="weights"):
        RealAudio(weights=(1, -1, 1), windows=real_windows())


@pytest.mark.parametrize("weights", [(1, 0, 0), (0.5, 0.25, 0.25)])
def test_no_real_audio_reaches_a_labelled_loss(monkeypatch, weights):
    """OKD with real x_ood: the cross-entropy sees only the student's logits on the
    labelled clips; the real windows reach the student only through the KD term."""
    torch.manual_seed(0)
    seen, ce_inputs = [], []

    class Student(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            seen.append(x.detach().clone())
            return self.w * x[:, :4]  # logits carry the input's first samples

    def teacher(x):
        return x[:, :4] * 2.0

    real_ce = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda logits, y, *a, **k: (
        ce_inputs.append(logits.detach().clone()), real_ce(logits, y, *a, **k))[1])
    objective = build_objective("okd")
    x, y = clips(), torch.randint(0, 4, (8,))
    aug = RealAudio(weights=weights, snr=(100.0, 100.0), splice=(0.0, 0.0), windows=real_windows())
    loss, logits, logs = objective(Student(), teacher, x, y, aug)
    loss.backward()
    assert ce_inputs and all(torch.equal(c, x[:, :4]) for c in ce_inputs)
    assert all((c.abs() < 1.0).all() for c in ce_inputs)
    # The check is not vacuous: the student did see real windows, unlabelled.
    assert any((s[:, 0] == MARK).any() for s in seen)
    assert "kd_ood" in logs


def test_fraction_sets_the_size_of_the_ood_batch():
    pool = real_windows()
    x = clips(8)
    out = RealAudio(weights=(0, 0, 1), splice=(0.5, 0.5), fraction=0.5, windows=pool)(x)
    assert out.shape == (4, N)
    # Every row keeps half of one of the batch's clips.
    half = N // 2
    for o in out:
        assert any(torch.equal(o[:half], c[:half]) or torch.equal(o[half:], c[half:]) for c in x)
    with pytest.raises(ConfigError, match="fraction"):
        RealAudio(fraction=0.0, windows=pool)


def test_fold_into_moves_the_folded_classes_probability_onto_the_reject_class():
    from kws_okd.distill.losses import fold_into
    t = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.5, 0.5, 0.5, 0.5]])
    folded = fold_into(t, torch.tensor([True, False]), into=2, keep=[3], temperature=4.0)
    p, q = (t / 4).softmax(-1), (folded / 4).softmax(-1)
    # Row 0: classes 0 and 1 go into 2; 3 is kept; by hand 0.3499 + 0.2725 + 0.2122 = 0.8346.
    torch.testing.assert_close(q[0], torch.tensor([0.0, 0.0, p[0, :3].sum(), p[0, 3]]), atol=1e-6, rtol=0)
    assert abs(float(q[0, 2]) - 0.8346) < 1e-3
    assert torch.equal(folded[1], t[1])                     # rows not marked are left alone
    assert torch.isfinite(folded).all()                     # no -inf: the KL stays finite
    assert torch.equal(fold_into(t, torch.tensor([False, False]), 2, [3], 4.0), t)
    # Half the fold: half of classes 0 and 1 moves; by hand 0.2122 + (0.3499 + 0.2725) / 2 = 0.5234.
    half = (fold_into(t, torch.tensor([True, False]), 2, [3], 4.0, share=0.5) / 4).softmax(-1)
    torch.testing.assert_close(half[0], torch.tensor([p[0, 0] / 2, p[0, 1] / 2, p[0, 2] + p[0, :2].sum() / 2,
                                                      p[0, 3]]), atol=1e-6, rtol=0)
    assert abs(float(half[0, 2]) - 0.5234) < 1e-3
    with pytest.raises(ConfigError, match="reject_share"):
        build_objective("okd", reject_class="_unknown_", reject_share=0.0)


def test_okd_reject_class_teaches_unknown_on_real_windows_alone_and_keeps_mixed_rows(monkeypatch):
    """A teacher that hears keyword 0 in everything: with reject_class, the KD target on
    the pure real windows is the reject class; on clips mixed with real audio it is the
    teacher's own."""
    torch.manual_seed(0)
    classes = ["yes", "no", "_unknown_", "_silence_"]
    teacher_logits = torch.tensor([3.0, 0.0, 1.0, -1.0])

    def teacher(x):
        return teacher_logits.expand(len(x), 4)

    targets = []

    def student(x):
        return torch.zeros(len(x), 4, requires_grad=True)

    import kws_okd.distill.losses as losses
    real_kd = losses.kd_loss
    monkeypatch.setattr(losses, "kd_loss", lambda s, t, temp: (targets.append(t.detach().clone()),
                                                               real_kd(s, t, temp))[1])
    objective = build_objective("okd", reject_class="_unknown_")   # _silence_ is kept
    objective.set_classes(classes)
    aug = RealAudio(weights=(0.5, 0.5, 0), windows=real_windows())
    objective(student, teacher, clips(), torch.zeros(8, dtype=torch.long), aug)
    clean_t, ood_t = targets
    assert torch.equal(clean_t, teacher_logits.expand(8, 4))      # the clean batch keeps the teacher
    pure = aug.known_reject
    assert pure.any() and (~pure).any()
    p = (ood_t / 4.0).softmax(-1)
    p_teacher = (teacher_logits / 4.0).softmax(-1)
    assert (p[pure][:, :2] < 1e-6).all()                           # no keyword left on real audio alone
    torch.testing.assert_close(p[pure][:, 2], p_teacher[:3].sum().expand(int(pure.sum())))
    torch.testing.assert_close(p[~pure], p_teacher.expand(int((~pure).sum()), 4))


def test_okd_reject_class_errors_name_the_problem():
    objective = build_objective("okd", reject_class="_unknown_")
    with pytest.raises(ConfigError, match="not among the task's classes"):
        objective.set_classes(["yes", "no"])
    with pytest.raises(ConfigError, match="set_classes"):
        objective(lambda x: x[:, :3], lambda x: x[:, :3], clips(), torch.zeros(8, dtype=torch.long),
                  RealAudio(windows=real_windows()))
    objective.set_classes(["yes", "no", "_unknown_"])
    with pytest.raises(ConfigError, match="known_reject"):
        objective(lambda x: x[:, :3], lambda x: x[:, :3], clips(), torch.zeros(8, dtype=torch.long),
                  lambda x: x.flip(0))


def test_okd_reject_class_auto_follows_the_task():
    objective = build_objective("okd", reject_class="auto")
    objective.set_classes(["yes", "no", "_unknown_", "_silence_"])
    assert objective._reject == (2, [3])
    objective.set_classes(["yes", "no", "up"])        # the 35-class task has no _unknown_: off
    assert objective._reject is None
    loss, _, _ = objective(lambda x: x[:, :3], lambda x: x[:, :3], clips(), torch.zeros(8, dtype=torch.long),
                           lambda x: x.flip(0))      # no known_reject needed when off
    assert torch.isfinite(loss)
