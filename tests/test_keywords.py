"""A user's own keywords (kws_okd/keywords): words checked, near misses, the window, the
corpus and manifests of a keyword set, and every bad input refused with one error."""
import json
import shutil

import numpy as np
import pytest

from kws_okd.data.corpus import CorpusSpec, build_corpus
from kws_okd.data.gsc import prepare
from kws_okd.errors import ConfigError, DataError
from kws_okd.keywords.build import hydra_list, real_dev_items
from kws_okd.keywords.corpus import choose_window, probe_keywords, set_name, spoken_seconds
from kws_okd.keywords.vocab import (build_vocabulary, check_distinct, edit_distance, holds, near_misses,
                                    parse_keywords, phonemes, split_phonemes)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def test_parse_keywords_normalises_case_and_spaces():
    assert parse_keywords(" Marvin, sheila ,Lights   ON") == ["marvin", "sheila", "lights on"]
    assert parse_keywords(["don't", "x-ray"]) == ["don't", "x-ray"]


@pytest.mark.parametrize("words, message", [
    ("", "no keywords"),
    (" , ", "empty keyword between commas"),
    ("marvin,,sheila", "empty keyword between commas"),
    ("marvin,7up", "'7up' has characters no synthesiser reads"),
    ("héllo", "characters no synthesiser reads"),
    ("lights@on", "characters no synthesiser reads"),
    ("marvin,sheila,Marvin", "keyword 'marvin' is given twice"),
    ("please turn the lights on now", "too long for a keyword window"),
])
def test_bad_keyword_lists_get_one_clear_error(words, message):
    with pytest.raises(ConfigError, match=message):
        parse_keywords(words)


def test_numbers_get_a_hint_to_write_them_as_words():
    with pytest.raises(ConfigError, match="write numbers as words"):
        parse_keywords("7")


def test_split_phonemes_keeps_diphthongs_and_length_on_one_symbol():
    # espeak-ng's IPA for "lights on" and "marvin", stress marks dropped
    assert split_phonemes("lˈaɪts ˌɔn") == ("l", "aɪ", "t", "s", "ɔ", "n")
    assert split_phonemes("mˈɑːɹvɪn") == ("m", "ɑːɹ", "v", "ɪ", "n")
    assert split_phonemes("ʃˈiːlə") == ("ʃ", "iː", "l", "ə")


def test_edit_distance_and_holds_by_hand():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance(("m", "a", "n"), ("m", "a", "n")) == 0
    assert edit_distance((), ("a", "b")) == 2
    assert holds(("m", "ɑːɹ", "v", "ɪ", "n", "z"), ("m", "ɑːɹ", "v", "ɪ", "n"))
    assert not holds(("m", "ɑːɹ", "v", "ɪ"), ("m", "ɑːɹ", "v", "ɪ", "n"))


def test_near_misses_are_close_not_homophones_nor_holding_the_keyword():
    kp = {"marvin": ("m", "ɑːɹ", "v", "ɪ", "n")}
    lex = {   # in order of frequency
        "marvins": ("m", "ɑːɹ", "v", "ɪ", "n", "z"),     # holds the keyword: never a negative
        "marven": ("m", "ɑːɹ", "v", "ɪ", "n"),           # sounds the same
        "market": ("m", "ɑːɹ", "k", "ɪ", "t"),           # two edits
        "table": ("t", "eɪ", "b", "ə", "l"),              # far
        "martin": ("m", "ɑːɹ", "t", "ɪ", "n"),           # one edit, rarer than market
        "marlin": ("m", "ɑːɹ", "l", "ɪ", "n"),           # one edit
    }
    # one edit before two; then by frequency
    assert near_misses("marvin", kp, lex, n=8) == ["martin", "marlin", "market"]
    assert near_misses("marvin", kp, lex, n=1) == ["martin"]


