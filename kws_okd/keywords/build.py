"""``kws-okd keywords``: from a list of words to a deployable detector.

Stages (each finished one is reused when the command runs again with the same words):
check the words and find their negatives, choose the window, synthesise the corpus,
train the teacher head, distil the student (real-audio OKD by default), choose its
thresholds on the validation recordings, measure it, and write ``model.pt``, the exports
and a model card into ``--out`` (written beside it and renamed, so an interrupted run
leaves the old folder or none, never half of one).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from kws_okd.data.words import KEYWORDS_12, SILENCE, UNKNOWN, folder_name
from kws_okd.errors import DataError
from kws_okd.keywords.vocab import parse_keywords
from kws_okd.utils.atomic import write_json, write_text

# What the Asterisk prompts' table marks (kws_okd/evaluate/asterisk_prompts.tsv), with the fillers.
ANNOTATED = frozenset(KEYWORDS_12) | {UNKNOWN, SILENCE}
STAGES = ("check words", "choose window", "corpus, teacher, student, thresholds", "your recordings", "export")


def hydra_list(items) -> str:
    """A Hydra list override value of strings, each quoted (phrases have spaces)."""
    def q(s):
        return f'"{s}"' if "'" in s else f"'{s}'"
    return "[" + ",".join(q(s) for s in items) + "]"


def keyword_overrides(keywords, set_name: str, window_s: float, unknown_words=(), size: str = "default",
                      families=None) -> list[str]:
    out = ["data=keywords", f"data.keywords={hydra_list(keywords)}", f"data.set={set_name}",
           f"data.clip_seconds={window_s:g}", f"data.size={size}"]
    if unknown_words:
        out.append(f"data.unknown_words={hydra_list(unknown_words)}")
    if families:
        out.append(f"data.families=[{','.join(families)}]")
    return out


def real_dev_items(folder, classes) -> list:
    """The clips of a ``<word>/*.wav`` folder as recording items: a folder named for a
    keyword (``lights_on`` or ``lights on``) holds that keyword, any other folder speech
    that must not fire."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: --real-dev folder does not exist (expected <word>/*.wav)")
    items = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        word = folder_name(" ".join(sub.name.lower().split()))
        for wav in sorted(sub.glob("*.wav")):
            items.append(("real-dev", str(wav), ((word, 0.5),) if word in classes and word != UNKNOWN else ()))
    if not any(words for *_, words in items):
        raise DataError(f"{folder}: no <keyword>/*.wav clip for the keywords {[c for c in classes if not c.startswith('_')]}")
    return items


def measure_real_dev(model_path, folder, out_dir) -> dict:
    """Recall per keyword and false alarms on the user's own recordings, strung into one
    recording and run through the streaming detector at the model's stored thresholds."""
    from kws_okd.evaluate.long_audio import score_recording
    from kws_okd.evaluate.real_recording import compose_real_recording
    from kws_okd.stream.engine import StreamConfig, default_keywords
    from kws_okd.train.checkpoint import load_model, model_window_s
    model, blob = load_model(model_path)
    classes, stream = blob["classes"], blob.get("stream") or {}
    keywords = default_keywords(classes)
    wav = Path(out_dir) / "real_dev.wav"
    info = compose_real_recording(real_dev_items(folder, classes), keywords, wav, domain="real-dev")
    cfg = StreamConfig(window_s=model_window_s(blob))
    r = score_recording(model, classes, wav, cfg, thresholds=stream.get("thresholds"))
    pk = r.get("per_keyword") or {}
    return dict(folder=str(folder), clips=info["clips"], keyword_clips=info["n_keywords"],
                found=pk.get("hits"), fa_per_hour=pk.get("fa_per_hour"), minutes=info["minutes"],
                per_keyword=pk.get("by_keyword"))


def render_keywords_card(k: dict) -> str:
    """The card's first part: what the detector listens for and how well it does."""
    lines = [f"# Keyword detector: {', '.join(k['keywords'])}", "",
             f"Built by `kws-okd keywords` ({k['method']} student `{k['student']}`, seed {k['seed']}). "
             f"Window {k['window_s']:g} s.", "",
             "## What `_unknown_` holds", "",
             "| keyword | near misses (phoneme edit distance 1-2) |", "|---|---|"]
    lines += [f"| {kw} | {', '.join(m) or '–'} |" for kw, m in k["near_misses"].items()]
    if k.get("dropped"):
        lines += ["", "Left out of `_unknown_` because they sound like a keyword: "
                  + ", ".join(f"{w} ({kw})" for w, kw in k["dropped"].items()) + "."]
    lines += ["", "The other Speech Commands words, everyday words and names, real people talking "
              "(klettres) and `_silence_` (noise, music, near silence) are `_unknown_` too.", "",
              "## How well it does", "", "| measured on | figure |", "|---|---|"]
    for name, acc in k["heldout_families"].items():
        lines.append(f"| clip accuracy, held-out synthesiser family {name} (never trained on) | {100 * acc:.1f} % |")
    if k.get("id_acc") is not None:
        lines.append(f"| clip accuracy, training families' test speakers | {100 * k['id_acc']:.1f} % |")
    if k.get("people") is not None:
        p = k["people"]
        lines.append(f"| real people: Speech Commands speakers never trained or chosen on, {p['clips']} clips | "
                     f"{p['keyword_right']} of {p['keyword_clips']} keyword clips right; class-balanced accuracy "
                     f"{100 * p['balanced_acc']:.1f} % |")
    for rec, m in (k.get("measured") or {}).items():
        found = f"{m['found']} of {m['keywords']} found, " if m["keywords"] else ""
        what = m["what"]
        if rec == "test_real_prompts" and not set(k["classes"]) <= ANNOTATED:
            # The prompts' table marks the ten command words only (evaluate/asterisk_prompts.tsv).
            what += " (annotated for the ten command words only: your words said in them count as false alarms)"
        lines.append(f"| {what}, at the stored thresholds | {found}{m['fa_per_hour']:g} false alarms/h |")
    if k.get("real_dev"):
        r = k["real_dev"]
        lines.append(f"| your recordings (`{r['folder']}`, {r['clips']} clips), at the stored thresholds | "
                     f"{r['found']} of {r['keyword_clips']} keywords found, {r['fa_per_hour']:.1f} false alarms/h |")
    lines += ["", "Stream it: `kws-okd stream --model model.pt --mic` (or a WAV file).", ""]
    return "\n".join(lines)


def build_keywords(words, out, real_dev=None, unknown_words=(), size: str = "default", seed: int = 0,
                   method: str = "okd_talk", student: str = "bcresnet2_20ms", families=None,
                   long_audio_minutes: float = 8.0, extra_overrides=(), progress: bool = True,
                   card_page=None) -> dict:
    """Everything ``kws-okd keywords`` does; returns the card's facts. ``card_page``: also
    write the card's first part there (the docs' worked example)."""
    from tqdm import tqdm

    from kws_okd.keywords.corpus import choose_window, keyword_vocabulary, probe_keywords, set_name
    from kws_okd.train.config import load_recipe
    keywords = parse_keywords(words)
    out = Path(out)
    bar = tqdm(STAGES, desc="keywords", unit="stage", disable=not progress)
    stage = iter(bar)

    next(stage)
    name = set_name(keywords) + ("" if size == "default" else f"-{size}")
    base = keyword_overrides(keywords, name, 1.0, unknown_words, size, families) + list(extra_overrides)
    data_cfg = load_recipe("teacher", base).data
    if real_dev:   # a --real-dev folder without a keyword in it is refused before anything is built
        real_dev_items(real_dev, [folder_name(k) for k in keywords] + [UNKNOWN])
    vocab = keyword_vocabulary(data_cfg)   # and so are words that sound the same
    for kw, m in vocab.near_misses.items():
        bar.write(f"{kw}: near misses {', '.join(m) or '(none found)'}")

    next(stage)
    window = choose_window(probe_keywords(keywords, list(data_cfg.families)))
    bar.write(f"window: {window:g} s")
    overrides = keyword_overrides(keywords, name, window, unknown_words, size, families) + list(extra_overrides)

    next(stage)
    from kws_okd.pipeline import run_pipeline
    tcfg = load_recipe("teacher", overrides)
    report_dir = Path(tcfg.results_dir) / tcfg.data.name / "report"
    report = run_pipeline(overrides, methods=(method,), seeds=(seed,), student=student, shift_suite=None,
                          out=report_dir, long_audio_minutes=long_audio_minutes)
    run_name = f"{student}-{method}/seed{seed}"
    r = report["models"][run_name]
    model_pt = Path(r["path"])

    next(stage)
    real = measure_real_dev(model_pt, real_dev, report_dir) if real_dev else None

    next(stage)
    from kws_okd.export.pipeline import export_all
    from kws_okd.train.checkpoint import load_model
    manifests = Path(tcfg.data.manifest_dir)
    proto = json.loads((manifests / "protocol.json").read_text())
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(model_pt, tmp / "model.pt")
    tests = [manifests / "test_id.csv"] + [manifests / f"{s}.csv" for s in proto["sets"] if s.startswith("test_ood_")]
    export_all(tmp / "model.pt", tmp, calib=manifests / "train.csv", tests=tests)
    blob = load_model(tmp / "model.pt")[1]
    people = (r.get("sets") or {}).get("people_report") or {}
    facts = dict(keywords=keywords, classes=blob["classes"], method=method, student=student, seed=seed,
                 window_s=window, near_misses=vocab.near_misses, dropped=vocab.dropped,
                 heldout_families={s.removeprefix("test_ood_"): v["acc"] for s, v in (r.get("sets") or {}).items()
                                   if s.startswith("test_ood_")},
                 id_acc=((r.get("sets") or {}).get("test_id") or {}).get("acc"),
                 people=people_facts(people),
                 measured=(blob.get("stream") or {}).get("measured"), real_dev=real,
                 report=str(report_dir / "summary.md"))
    write_json(tmp / "keywords.json", facts)
    card = (tmp / "card.md").read_text().replace(str(tmp), str(out))
    write_text(tmp / "card.md", render_keywords_card(facts) + "\n" + card.replace("# Model card", "# Model details", 1))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    if card_page:
        write_text(Path(card_page), f"<!-- written by `kws-okd keywords ... --card-page {card_page}`; do not edit "
                                    f"by hand -->\nThe first part of `{out / 'card.md'}`.\n\n"
                   + render_keywords_card(facts).replace("# Keyword detector", "## Keyword detector", 1))
    for _ in stage:   # the bar ends at its last stage
        pass
    bar.close()
    return facts


def people_facts(scored: dict) -> dict | None:
    """Real people's clips of the report speakers, when some say a keyword: clips, keyword
    clips and keyword clips found, class-balanced accuracy."""
    pc = scored.get("per_class") or {}
    kw = {c: v for c, v in pc.items() if not c.startswith("_")}
    if not kw:
        return None
    return dict(clips=scored["n"], keyword_clips=sum(v["n"] for v in kw.values()),
                keyword_right=sum(v["right"] for v in kw.values()), balanced_acc=scored["balanced"])
