"""The 12-class default: real-speech negatives, long-audio thresholds, batch scoring."""
import numpy as np
import pytest
import torch

from kws_okd.data import gsc
from kws_okd.data.manifest import read_manifest
from kws_okd.data.negatives import add_real_negatives
from kws_okd.data.words import UNKNOWN
from kws_okd.errors import DataError
from kws_okd.evaluate.long_audio import at_thresholds, batch_trace, calibrate, choose_thresholds
from kws_okd.models import build_model
from kws_okd.stream.engine import StreamConfig, StreamEngine


def test_real_negatives_join_train_as_unknown(tiny_corpus, tmp_path):
    gsc.prepare(tiny_corpus, tmp_path, task="12")
    before = read_manifest(tmp_path / "train.csv")
    per_class = sum(r["word"] == "yes" for r in before)
    windows = torch.linspace(-0.5, 0.5, 16000).repeat(500, 1) * torch.rand(500, 1)
    n = add_real_negatives(tmp_path, 1.5, windows=windows, seed=1)
    after = read_manifest(tmp_path / "train.csv")
    assert n == round(1.5 * per_class) and len(after) == len(before) + n
    new = after[len(before):]
    classes = (tmp_path / "classes.txt").read_text().split()
    assert {r["word"] for r in new} == {UNKNOWN} and {r["label"] for r in new} == {classes.index(UNKNOWN)}
    assert {r["domain"] for r in new} == {"real_speech"}
    import soundfile as sf
    x, sr = sf.read(new[0]["wav"], dtype="float32")
    i = int(new[0]["ID"].split("/w")[1])
    assert sr == 16000 and np.allclose(x, windows[i].numpy(), atol=1e-4)
    # Validation and test sets stay synthetic.
    assert "real_speech" not in {r["domain"] for r in read_manifest(tmp_path / "valid.csv")}


def test_a_run_can_leave_the_real_windows_out_of_its_training_set(tiny_corpus, tmp_path):
    from kws_okd.data.manifest import manifest_without_domains, write_manifest
    gsc.prepare(tiny_corpus, tmp_path, task="12")
    train = tmp_path / "train.csv"
    synthetic = read_manifest(train)
    assert manifest_without_domains(train, ["real_speech"]) == train   # nothing to leave out yet
    add_real_negatives(tmp_path, 1.0, windows=torch.rand(200, 16000) - 0.5, seed=0)
    assert manifest_without_domains(train, []) == train
    out = manifest_without_domains(train, ["real_speech"])
    assert out.name == "train.without-real_speech.csv"
    assert read_manifest(out) == synthetic   # the same rows in the same order
    # Rewritten when its source changes, not before.
    stamp = out.stat().st_mtime_ns
    assert manifest_without_domains(train, ("real_speech",)) == out and out.stat().st_mtime_ns == stamp
    write_manifest(train, read_manifest(train)[1:])
    assert read_manifest(manifest_without_domains(train, ["real_speech"])) == synthetic[1:]
    domains = sorted({r["domain"] for r in synthetic} | {"real_speech"})
    with pytest.raises(DataError, match=r"train\.csv: no rows left without the domains"):
        manifest_without_domains(train, domains)


def test_top_keyword_counts_events_whose_own_word_scores_highest():
    from kws_okd.evaluate.long_audio import top_keyword
    times = np.arange(0.0, 10.0, 0.5)
    scores = np.zeros((len(times), 2), np.float32)
    scores[times == 1.5] = [0.3, 0.1]   # "yes" (1.0-1.2 s): yes is highest in its span
    scores[times == 3.5] = [0.6, 0.2]   # "no" (3.0-3.2 s): yes scores higher there
    scores[times == 4.0] = [0.0, 0.9]   # past "no"'s span widened to end + 0.75 s: not counted
    labels = [dict(word="yes", start_s=1.0, end_s=1.2), dict(word="ok", start_s=2.0, end_s=2.5),
              dict(word="no", start_s=3.0, end_s=3.2), dict(word="no", start_s=20.0, end_s=20.4)]
    out = top_keyword(times, scores, labels, ["yes", "no"])
    # The last "no" has no window in its span: its score counts as 0 and it is not on top.
    assert out == dict(top=1, n_events=3, own_max=pytest.approx((0.3 + 0.2 + 0.0) / 3))