def test_short_keywords_get_one_edit_only():
    kp = {"on": ("ɔ", "n")}
    lex = {"in": ("ɪ", "n"), "own": ("oʊ", "n"), "stone": ("s", "t", "oʊ", "n"), "off": ("ɔ", "f")}
    assert near_misses("on", kp, lex) == ["in", "own", "off"]


def test_two_keywords_that_sound_the_same_are_refused():
    with pytest.raises(ConfigError, match="'two' and 'too' sound the same"):
        check_distinct({"two": ("t", "uː"), "too": ("t", "uː")})
    check_distinct({"two": ("t", "uː"), "tea": ("t", "iː")})


@needs_espeak
def test_homophones_through_espeak_are_refused_before_anything_is_built(tmp_path):
    with pytest.raises(ConfigError, match="sound the same"):
        build_vocabulary("two,too", tmp_path)
    assert not any(tmp_path.iterdir())   # refused before the lexicon was looked up


@needs_espeak
def test_a_keyword_among_the_users_unknown_words_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'marvin' is also one of the _unknown_ words"):
        build_vocabulary("marvin,sheila", tmp_path, unknown_words=["Marvin"])


@needs_espeak
def test_espeak_pronunciations_line_up_with_their_words():
    p = phonemes(["marvin", "one", "won", "lights on"])
    assert p["one"] == p["won"]
    assert p["marvin"][0] == "m" and len(p["marvin"]) == 5
    assert len(p["lights on"]) == 6


def test_window_is_the_90th_percentile_with_margin_rounded_up():
    # 90th percentile of [0.5]*9 + [0.95] is 0.545 -> 1 s floor
    assert choose_window({"a": [0.5] * 9 + [0.95]}) == 1.0
    # a phrase of 1.0-1.1 s: 1.1 * 1.15 = 1.265 -> 1.3 s
    assert choose_window({"a": [0.4], "hey computer": [1.0, 1.1, 1.1, 1.1, 1.1]}) == 1.3
    with pytest.raises(ConfigError, match="'a long phrase' is too long for a keyword window"):
        choose_window({"ok": [0.4], "a long phrase": [1.6, 1.7]})


def test_spoken_seconds_trims_silence():
    sr = 16000
    x = np.zeros(sr, dtype=np.float32)
    x[4000:12000] = 0.5
    assert spoken_seconds(x, sr) == pytest.approx(0.5)
    assert spoken_seconds(np.zeros(sr), sr) == 0.0


@needs_espeak
def test_probe_refuses_nothing_said_and_measures_the_rest():
    d = probe_keywords(["marvin", "lights on"], ["espeak"], voices_per_family=2)
    assert len(d["marvin"]) == 2 and all(0.2 < s < 1.2 for s in d["marvin"])
    assert np.mean(d["lights on"]) > np.mean(d["marvin"])


def test_set_names_are_short_and_stable():
    assert set_name("marvin, Sheila,lights on") == "marvin-sheila-lights_on"
    long = set_name("zero,one,two,three,four,five,six,seven,eight,nine")
    assert long.startswith("zero-one-10w-") and len(long) < 30
    assert long == set_name(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])


def test_hydra_list_quotes_phrases_and_apostrophes():
    assert hydra_list(["marvin", "lights on", "don't"]) == """['marvin','lights on',"don't"]"""


