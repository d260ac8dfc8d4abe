import hashlib
import warnings

import numpy as np
import pytest
import soundfile as sf

from kws_okd.data.corpus import CorpusSpec, build_corpus


def corpus_digest(root):
    """One hash of a built corpus's files (names and bytes), its build stamp left out."""
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "corpus.json":
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def tiny_spec():
    # Four extra _unknown_ words, and two takes of each keyword (the second perturbed).
    # The four espeak/flite families (festival has its own tests: tests/test_tts_engines.py).
    return CorpusSpec(speakers_per_family=5, noise_seconds=3, seed=0,
                      families=("espeak", "espeak_accent", "espeak_klatt", "flite"),
                      extra_words=("hello", "music", "john", "yet"), keyword_takes=2)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, tiny_spec):
    root = tmp_path_factory.mktemp("corpus") / "synth"
    return build_corpus(root, tiny_spec, progress=False)


def write_tone(path, freq=440.0, sr=16000, seconds=1.0, channels=1, amp=0.3):
    t = np.arange(int(sr * seconds)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype="PCM_16")
    return path


def make_gsc_fixture(root, words, speakers=("aa11", "bb22", "cc33", "dd44", "ee55"), noise=True):
    """A miniature GSC folder: each word a distinct tone per speaker; speaker dd44 is
    the validation speaker and ee55 the test speaker."""
    for wi, w in enumerate(words):
        for si, s in enumerate(speakers):
            write_tone(root / w / f"{s}_nohash_0.wav", freq=200 + 40 * wi + 5 * si)
    val = [f"{w}/{speakers[3]}_nohash_0.wav" for w in words]
    test = [f"{w}/{speakers[4]}_nohash_0.wav" for w in words]
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    if noise:
        rng = np.random.default_rng(0)
        (root / "_background_noise_").mkdir(parents=True, exist_ok=True)
        sf.write(str(root / "_background_noise_" / "white_noise.wav"),
                 (0.1 * rng.standard_normal(16000 * 5)).astype(np.float32), 16000)
    return root


@pytest.fixture(autouse=True)
def _quiet_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        yield


def tool_exit(tool, argv) -> int:
    """Run a script under tools/ as ``python tools/<tool> argv...`` would, and return the
    code it exits with (argparse's errors exit 2)."""
    import runpy
    import sys
    from pathlib import Path
    path = str(Path(__file__).resolve().parents[1] / "tools" / tool)
    old = sys.argv
    sys.argv = [path, *argv]
    try:
        with pytest.raises(SystemExit) as e:
            runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv = old
    return e.value.code
