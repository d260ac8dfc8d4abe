"""OKD image augmentations: shapes, value ranges, mixing weights, model binding."""
import pytest
import torch

import kws_okd.augment.image  # noqa: F401  (registration)
import kws_okd.models.image  # noqa: F401
from kws_okd.augment import build_augmentation
from kws_okd.augment.image import CutMix, Fusion, Jigsaw, PixelNoise, bind_models, box_mask
from kws_okd.errors import ConfigError
from kws_okd.models import build_model


def constant_batch(b=16, c=3, h=16, w=16):
    """Image i is the constant i: every output pixel says which images it came from."""
    return torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, c, h, w).clone()


def test_box_mask_covers_the_asked_area():
    torch.manual_seed(0)
    lam = torch.full((2000,), 0.75)
    mask, area = box_mask(32, 32, lam)
    assert mask.shape == (2000, 1, 32, 32)
    assert torch.allclose(area, mask.flatten(1).float().mean(1))
    # Boxes are clipped at the borders, so on average they cover at most 1 - lam.
    assert 0.12 < area.mean() <= 0.26
    # A full-size box centred anywhere inside still covers at least a quarter.
    _, big = box_mask(8, 8, torch.zeros(100))
    assert (big >= 0.25).all() and big.mean() > 0.4


def test_cutmix_pastes_a_box_of_the_partner():
    torch.manual_seed(0)
    x = constant_batch()
    aug = CutMix(alpha=1.0)
    p = aug.sample(x)
    y = aug.apply(x, p)
    assert y.shape == x.shape
    for i in range(len(x)):
        own = (y[i] == i).flatten().float().mean()
        vals = set(y[i].unique().tolist())
        assert vals <= {float(i), float(p["perm"][i])}
        if p["perm"][i] != i:
            assert own == pytest.approx(float(p["lam"][i]), abs=1e-6)


def test_fusion_blends_mixup_and_cutmix_with_a_third_weight():
    torch.manual_seed(1)
    x = constant_batch(b=64)
    aug = build_augmentation({"name": "fusion"})
    assert isinstance(aug, Fusion)
    p = aug.sample(x)
    y = aug.apply(x, p)
    assert y.shape == x.shape
    assert y.min() >= x.min() and y.max() <= x.max()  # a convex blend of two images
    for i in range(len(x)):
        j = int(p["perm"][i])
        lam, w = float(p["lam"][i]), float(p["w"][i])
        mixed = lam * i + (1 - lam) * j
        inside, outside = w * mixed + (1 - w) * j, w * mixed + (1 - w) * i
        m = p["mask"][i, 0]
        assert torch.allclose(y[i, :, m], torch.tensor(inside), atol=1e-4)
        assert torch.allclose(y[i, :, ~m], torch.tensor(outside), atol=1e-4)
    for k in ("lam", "w", "cut_lam"):
        assert ((p[k] >= 0) & (p[k] <= 1)).all()
    # Beta(1,1) is uniform: the weights spread over [0, 1].
    assert p["w"].std() > 0.2 and p["lam"].std() > 0.2


def test_mixup_mixes_with_beta_weights():
    torch.manual_seed(0)
    x = constant_batch(b=256, h=4, w=4)
    y = build_augmentation({"name": "mixup", "alpha": 1.0})(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 255
    # Each output is constant: one weight per image, not per pixel.
    assert torch.allclose(y.flatten(1).std(1), torch.zeros(256), atol=1e-4)


def test_jigsaw_permutes_tiles_never_identity():
    torch.manual_seed(0)
    b = 64
    x = torch.arange(4.0).view(1, 1, 2, 2).repeat_interleave(4, 2).repeat_interleave(4, 3)
    x = x.repeat(b, 3, 1, 1)  # 8x8 images whose 2x2 tiles hold 0, 1, 2, 3
    aug = Jigsaw(grid=2)
    p = aug.sample(x)
    y = aug.apply(x, p)
    assert y.shape == x.shape
    tiles = y[:, 0, ::4, ::4].reshape(b, 4)
    assert torch.equal(tiles, p["order"].float())
    assert not (tiles == torch.arange(4.0)).all(1).any()
    assert torch.equal(y.sort(dim=-1).values.flatten(1).sort(1).values,
                       x.sort(dim=-1).values.flatten(1).sort(1).values)  # same pixels
    odd = torch.randn(2, 3, 9, 9)
    out = aug(odd)
    assert torch.equal(out[:, :, 8], odd[:, :, 8]) and torch.equal(out[:, :, :, 8], odd[:, :, :, 8])


def test_pixel_noise_std_within_range():
    torch.manual_seed(0)
    x = torch.zeros(64, 3, 32, 32)
    aug = PixelNoise(min_std=0.1, max_std=0.3)
    p = aug.sample(x)
    y = aug.apply(x, p)
    measured = y.flatten(1).std(1)
    assert torch.allclose(measured, p["std"], rtol=0.1)
    assert measured.min() > 0.08 and measured.max() < 0.33
    with pytest.raises(ConfigError):
        build_augmentation({"name": "pixel_noise", "sigma": 1})


def test_fgsm_needs_a_bound_model_and_moves_by_eps():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 16, 16)
    aug = build_augmentation({"name": "fgsm", "eps": 1e-3})
    with pytest.raises(ConfigError, match="bind_models"):
        aug(x)
    teacher = build_model("small_cnn", 5, widths=[8])
    student = build_model("small_cnn", 5, widths=[4]).train()
    bind_models(aug, student=student, teacher=teacher)
    y = aug(x)
    assert y.shape == x.shape and not y.requires_grad
    assert torch.allclose((y - x).abs(), torch.full_like(x, 1e-3), atol=1e-6)
    # The step increases the teacher's loss on its own predictions.
    target = teacher(x).argmax(-1)
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        y_big = x + 0.05 * (y - x).sign()
        assert ce(teacher(y_big), target) > ce(teacher(x), target)
    assert all(p.grad is None for p in teacher.parameters())
    assert student.training  # the student's mode is restored
    assert "teacher" not in dict(aug.named_modules())  # bound networks are not submodules


def test_okd_policy_binds_fgsm_inside_one_of_and_keeps_shapes():
    torch.manual_seed(0)
    import yaml
    from pathlib import Path
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes/image/augment/okd_image.yaml").read_text())
    aug = build_augmentation(cfg)
    assert {type(t).__name__ for t in aug.transforms} == {"Fusion", "FGSM", "PixelNoise", "Jigsaw",
                                                           "Mixup", "CutMix"}
    bind_models(aug, student=build_model("small_cnn", 3, widths=[4]), teacher=None)  # falls back to student
    x = torch.rand(32, 3, 8, 8) * 2 - 1
    y = aug(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.equal(x, y)