@needs_espeak
def test_keyword_corpus_and_manifests(tmp_path):
    """A two-family tiny corpus of two keywords, one of them a phrase: its folder has an
    underscore, the classes are the keywords + _unknown_ + _silence_, the near misses are
    _unknown_, and the clips are the window long."""
    spec = CorpusSpec.sized("tiny", families=("espeak", "espeak_accent"), speakers_per_family=3,
                            words=("marvin", "lights_on", "house"), extra_words=("martin", "lights"),
                            extra_word_families=("espeak",), keywords=("marvin", "lights_on"),
                            clip_seconds=1.2, noise_seconds=2)
    assert spec.digest() != CorpusSpec.sized("tiny", families=("espeak", "espeak_accent")).digest()
    root = build_corpus(tmp_path / "c", spec, progress=False)
    import soundfile as sf
    info = sf.info(str(next((root / "lights_on").glob("*.wav"))))
    assert info.frames == 19200
    assert len(list((root / "marvin").glob("*.wav"))) == 6   # keyword_takes=1 in tiny: 3 speakers x 2 families
    out = prepare(root, tmp_path / "m", task="keywords", keywords=["marvin", "lights on"],
                  ood_domains=["espeak_accent"], train_domains=["espeak"])
    assert out["classes"] == ["marvin", "lights_on", "_unknown_", "_silence_"]
    assert out["keywords"] == ["marvin", "lights on"]
    rows = (tmp_path / "m" / "test_ood_espeak_accent.csv").read_text()
    assert "house/" in rows and ",_unknown_," in rows
    with pytest.raises(DataError, match="task 'keywords' needs the list of keywords"):
        prepare(root, tmp_path / "m2", task="keywords")


def test_default_corpus_digest_is_unchanged_by_the_keyword_fields():
    # digests of corpora built before CorpusSpec had keywords and clip_seconds
    assert CorpusSpec.sized("default", seed=0).digest() == "6469362a29f5"
    assert CorpusSpec.sized("tiny", seed=0).digest() == "3b92bf22135b"


def test_real_dev_folder(tmp_path):
    from conftest import write_tone
    with pytest.raises(DataError, match="--real-dev folder does not exist"):
        real_dev_items(tmp_path / "none", ["marvin", "_unknown_"])
    write_tone(tmp_path / "rd" / "other" / "a.wav")
    with pytest.raises(DataError, match="no <keyword>/\\*.wav clip"):
        real_dev_items(tmp_path / "rd", ["marvin", "lights_on", "_unknown_"])
    write_tone(tmp_path / "rd" / "Lights On" / "b.wav")
    items = real_dev_items(tmp_path / "rd", ["marvin", "lights_on", "_unknown_"])
    assert [(w and w[0][0]) for *_, w in items] == ["lights_on", ()]


def test_keywords_command_refuses_bad_words_before_building(tmp_path, capsys):
    from kws_okd.cli import main
    assert main(["keywords", "marvin,marvin", "--out", str(tmp_path / "out")]) == 2
    assert "given twice" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_keyword_detection_tool_smooths_as_the_engine_does():
    import runpy
    from pathlib import Path
    tool = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "keyword_detection.py"))
    scores = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    _, out, kws, dur = tool["smoothed"]((np.arange(4), scores, ["a", "b"], 4.0), 2)
    # the mean of the last two windows (of what there is at the start)
    assert np.allclose(out, [[0.0, 1.0], [0.5, 1.0], [1.0, 0.5], [0.5, 0.0]])
    assert kws == ["a", "b"] and dur == 4.0


def test_keyword_detection_tool_needs_its_recordings():
    from conftest import tool_exit
    assert tool_exit("keyword_detection.py", ["m=model.pt"]) == 2   # --long-audio is required


@needs_espeak
def test_lexicon_is_frequent_words_with_phonemes_and_is_cached(tmp_path):
    from kws_okd.keywords.vocab import lexicon
    lex = lexicon(tmp_path, n=50)
    assert len(lex) == 50 and "the" in lex and all(len(w) > 2 for w in lex)
    assert lex["the"][0] == "ð"
    cached = list(tmp_path.glob("lexicon-*.tsv"))
    assert len(cached) == 1
    assert lexicon(tmp_path, n=50) == lex    # read back from the cache file