def test_real_negatives_need_an_unknown_class(tiny_corpus, tmp_path):
    gsc.prepare(tiny_corpus, tmp_path, task="35")
    with pytest.raises(DataError, match="_unknown_ class"):
        add_real_negatives(tmp_path, 1.0, windows=torch.zeros(10, 16000))


def test_other_negative_folders_rebuild_the_manifests(tiny_corpus, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from tests.conftest import write_tone
    from kws_okd.data.sources import prepare_gsc
    monkeypatch.setenv("KWS_OKD_CACHE", str(tmp_path / "cache"))
    folders = {}
    for name, hz in (("low", 300.0), ("high", 2500.0)):
        for i in range(6):   # a 3-s recording each: windows of it become the negatives
            write_tone(tmp_path / name / "talk" / f"t{i}.wav", freq=hz + 10 * i, seconds=3.0)
        folders[name] = tmp_path / name

    def prepare(name):
        cfg = OmegaConf.create(dict(root=str(tiny_corpus), task="12", manifest_dir=str(tmp_path / "manifests"),
                                    real_negatives=1.0, real_negative_folders=[str(folders[name])]))
        out = prepare_gsc(cfg, progress=False)
        rows = [r for r in read_manifest(out / "train.csv") if r["domain"] == "real_speech"]
        import soundfile as sf
        x, _ = sf.read(rows[0]["wav"], dtype="float32")
        return rows, np.abs(np.fft.rfft(x)).argmax()   # the window's tone, in 1-Hz bins
    rows, peak = prepare("low")
    assert rows and 290 <= peak <= 360
    # Before the fix the folders were not part of what the manifests were built with, so
    # the 2.5 kHz folder silently reused the 300 Hz negatives.
    rows, peak = prepare("high")
    assert rows and 2490 <= peak <= 2560


def test_batch_trace_equals_the_streaming_engine():
    torch.manual_seed(0)
    classes = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", UNKNOWN, "_silence_"]
    model = build_model("bcresnet1", num_classes=12).eval()
    x = (0.1 * np.random.default_rng(0).standard_normal(16000 * 3)).astype(np.float32)
    cfg = StreamConfig(hop_ms=40, smooth=3)
    eng = StreamEngine(model, classes, cfg, record=True, threads=None)
    for i in range(0, len(x), 1234):   # odd block sizes, as a live source
        eng.feed(x[i:i + 1234])
    t_eng, s_eng = eng.trace()
    t, s, kws, dur = batch_trace(model, classes, x, cfg, batch=7)
    assert kws == classes[:10] and dur == 3.0
    assert np.allclose(t, t_eng) and len(t) == (48000 - 16000) // 640 + 1
    assert np.abs(s - s_eng).max() < 1e-4


def test_thresholds_sit_just_above_each_keywords_false_alarms():
    # Two keywords, 10 s at 10 hops/s. "yes" occurs at 2.0-2.5 s (scores 0.9 there) and
    # scores 0.62 at 6 s, away from any occurrence: a false alarm below 0.63.
    times = np.arange(1, 101) / 10
    scores = np.zeros((100, 2))
    scores[(times >= 2.0) & (times <= 2.5), 0] = 0.9
    scores[times == 6.0, 0] = 0.62
    scores[times == 8.0, 1] = 0.55   # "no" never occurs: any firing is a false alarm
    labels = [dict(start_s=2.0, end_s=2.5, word="yes")]
    thr = choose_thresholds(times, scores, labels, ["yes", "no"], 10.0, 1.0, fa_per_hour=1.0)
    assert 0.62 < thr["yes"] <= 0.63 and 0.55 < thr["no"] <= 0.56
    res = at_thresholds(times, scores, labels, ["yes", "no"], 10.0, 1.0, thr)
    assert res["hits"] == 1 and res["false_alarms"] == 0 and res["frr"] == 0.0
    # At a flat 0.5 both stray peaks fire: 2 false alarms in 10 s = 720 per hour.
    res = at_thresholds(times, scores, labels, ["yes", "no"], 10.0, 1.0, {"yes": 0.5, "no": 0.5})
    assert res["false_alarms"] == 2 and res["fa_per_hour"] == pytest.approx(720.0)


@pytest.mark.parametrize("stray", [0.99995, 0.99998003])
def test_thresholds_keep_no_false_alarm_above_09999(stray):
    """A stray peak above the old grid's top (0.9999) and the keyword at 0.999999: the
    chosen threshold must sit between them, so the recording it was chosen on has no false
    alarm and the keyword is still found. 0.99998003 (a real student's peak) lies just
    under a grid point whose 7-decimal rounding, 0.99998, would let it through."""
    times = np.arange(1, 101) / 10
    scores = np.zeros((100, 1))
    scores[(times >= 2.0) & (times <= 2.5), 0] = 0.999999
    scores[times == 6.0, 0] = stray
    labels = [dict(start_s=2.0, end_s=2.5, word="yes")]
    thr = choose_thresholds(times, scores, labels, ["yes"], 10.0, 1.0, fa_per_hour=1.0)
    assert stray < thr["yes"] <= 0.999999 and thr["yes"] == round(thr["yes"], 7)
    res = at_thresholds(times, scores, labels, ["yes"], 10.0, 1.0, thr)
    assert res["false_alarms"] == 0 and res["hits"] == 1


def test_sweep_reaches_thresholds_above_0999():
    """A confident student: a stray negative at 0.9995 and the keyword at 0.99999. Only a
    threshold between the two gives no false alarm; a grid that stops at 0.999 cannot."""
    from kws_okd.stream.longaudio import operating_point, sweep
    times = np.arange(1, 101) / 10
    scores = np.zeros((100, 1))
    scores[(times >= 2.0) & (times <= 2.5), 0] = 0.99999
    scores[times == 6.0, 0] = 0.9995
    labels = [dict(start_s=2.0, end_s=2.5, word="yes")]
    op = operating_point(sweep(times, scores, labels, ["yes"], 10.0, 1.0), fa_per_hour=1.0)
    assert op is not None and op["frr"] == 0.0 and 0.9995 < op["threshold"] <= 0.99999
    assert operating_point(sweep(times, scores, labels, ["yes"], 10.0, 1.0,
                                 thresholds=np.linspace(0.5, 0.999, 50)), 1.0) is None


def test_frr_at_reads_the_sweep_and_says_when_a_rate_is_out_of_reach():
    from kws_okd.evaluate.long_audio import frr_at
    scored = {"frr_at": {"1.0": {"frr": 0.25, "threshold": 0.9}, "0.5": None}}
    assert frr_at(scored, 1.0) == 0.25 and frr_at(scored, 1) == 0.25
    assert frr_at(scored, 0.5) is None and frr_at(scored, 0.5, unreached=1.0) == 1.0


class _LoudnessSaysYes(torch.nn.Module):
    """Class 0 ("yes") wins as a window's peak grows: a detector whose scores are known."""
    def forward(self, x):
        peak = x.abs().amax(-1)
        return torch.stack([12 * peak, torch.full_like(peak, 3.0)], -1)


def test_thresholds_from_several_recordings_keep_each_free_of_false_alarms(tmp_path):
    from kws_okd.audio.io import write_audio
    from kws_okd.stream.longaudio import write_labels
    sr = 16000
    cfg = StreamConfig(hop_ms=100, smooth=1, keywords=("yes",))
    wavs = []
    for name, stray in (("a", 0.3), ("b", 0.5)):   # a burst with no keyword label
        x = np.zeros(6 * sr, np.float32)
        x[3 * sr:3 * sr + 800] = stray
        write_audio(tmp_path / f"{name}.wav", x, sr)
        write_labels(tmp_path / f"{name}.csv", [])
        wavs.append(tmp_path / f"{name}.wav")
    score = {s: float(torch.tensor([12 * s, 3.0]).softmax(0)[0]) for s in (0.3, 0.5)}
    classes = ["yes", UNKNOWN]
    one = calibrate(_LoudnessSaysYes(), classes, wavs[0], cfg)
    both = calibrate(_LoudnessSaysYes(), classes, wavs, cfg)
    assert score[0.3] < one["yes"] <= score[0.3] + 0.011
    assert score[0.5] < both["yes"] <= score[0.5] + 0.011   # the louder stray sets it
    assert calibrate(_LoudnessSaysYes(), classes, wavs[::-1], cfg) == both
    # A floor raises a threshold that would sit below it, and leaves one above it alone.
    assert calibrate(_LoudnessSaysYes(), classes, wavs, cfg, floor=0.98) == {"yes": 0.98}
    above = calibrate(_LoudnessSaysYes(), classes, wavs, cfg, floor=score[0.3])["yes"]
    assert score[0.5] < above <= score[0.5] + 0.011   # the grid starts at the floor: same band
