import numpy as np
import pytest
import soundfile as sf

from kws_okd.audio.io import read_audio, write_audio
from kws_okd.data.manifest import read_manifest
from kws_okd.errors import AudioError, DataError
from tests.conftest import write_tone


def test_reads_mono_16k(tmp_path):
    x = read_audio(write_tone(tmp_path / "a.wav"))
    assert x.dtype == np.float32 and x.shape == (16000,)


def test_stereo_and_other_rates_convert_with_warning(tmp_path):
    with pytest.warns(UserWarning, match="2 channels"):
        x = read_audio(write_tone(tmp_path / "s.wav", channels=2))
    assert x.shape == (16000,)
    with pytest.warns(UserWarning, match="sample rate 8000 Hz"):
        x = read_audio(write_tone(tmp_path / "r.wav", sr=8000))
    assert x.shape == (16000,)


@pytest.mark.parametrize("kind,message", [
    ("missing", "does not exist"), ("empty", "empty"), ("corrupt", "cannot decode"),
    ("nan", "NaN"), ("nosamples", "no samples")])
def test_bad_audio_names_file_and_problem(tmp_path, kind, message):
    p = tmp_path / f"{kind}.wav"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "corrupt":
        p.write_bytes(b"RIFF\x00\x00garbage that is not a wave file")
    elif kind == "nan":
        sf.write(str(p), np.array([0.1, np.nan, 0.2], dtype=np.float32), 16000, subtype="FLOAT")
    elif kind == "nosamples":
        sf.write(str(p), np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=message) as e:
        read_audio(p)
    assert str(p) in str(e.value)


def test_write_is_atomic_and_refuses_nan(tmp_path):
    p = tmp_path / "o.wav"
    with pytest.raises(AudioError):
        write_audio(p, np.array([np.nan], dtype=np.float32))
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    write_audio(p, np.zeros(10, dtype=np.float32))
    assert sf.info(str(p)).frames == 10


def test_bad_manifests(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_manifest(tmp_path / "x.csv")
    (tmp_path / "a.csv").write_text("ID,wav\n1,a.wav\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['word', 'label'\]"):
        read_manifest(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("ID,wav,word,label\n1,a.wav,yes,one\n")
    with pytest.raises(DataError, match="line 2"):
        read_manifest(tmp_path / "b.csv")
