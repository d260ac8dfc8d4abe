"""Feature masking for the student (kws_okd/augment/specaugment.py) and how the trainer wires it."""
import pytest
import torch

from kws_okd.augment.specaugment import SpecAugment, build_spec_augment
from kws_okd.errors import ConfigError
from kws_okd.models.registry import build_model
from kws_okd.train.config import load_recipe


def _bands(masked_row):
    """The masked indices of a 1-D bool row."""
    return torch.nonzero(masked_row).flatten().tolist()


def test_frequency_masks_are_bands_of_at_most_the_width_across_every_frame():
    torch.manual_seed(0)
    aug = SpecAugment(p=1.0, freq_masks=1, freq_width=3, time_masks=0, time_width=10)
    m = aug.mask(400, 40, 101)
    widths = set()
    for row in m:
        bins = row.any(dim=1)
        assert torch.equal(row, bins[:, None].expand_as(row))     # a band holds every frame
        idx = _bands(bins)
        if idx:
            assert idx == list(range(idx[0], idx[-1] + 1))          # contiguous
        widths.add(len(idx))
    assert widths == {0, 1, 2, 3}


def test_time_masks_are_spans_of_at_most_the_width_and_two_may_overlap():
    torch.manual_seed(1)
    aug = SpecAugment(p=1.0, freq_masks=0, freq_width=5, time_masks=2, time_width=4)
    m = aug.mask(300, 40, 101)
    counts = m[:, 0, :].sum(dim=1)
    assert counts.max() <= 8 and counts.min() >= 0
    assert torch.equal(m, m[:, :1, :].expand_as(m))             # a span holds every bin
    assert (counts > 4).any()                                    # two spans add up


def test_about_p_of_the_clips_are_masked_and_the_others_left_alone():
    torch.manual_seed(2)
    aug = SpecAugment(p=0.5, freq_masks=2, freq_width=5, time_masks=2, time_width=10)
    x = torch.randn(400, 40, 101)
    y = aug(x)
    touched = (y != x).flatten(1).any(dim=1).float().mean().item()
    assert 0.4 < touched < 0.6   # 0.5 drawn, less the rows whose masks were all 0 wide


def test_masked_cells_hold_the_clips_mean_and_the_rest_is_unchanged():
    torch.manual_seed(3)
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)
    aug = SpecAugment(p=1.0, freq_masks=1, freq_width=4, time_masks=1, time_width=6)
    torch.manual_seed(3)
    m = aug.mask(2, 4, 6)
    torch.manual_seed(3)
    y = aug(x)
    means = torch.tensor([11.5, 35.5])                           # (0 + 23) / 2, (24 + 47) / 2
    for i in range(2):
        assert torch.all(y[i][m[i]] == means[i])
        assert torch.equal(y[i][~m[i]], x[i][~m[i]])


def test_the_student_hears_masked_features_in_training_only_and_saves_no_trace_of_it():
    torch.manual_seed(4)
    net = build_model("bcresnet1", num_classes=12)
    keys = set(net.state_dict())
    net.feature_augment = SpecAugment(p=1.0, freq_masks=2, freq_width=5, time_masks=2, time_width=10)
    assert set(net.state_dict()) == keys
    seen = []
    net.backbone.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].clone()))
    wav = torch.randn(8, 16000)
    feats = net.frontend(wav)
    net.train()
    net(wav)
    net.eval()
    net(wav)
    assert not torch.equal(seen[0], feats) and torch.equal(seen[1], feats)
    changed = (seen[0] != feats)
    assert changed.all(dim=2).sum(dim=1).le(10).all()           # at most 2 x 5 whole bins
    assert changed.all(dim=1).sum(dim=1).le(20).all()           # and 2 x 10 whole frames


def test_build_and_settings_errors_name_the_key():
    assert build_spec_augment(None) is None
    assert build_spec_augment({"p": 0.0}) is None
    assert build_spec_augment({"p": 0.5}, role="teacher") is None
    assert isinstance(build_spec_augment({"p": 0.5}), SpecAugment)
    with pytest.raises(ConfigError, match="spec_augment.p must be a probability, got 1.5"):
        SpecAugment(p=1.5)
    with pytest.raises(ConfigError, match="spec_augment.time_width must be a whole number >= 0, got -1"):
        SpecAugment(time_width=-1)
    with pytest.raises(ConfigError, match="spec_augment.freq_masks must be a whole number >= 0, got 1.5"):
        SpecAugment(freq_masks=1.5)


def test_runs_with_masking_get_their_own_folder():
    plain = load_recipe("student", [])
    masked = load_recipe("student", ["spec_augment.p=0.5"])
    assert "+spec" not in plain.exp_dir
    assert masked.exp_dir == plain.exp_dir.replace("/seed0", "+spec0.5/seed0")


def test_a_student_trains_with_masking_and_its_saved_model_has_none(tiny_corpus, tmp_path):
    from kws_okd.train.checkpoint import load_model
    from kws_okd.train.run import train
    from tests.test_train import overrides
    pt = train(load_recipe("student", overrides(tiny_corpus, tmp_path, "distill=erm", "spec_augment.p=1.0")))
    assert pt.parent.parent.name.endswith("+spec1")
    model, blob = load_model(pt)
    assert model.feature_augment is None and blob["info"]["valid_acc"] is not None
