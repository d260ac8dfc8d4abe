"""Compare training variants over seeds on validation data only, as the rules in
docs/decisions.md decide between them.

    python tools/compare_variants.py --seeds 0,1,2 --out results/compare_wider \\
        base=results/synth_default_task12/bcresnet2-okd+real+context0.5/seed{seed}/model.pt \\
        wider=results_wide/synth_default_task12/bcresnet3-okd+real+context0.5/seed{seed}/model.pt \\
        --valid-snr 5 --overrides data.name=...   # overrides last: they take every word after them

Every model is scored as it ships: at the hop, smoothing and per-keyword thresholds its
``model.pt`` stores (``make run`` chooses them). Recordings are the validation ones of the
corpus (built once, as ``make run`` builds them; ``--overrides`` picks the corpus, as for
``make run``); no test recording is read:

- ``valid acc``: the training-domain validation accuracy of the selected checkpoint
  (``train_summary.json`` beside the model);
- ``valid`` / ``valid_sentences``: FRR and false alarms per hour at the stored thresholds,
  and both pooled (``valid+sentences FRR``), the recordings the thresholds were chosen on;
- ``people talking``: false alarms per hour on ``valid_real`` (needs hedgewars-data);
- ``keyword lines``: of the lines where people say a command word, those whose own word
  scores highest of the ten, no thresholds (``top_keyword``), and the hits at the stored
  thresholds;
- with ``--valid-snr N``: ``valid_snrN``, the ``valid`` recording's pool, composer and seed
  with the corpus's noise files at N dB, written into ``--out``: FRR at 1 FA/h (one
  threshold swept, as the report's DET figure) and FRR at the stored thresholds.

Per variant: mean ± population std over the seeds, per seed in brackets; against the first
variant, each figure's difference and whether the two mean ± std intervals do not overlap
("beyond the spread", kws_okd/evaluate/compare.py). Writes ``results.json`` and
``results.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kws_okd.evaluate.compare import difference, mean_std  # noqa: E402
from kws_okd.utils.atomic import write_json, write_text  # noqa: E402

# (key, heading, scale for display, better): better is "lower", "higher" or None.
FIGURES = (("valid_acc", "valid acc. %", 1.0, "higher"),
           ("valid_frr", "valid: stored FRR %", 100.0, "lower"),
           ("valid_fa_h", "valid: FA/h", 1.0, "lower"),
           ("sentences_frr", "valid_sentences: stored FRR %", 100.0, "lower"),
           ("sentences_fa_h", "valid_sentences: FA/h", 1.0, "lower"),
           ("pooled_frr", "valid+sentences: stored FRR %", 100.0, "lower"),
           ("talk_fa_h", "people talking: FA/h", 1.0, "lower"),
           ("kwlines_top", "keyword lines: top (no thresholds)", 1.0, "higher"),
           ("kwlines_hits", "keyword lines: hits at stored thr.", 1.0, "higher"),
           ("snr_frr_at1", "valid_snr: FRR @1 FA/h %", 100.0, "lower"),
           ("snr_frr", "valid_snr: stored FRR %", 100.0, "lower"),
           ("train_seconds", "train s", 1.0, None))


def score_traces(traces: dict, labels: dict, stream: dict, snr_name: str | None = None) -> dict:
    """The validation figures of one model from its ``traces`` (recording name -> trace of
    :func:`kws_okd.evaluate.long_audio.trace`), the recordings' ``labels`` and the model's
    stored ``stream`` settings (``blob["stream"]``). Recordings absent from ``traces`` give
    no figure."""
    from kws_okd.evaluate.long_audio import frr_at, score_at_thresholds, score_trace, top_keyword
    from kws_okd.stream.engine import StreamConfig
    thr = stream["thresholds"]
    cfg = StreamConfig(hop_ms=float(stream["hop_ms"]), smooth=int(stream["smooth"]),
                       refractory_s=float(stream.get("refractory_s", 1.0)))

    def at(name):
        return score_at_thresholds(traces[name], labels[name], cfg, thr)

    out: dict[str, float] = {}
    pooled = []
    for name, key in (("valid", "valid"), ("valid_sentences", "sentences")):
        if name in traces:
            a = at(name)
            out[f"{key}_frr"], out[f"{key}_fa_h"] = a["frr"], a["fa_per_hour"]
            pooled.append(a)
    if pooled and sum(a["n_events"] for a in pooled):
        out["pooled_frr"] = 1 - sum(a["hits"] for a in pooled) / sum(a["n_events"] for a in pooled)
    if "valid_real" in traces:
        out["talk_fa_h"] = at("valid_real")["fa_per_hour"]
    if "valid_real_keywords" in traces:
        t, s, kw, _ = traces["valid_real_keywords"]
        out["kwlines_top"] = top_keyword(t, s, labels["valid_real_keywords"], kw)["top"]
        out["kwlines_hits"] = at("valid_real_keywords")["hits"]
    if snr_name and snr_name in traces:
        out["snr_frr_at1"] = frr_at(score_trace(traces[snr_name], labels[snr_name], cfg), 1.0, unreached=1.0)
        out["snr_frr"] = at(snr_name)["frr"]
    return out


def summarize(per_seed: dict[str, dict[int, dict]]) -> dict:
    """``{variant: {seed: figures}}`` -> per variant and figure: mean, std, per-seed values,
    and, for every variant but the first, the difference from the first (``difference``:
    delta, spread, ``beyond_spread``). A figure some seed lacks is left out for that variant."""
    names = list(per_seed)
    ref = names[0]
    out = {}
    for name in names:
        rows = per_seed[name]
        figs = {}
        for key, *_ in FIGURES:
            vals = [rows[s].get(key) for s in sorted(rows)]
            if not vals or any(v is None for v in vals):
                continue
            m, sd = mean_std(vals)
            ref_vals = [per_seed[ref][s].get(key) for s in sorted(per_seed[ref])]
            vs = None
            if name != ref and ref_vals and all(v is not None for v in ref_vals):
                vs = difference(vals, ref_vals)
            figs[key] = dict(mean=m, std=sd, values=vals, vs_first=vs)
        out[name] = dict(seeds=sorted(rows), figures=figs)
    return dict(reference=ref, variants=out)


def verdict(d: dict | None, better: str | None) -> str:
    """``"lower, beyond"`` / ``"higher, beyond"`` / ``"within"`` (and whether that is the
    better side) for a :func:`kws_okd.evaluate.compare.difference`."""
    if d is None or d["beyond_spread"] is None:
        return "–"
    if not d["beyond_spread"]:
        return "within"
    side = "higher" if d["delta"] > 0 else "lower"
    good = "" if better is None else (" (better)" if side == better else " (worse)")
    return f"{side}, beyond{good}"


def render(summary: dict) -> str:
    ref = summary["reference"]
    variants = summary["variants"]
    shown = [f for f in FIGURES if any(f[0] in v["figures"] for v in variants.values())]
    lines = ["Validation figures at each model's stored settings; mean ± population std over seeds "
             "(per seed in brackets). Against the first variant: *beyond* when the two mean ± std "
             "intervals do not overlap.", "",
             "| figure | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for key, head, scale, better in shown:
        cells = []
        for name, v in variants.items():
            f = v["figures"].get(key)
            if f is None:
                cells.append("–")
                continue
            per = " / ".join(f"{scale * x:.4g}" for x in f["values"])
            cell = f"{scale * f['mean']:.1f} ± {scale * f['std']:.1f} ({per})"
            if name != ref:
                cell += f": {verdict(f['vs_first'], better)}"
            cells.append(cell)
        lines.append(f"| {head} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_variants(specs, seeds) -> dict[str, dict[int, Path]]:
    """``["name=path/seed{seed}/model.pt", ...]`` -> ``{name: {seed: path}}``; a clear
    error for a spec without a name or a ``{seed}``, or a model file that is not there."""
    out = {}
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        if not sep or not name or "{seed}" not in pattern:
            raise ValueError(f"variant {spec!r}: give name=path with {{seed}} in the path")
        if name in out:
            raise ValueError(f"variant name {name!r} given twice")
        paths = {s: Path(pattern.format(seed=s)) for s in seeds}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise ValueError(f"variant {name!r}: no model file {missing[0]}")
        out[name] = paths
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+", help="name=path/with/seed{seed}/model.pt (the first is the baseline)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--overrides", nargs="*", default=[],
                    help="data overrides picking the corpus, as for make run (after the variants)")
    ap.add_argument("--valid-snr", type=float, help="also score a copy of the valid recording at this SNR (dB)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for the traces")
    a = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
        variants = parse_variants(a.variants, seeds)
    except ValueError as e:
        ap.error(str(e))
    from kws_okd.data.registry import corpus_noise_dir, prepare_data
    from kws_okd.evaluate.long_audio import build_noisy_valid, trace_files
    from kws_okd.pipeline import heldout_real_windows, long_audio_recordings, real_dev_set
    from kws_okd.stream.engine import StreamConfig
    from kws_okd.stream.fast import FastPathUnavailable, load_fast_model
    from kws_okd.stream.longaudio import read_labels
    from kws_okd.train.checkpoint import load_model
    from kws_okd.train.config import load_recipe

    cfg = load_recipe("teacher", a.overrides)
    manifests = prepare_data(cfg.data, progress=False)
    held, _ = heldout_real_windows()
    recs = long_audio_recordings(manifests, corpus_noise_dir(cfg.data), held, real_dev_set(manifests))
    recs = {k: v for k, v in recs.items() if k.startswith("valid")}   # validation only
    snr_name = None
    if a.valid_snr is not None:
        snr_name = f"valid_snr{a.valid_snr:g}"
        recs[snr_name] = build_noisy_valid(Path(manifests) / "long_audio", corpus_noise_dir(cfg.data),
                                           a.out / "recordings", a.valid_snr)
    labels = {k: read_labels(Path(w).with_suffix(".csv")) for k, w in recs.items()}

    stored = {}
    for name, paths in variants.items():
        for s, p in paths.items():
            blob_stream = load_model(p)[1].get("stream") or {}
            if not blob_stream.get("thresholds"):
                ap.error(f"{p}: stores no detection thresholds (make run's evaluation writes them)")
            stored[(name, s)] = blob_stream
            try:
                load_fast_model(p, a.out / "fast_models")   # built once here, not in every worker
            except FastPathUnavailable:
                pass   # traced in PyTorch instead (trace_files falls back by itself)
    by_config: dict = {}
    for (name, s), st in stored.items():   # models at different hops are traced apart
        key = (float(st["hop_ms"]), int(st["smooth"]))
        by_config.setdefault(key, []).append(variants[name][s])
    traces = {}
    for (hop, smooth), paths in by_config.items():
        traces.update(trace_files([(p, w) for p in paths for w in recs.values()],
                                  StreamConfig(hop_ms=hop, smooth=smooth), a.out / "fast_models", jobs=a.jobs))
    per_seed: dict[str, dict[int, dict]] = {}
    for name, paths in variants.items():
        per_seed[name] = {}
        for s, p in paths.items():
            t = {k: traces[(str(p), str(w))] for k, w in recs.items()}
            fig = score_traces(t, labels, stored[(name, s)], snr_name)
            summary_file = p.parent / "train_summary.json"
            if summary_file.is_file():
                info = json.loads(summary_file.read_text())
                if info.get("valid_acc") is not None:
                    fig["valid_acc"] = 100 * info["valid_acc"]
                if info.get("train_seconds") is not None:
                    fig["train_seconds"] = info["train_seconds"]
            per_seed[name][s] = fig
            print(name, s, json.dumps(fig), flush=True)
    summary = summarize(per_seed)
    summary["recordings"] = {k: str(v) for k, v in recs.items()}
    write_json(a.out / "results.json", summary)
    text = render(summary)
    write_text(a.out / "results.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
