import warnings

import pytest

from kws_okd.audio.io import read_audio
from kws_okd.data.dataset import ManifestDataset
from kws_okd.data.hostile import EXPECTED, make_hostile_files
from kws_okd.data.manifest import write_manifest
from kws_okd.errors import AudioError, ConfigError
from kws_okd.train.config import load_recipe, validate_config


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return make_hostile_files(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_hostile_file_is_converted_or_refused_by_name(hostile, tmp_path, name):
    fate, text = EXPECTED[name]
    path = hostile[name]
    write_manifest(tmp_path / "m.csv", [dict(ID="x", wav=str(path), word="yes", label=0)])
    if fate == "refused":
        with pytest.raises(AudioError, match=text) as e:
            ManifestDataset(tmp_path / "m.csv")
        assert str(path) in str(e.value)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ManifestDataset(tmp_path / "m.csv")
    assert ds.inputs.shape == (1, 16000)
    assert ds.inputs.isfinite().all() and ds.inputs.abs().max() > 0.1
    messages = " ".join(str(w.message) for w in caught)
    if fate == "converted":
        assert text in messages and str(path) in messages
    else:
        assert messages == ""
        assert read_audio(path).shape == (16000,)


@pytest.mark.parametrize("override,key", [
    ("epochs=abc", "epochs"), ("batch_size=0", "batch_size"), ("optim.lr=-1", "optim.lr"),
    ("seed=1.5", "seed"), ("distill.temperature=0", "distill.temperature")])
def test_wrong_types_and_ranges_name_the_key(override, key):
    cfg = load_recipe("student", [override])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(cfg)


def test_unknown_keys_and_groups_name_them():
    with pytest.raises(ConfigError, match="epoch"):
        load_recipe("student", ["epoch=3"])
    with pytest.raises(ConfigError, match="bcresnet9"):
        load_recipe("student", ["student=bcresnet9"])


def test_recipes_cannot_instantiate_arbitrary_targets():
    cfg = load_recipe("student", ["+student._target_=os.system"])
    with pytest.raises(ConfigError, match="_target_"):
        validate_config(cfg)
