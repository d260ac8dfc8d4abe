import pytest

from kws_okd.data import gsc
from kws_okd.data.manifest import read_classes, read_manifest
from kws_okd.data.words import GSC_V1_WORDS, GSC_V2_WORDS, SILENCE, UNKNOWN
from kws_okd.errors import DataError
from tests.conftest import make_gsc_fixture


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    return make_gsc_fixture(tmp_path_factory.mktemp("gsc") / "v2", GSC_V2_WORDS)


def test_version_detection(v2, tmp_path):
    v1 = make_gsc_fixture(tmp_path / "v1", GSC_V1_WORDS[:12], noise=False)
    assert gsc.detect_version(v2) == 2 and gsc.detect_version(v1) == 1
    assert len(gsc.class_names("35", 1)) == 30 and len(gsc.class_names("35", 2)) == 35


def test_35_class_task_uses_the_split_lists(v2, tmp_path):
    info = gsc.prepare(v2, tmp_path, task="35")
    train, valid, test = (read_manifest(tmp_path / f"{n}.csv") for n in ("train", "valid", "test_id"))
    assert len(train) == 35 * 3 and len(valid) == 35 and len(test) == 35
    assert {r["spk_id"] for r in valid} == {"dd44"} and {r["spk_id"] for r in test} == {"ee55"}
    classes = read_classes(tmp_path / "classes.txt")
    assert classes == sorted(GSC_V2_WORDS)
    assert all(classes[r["label"]] == r["word"] for r in train)
    assert info["eval_sets"] == {"test_id": "id"}


def test_12_class_task_has_unknown_and_silence(v2, tmp_path):
    gsc.prepare(v2, tmp_path, task="12")
    classes = read_classes(tmp_path / "classes.txt")
    assert classes[-2:] == [UNKNOWN, SILENCE] and len(classes) == 12
    train = read_manifest(tmp_path / "train.csv")
    counts = {c: sum(r["word"] == c for r in train) for c in classes}
    assert counts["yes"] == 3
    assert counts[UNKNOWN] == 3 and counts[SILENCE] == 3  # balanced with a keyword class
    sil = [r for r in train if r["word"] == SILENCE]
    assert all(r["wav"].endswith("white_noise.wav") for r in sil)
    from kws_okd.data.dataset import ManifestDataset
    ds = ManifestDataset(tmp_path / "train.csv")
    assert ds.waves.shape == (len(train), 16000)
    assert ds.waves[[i for i, r in enumerate(train) if r["word"] == SILENCE]].abs().sum() > 0


def test_bad_folders_are_refused_with_the_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        gsc.scan(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        gsc.scan(tmp_path / "empty")
    root = make_gsc_fixture(tmp_path / "odd", ["yes", "no"])
    (root / "banana").mkdir()
    with pytest.raises(DataError, match=r"unknown word folder\(s\) \['banana'\]"):
        gsc.scan(root)
    root = make_gsc_fixture(tmp_path / "nolist", ["yes"])
    (root / "testing_list.txt").unlink()
    with pytest.raises(DataError, match="testing_list.txt"):
        gsc.scan(root)
    root = make_gsc_fixture(tmp_path / "nonoise", list(gsc.class_names("12", 1)[:10]), noise=False)
    with pytest.raises(DataError, match="_background_noise_"):
        gsc.prepare(root, tmp_path / "m", task="12")
    with pytest.raises(DataError, match=r"domain\(s\) \['mars'\]"):
        gsc.prepare(root, tmp_path / "m", task="35", ood_domains=["mars"])