def test_a_real_dev_folder_without_keywords_is_refused_before_building(tmp_path, capsys):
    from conftest import write_tone

    from kws_okd.cli import main
    write_tone(tmp_path / "rd" / "bed" / "a.wav")
    assert main(["keywords", "marvin", "--out", str(tmp_path / "out"), "--real-dev", str(tmp_path / "rd")]) == 2
    assert "no <keyword>/*.wav clip" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_card_says_when_the_asterisk_figure_counts_your_words_as_false_alarms():
    from kws_okd.keywords.build import render_keywords_card
    measured = {"test_real_prompts": dict(what="real people's sentences (Asterisk prompts)", keywords=0,
                                          found=0, fa_per_hour=37.0)}
    facts = dict(keywords=["one"], classes=["one", "_unknown_", "_silence_"], method="okd_talk",
                 student="bcresnet2_20ms", seed=0, window_s=1.0, near_misses={"one": ["won't"]},
                 dropped={"won": "one"}, heldout_families={"flite": 0.9}, id_acc=0.95, people=None,
                 measured=measured, real_dev=None)
    card = render_keywords_card(facts)
    assert "your words said in them count as false alarms" in card and "| 37 false alarms/h |" in card
    assert "won (one)" in card and "flite (never trained on) | 90.0 %" in card
    facts["keywords"], facts["classes"] = ["yes"], ["yes", "_unknown_", "_silence_"]
    assert "count as false alarms" not in render_keywords_card(facts)


@needs_espeak
def test_keywords_command_end_to_end_on_a_tiny_corpus(tmp_path):
    """The whole command on two espeak families, a few steps and one minute of long
    audio: a model that knows the phrase, its window, thresholds, exports and a card."""
    from kws_okd.keywords.build import build_keywords
    from kws_okd.train.checkpoint import load_model
    out = tmp_path / "home"
    facts = build_keywords("lights on,marvin", out, size="tiny", families=["espeak", "espeak_accent"],
                           long_audio_minutes=1.0, progress=False,
                           extra_overrides=["steps=20", "data.train_domains=[espeak]",
                                            "data.ood_domains=[espeak_accent]", f"results_dir={tmp_path}/results",
                                            f"data.corpus_dir={tmp_path}/corpus",
                                            f"data.manifest_dir={tmp_path}/manifests"])
    assert facts["classes"] == ["lights_on", "marvin", "_unknown_", "_silence_"]
    assert set(facts["near_misses"]) == {"lights on", "marvin"} and "lights off" in facts["near_misses"]["lights on"]
    model, blob = load_model(out / "model.pt")
    assert blob["info"].get("window_s", 1.0) == facts["window_s"] >= 1.0
    assert set(blob["stream"]["thresholds"]) == {"lights_on", "marvin"}
    for f in ("model.onnx", "model.ts", "stream.json", "card.md", "keywords.json"):
        assert (out / f).is_file(), f
    card = (out / "card.md").read_text()
    assert card.startswith("# Keyword detector: lights on, marvin") and "espeak_accent (never trained on)" in card
    assert not (tmp_path / "home.partial").exists()


def test_a_models_window_travels_from_its_file_to_streaming_and_export(tmp_path):
    """A model trained on 1.3 s windows: load_model says so, the stream engine and the
    streaming export take it without being told, and an unknown object hears 1 s."""
    from types import SimpleNamespace

    from kws_okd.export.pipeline import export_streaming
    from kws_okd.models import build_model
    from kws_okd.stream.backends import OnnxStreamModel, window_of
    from kws_okd.train.checkpoint import load_model, save_model
    classes = ["marvin", "_unknown_", "_silence_"]
    save_model(tmp_path / "model.pt", build_model("bcresnet1", 3), {"name": "bcresnet1"}, classes, {"window_s": 1.3})
    model, _ = load_model(tmp_path / "model.pt")
    assert model.window_s == 1.3 and window_of(model) == 1.3
    assert window_of(SimpleNamespace(num_samples=8000)) == 0.5 and window_of(object()) == 1.0
    info = export_streaming(model, classes, tmp_path)
    assert info["available"] and window_of(OnnxStreamModel(tmp_path)) == pytest.approx(1.3)
