"""Score trained students as detectors on the default corpus's recordings, side by side.

    python tools/eval_detection.py --out results/detection erm=path/to/model.pt ctx=other/model.pt

For each model: clip accuracy on the ID / OOD test sets and the real-speech dev set;
per-keyword thresholds chosen for 1 FA/h on the validation recordings, isolated words and
sentences of the training families' validation voices, as ``make run`` chooses them
(none below its ``THRESHOLD_FLOOR``; ``--thresholds-on isolated``: the isolated-word one only; not written into the model
file, unlike ``make run``); then, on the clean isolated-word test recording and
on the keywords-inside-sentences recording and on real people's sentences (Asterisk's
prompts, when installed), the FRR and false alarms per hour at those
thresholds, FRR at 1 FA/h (global threshold swept), and what the false alarms fired on;
the same on the 5 dB isolated-word recording; and, when hedgewars-data is installed, the
false alarms per hour on people talking (a game's voice lines) and the hits on the lines
where its people say a command word.
Writes ``results.json`` and ``results.md`` into ``--out``. Recordings are built once per
corpus, as ``make run`` builds them (kws_okd/pipeline.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kws_okd.utils.atomic import write_json, write_text  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="name=path/to/model.pt")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--overrides", nargs="*", default=[], help="data overrides, as for make run")
    ap.add_argument("--teacher", type=Path, help="the teacher's model.pt: adds top-1 agreement with it "
                    "on the held-out real recordings (the report's agree column)")
    ap.add_argument("--thresholds-on", choices=["all", "isolated"], default="all",
                    help="validation recordings the thresholds are chosen on")
    a = ap.parse_args(argv)
    bad = [m for m in a.models if "=" not in m]
    if bad:
        ap.error(f"models must be name=path, got {bad}")
    paths = dict(m.split("=", 1) for m in a.models)
    missing = [p for p in paths.values() if not Path(p).exists()]
    if missing:
        ap.error(f"no such model file: {missing}")

    from kws_okd.evaluate.long_audio import calibrate, frr_at, score_at_thresholds, score_recording, trace
    from kws_okd.evaluate.report import evaluate
    from kws_okd.pipeline import (TEST_RECORDINGS, THRESHOLD_FLOOR, corpus_noise_dir, heldout_real_windows,
                                  long_audio_recordings, prepare_data, real_dev_set, teacher_agreement,
                                  validation_recordings)
    from kws_okd.stream.engine import StreamConfig
    from kws_okd.stream.longaudio import read_labels
    from kws_okd.stream.fast import FastPathUnavailable, load_fast_model
    from kws_okd.train.checkpoint import load_model
    from kws_okd.train.config import load_recipe

    cfg = load_recipe("teacher", a.overrides)
    manifests = prepare_data(cfg.data, progress=False)
    held, _ = heldout_real_windows()
    real = real_dev_set(manifests)
    recs = long_audio_recordings(manifests, corpus_noise_dir(cfg.data), held, real)
    clips = evaluate(paths, manifests, a.out / "clips", plots=False, extra_sets=real)
    agree = {}
    if a.teacher is not None and held is not None:
        agree = teacher_agreement({**paths, "_teacher": str(a.teacher)}, "_teacher", held)
    scfg = StreamConfig()
    results = {}
    for name, path in paths.items():
        row = clips["models"][name]
        model, blob = load_model(path)
        try:
            model = load_fast_model(path, a.out / "fast_models")
        except FastPathUnavailable:
            pass
        valid = [recs["valid"]] if a.thresholds_on == "isolated" else validation_recordings(recs)
        thr = calibrate(model, blob["classes"], valid, scfg, 1.0, THRESHOLD_FLOOR)
        r = dict(id_acc=row["id_acc"], ood_acc=row["ood_acc"], real_acc=row.get("real_acc"),
                 real_sets={k: v["acc"] for k, v in row["sets"].items() if k.startswith("real")},
                 thresholds=thr, **({"agree": agree[name]["agree"]} if name in agree else {}))
        if "valid_real" in recs:   # people talking: false alarms only, no sweep
            wav = recs["valid_real"]
            r["talk_fa"] = score_at_thresholds(trace(model, blob["classes"], wav, scfg),
                                               read_labels(Path(wav).with_suffix(".csv")), scfg, thr)["fa_per_hour"]
            s = score_recording(model, blob["classes"], recs["valid_real_keywords"], scfg, thr)
            pk = s["per_keyword"]
            r["kwline"] = dict(hits=pk["hits"], n_events=pk["n_events"], fa_per_hour=pk["fa_per_hour"],
                               top=s["top_keyword"]["top"])
        for rec in (k for k in recs if k.startswith("test")):
            s = score_recording(model, blob["classes"], recs[rec], scfg, thr)
            pk = s["per_keyword"]
            r[rec] = dict(frr=pk["frr"], fa_per_hour=pk["fa_per_hour"], n_events=pk["n_events"], hits=pk["hits"],
                          frr_at_1fa=frr_at(s, 1.0, unreached=1.0),
                          false_alarms_by=pk["false_alarms_by"], misses_by=pk["misses_by"])
        results[name] = r
        print(name, json.dumps({k: v for k, v in r.items() if k != "thresholds"}), flush=True)
    write_json(a.out / "results.json", results)
    shown = [k for k in TEST_RECORDINGS if k in recs]
    ag = " agree |" if agree else ""
    talk = "valid_real" in recs
    lines = [f"| model | ID | OOD | real |{ag} " + " | ".join(f"{k[5:]}: FRR / FA/h (stored) | {k[5:]} FRR @1 FA/h"
                                                     for k in shown) + " |"
             + (" people talking: FA/h | people saying command words: hits / FA/h | command words, no"
                " thresholds: keyword highest |") * talk,
             "|---|---|---|---|" + "---|" * bool(agree) + "---|---|" * len(shown) + "---|---|---|" * talk]

    def pct(x):
        return "–" if x is None else f"{100 * x:.1f}"
    for name, r in results.items():
        cells = []
        for rec in shown:
            d = r.get(rec)
            cells += (["–", "–"] if d is None else
                      [f"{pct(d['frr'])} % / {d['fa_per_hour']:.0f}", f"{pct(d['frr_at_1fa'])} %"])
        lines.append(f"| {name} | {pct(r['id_acc'])} | {pct(r['ood_acc'])} | {pct(r['real_acc'])} | "
                     + (f"{pct(r.get('agree'))} | " if agree else "")
                     + " | ".join(cells) + " |"
                     + (f" {r['talk_fa']:.0f} | {r['kwline']['hits']} of {r['kwline']['n_events']} / "
                        f"{r['kwline']['fa_per_hour']:.0f} | {r['kwline']['top']} of {r['kwline']['n_events']} |"
                        if talk else ""))
    write_text(a.out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
