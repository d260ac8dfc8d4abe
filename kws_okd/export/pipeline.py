"""``kws-okd export``: every device artefact of one model.pt, checked, with a model card.

Writes into the output folder (each file atomically):
``model.ts`` (TorchScript), ``model.onnx`` (whole window, DFT front-end),
``model.int8.onnx`` (with ``--calib``), ``frames.onnx`` + ``classifier.onnx`` +
``stream.json`` (streaming export), ``card.md`` and ``card.json``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kws_okd.data.registry import load_dataset
from kws_okd.evaluate.report import accuracy_by_domain, predict
from kws_okd.export.frontend import DFTFrames, ExportNet, WindowClassifier, check_frontend
from kws_okd.export.latency import ort_window_ms, torch_window_ms
from kws_okd.export.onnx_io import (TOLERANCE, export_onnx, export_torchscript, max_diff_vs_torch,
                                    require_close, run_onnx, session)
from kws_okd.models import count_macs, count_params
from kws_okd.stream.backends import window_of
from kws_okd.stream.features import frame_spec
from kws_okd.train.checkpoint import load_model
from kws_okd.utils.atomic import write_json, write_text

SAMPLE_RATE = 16000
INT8_TOLERANCE = dict(min_top1_agreement=0.85, max_accuracy_drop=0.01)


def _probe_inputs(n=8, num_samples=SAMPLE_RATE, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, num_samples, generator=g) * torch.logspace(-2.5, -0.5, n)[:, None]


def export_streaming(model, classes, out: Path, num_samples: int | None = None) -> dict:
    """The streaming export (frames + window classifier) of ``model``, checked against it;
    ``num_samples`` per window, by default the model's own window."""
    num_samples = num_samples or int(round(SAMPLE_RATE * window_of(model, SAMPLE_RATE)))
    spec = frame_spec(model.frontend)
    if spec is None:
        return dict(available=False, why=f"{type(model.frontend).__name__} front-end has no frame-wise form")
    frames, clf = DFTFrames(spec).eval(), WindowClassifier(model).eval()
    n_frames = spec.n_frames(num_samples)
    export_onnx(frames, torch.randn(1, spec.n_fft + 3 * spec.hop) * 0.1, out / "frames.onnx", "samples",
                dynamic_last=True)
    export_onnx(clf, torch.randn(1, spec.n_features, n_frames), out / "classifier.onnx", "frames")
    meta = dict(frames="frames.onnx", classifier="classifier.onnx", classes=list(classes),
                sample_rate=SAMPLE_RATE, num_samples=num_samples, n_fft=spec.n_fft, hop=spec.hop,
                n_features=spec.n_features, n_frames=n_frames,
                how=("frames.onnx maps raw samples (no padding) to feature frames; keep a ring of "
                     "frames and, every hop, rebuild the window: its interior frames from the ring, "
                     f"the {-(-spec.n_fft // 2 // spec.hop)} frames at each end from the window's edge "
                     "samples reflect-padded by n_fft/2; classifier.onnx maps the window's frames "
                     "(batch, n_features, n_frames) to logits."))
    write_json(out / "stream.json", meta)
    # The check that matters: the streaming engine on the export against PyTorch.
    from kws_okd.stream.backends import OnnxStreamModel
    from kws_okd.stream.engine import StreamConfig, StreamEngine
    audio = _probe_inputs(3).reshape(-1).numpy()
    cfg = StreamConfig(hop_ms=20, smooth=1, keywords=list(classes), threshold=2.0, window_s=num_samples / SAMPLE_RATE)
    traces = []
    for m in (model, OnnxStreamModel(out)):
        eng = StreamEngine(m, classes, cfg, record=True)
        eng.feed(audio)
        traces.append(eng.trace()[1])
    diff = float(np.abs(traces[0] - traces[1]).max())
    require_close("streaming export (posteriors)", diff)
    return dict(available=True, posterior_max_abs_diff=diff, windows_checked=len(traces[0]))


def _accuracy(name, preds, ds):
    labels = ds.labels.numpy()
    return dict(acc=float((preds == labels).mean()), n=len(ds),
                by_domain=accuracy_by_domain(preds, labels, ds.domains))


def export_all(model_path, out_dir, calib=None, tests=(), calib_clips: int = 256,
               latency_runs: int = 200, int8_backbone: bool = False, int8_frame_planes: int = 1) -> dict:
    out = Path(out_dir)
    model, blob = load_model(model_path)
    classes = blob["classes"]
    n = int(round(SAMPLE_RATE * window_of(model, SAMPLE_RATE)))   # samples per window: 1 s unless a phrase needed more
    net = ExportNet(model).eval()
    probe = _probe_inputs(num_samples=n)
    card = dict(model=str(model_path), architecture=blob["model"], classes=classes,
                info={k: v for k, v in blob.get("info", {}).items() if isinstance(v, (int, float, str))},
                params=count_params(model), macs_per_inference=count_macs(model, num_samples=n), window_s=n / SAMPLE_RATE,
                macs_note=f"backbone convolutions and linear layers per {n / SAMPLE_RATE:g} s window; the front-end "
                          "(FFT in PyTorch, DFT-as-conv in the exports) is not counted",
                tolerance=dict(onnx_fp32=TOLERANCE, int8=INT8_TOLERANCE), files={}, checks={},
                detection=blob.get("stream"))
    card["checks"]["dft_frontend_vs_torchaudio_max_abs"] = check_frontend(model, num_samples=n)
    with torch.no_grad():
        card["checks"]["export_net_vs_model_logits_max_abs"] = float((net(probe) - model(probe)).abs().max())

    ts_diff = export_torchscript(model, probe[:1], out / "model.ts")
    require_close("TorchScript", ts_diff)
    card["checks"]["torchscript_max_abs"] = ts_diff

    export_onnx(net, probe[:1], out / "model.onnx", "wav")
    fp32 = session(out / "model.onnx")
    diff = max_diff_vs_torch(model, fp32, probe)
    require_close(f"{out / 'model.onnx'}", diff)
    card["checks"]["onnx_vs_torch_max_abs"] = diff
    card["streaming"] = export_streaming(model, classes, out, num_samples=n)

    int8 = None
    if calib:
        card["int8"] = export_int8(model, out, calib, calib_clips, int8_backbone, probe, int8_frame_planes, n)
        card["checks"].update(card["int8"].pop("checks"))
        int8 = session(out / "model.int8.onnx")

    card["accuracy"] = {}
    for test in tests:
        ds = load_dataset(test)
        torch_pred = predict(model, ds)
        onnx_logits = run_onnx(fp32, ds.waves.numpy())
        entry = dict(pytorch=_accuracy("pytorch", torch_pred, ds),
                     onnx_fp32=_accuracy("onnx", onnx_logits.argmax(-1), ds))
        if int8 is not None:
            q_logits = run_onnx(int8, ds.waves.numpy())
            entry["onnx_int8"] = _accuracy("int8", q_logits.argmax(-1), ds)
            entry["int8_top1_agreement"] = float((q_logits.argmax(-1) == onnx_logits.argmax(-1)).mean())
            entry["int8_max_abs_logit_diff"] = float(np.abs(q_logits - onnx_logits).max())
            entry["int8_acc_change"] = entry["onnx_int8"]["acc"] - entry["pytorch"]["acc"]
            entry["int8_within_tolerance"] = entry["int8_top1_agreement"] >= INT8_TOLERANCE["min_top1_agreement"]
            entry["int8_acc_change_vs_fp32"] = entry["onnx_int8"]["acc"] - entry["onnx_fp32"]["acc"]
            entry["int8_within_accuracy_target"] = \
                entry["int8_acc_change_vs_fp32"] >= -INT8_TOLERANCE["max_accuracy_drop"]
        card["accuracy"][Path(test).stem] = entry

    card["latency_ms"] = dict(
        note=f"median per {n / SAMPLE_RATE:g} s window, single thread (torch.set_num_threads(1), ORT intra_op_num_threads=1), "
             "on a shared machine",
        pytorch=torch_window_ms(model, num_samples=n, runs=latency_runs),
        onnx_fp32=ort_window_ms(fp32, num_samples=n, runs=latency_runs))
    if int8 is not None:
        card["int8_vs_fp32"] = compare_int8(fp32, int8, card, latency_runs, n)
        # batch 1, measured interleaved with float (what the comparison reports)
        card["latency_ms"]["onnx_fp32"] = card["int8_vs_fp32"]["latency_ms_per_clip"]["batch_1"]["onnx_fp32"]
        card["latency_ms"]["onnx_int8"] = card["int8_vs_fp32"]["latency_ms_per_clip"]["batch_1"]["onnx_int8"]
    for f in sorted(out.iterdir()):
        if f.suffix in (".ts", ".onnx", ".json") and not f.name.startswith("card"):
            card["files"][f.name] = f.stat().st_size
    if int8 is not None:
        card["int8_vs_fp32"]["size_bytes"] = dict(onnx_fp32=card["files"]["model.onnx"],
                                                  onnx_int8=card["files"]["model.int8.onnx"])
    write_json(out / "card.json", card)
    write_text(out / "card.md", render_card(card))
    return card


INT8_FRONTEND_SCHEME = ("int8 DFT front-end: each frame pre-emphasised and divided by its peak sample, int8 "
                        "(scale 1/127) times the int8 de-emphasising DFT basis (one scale per column) in an "
                        "integer matrix product, spectrum rescaled by the peak; mel filters, log and "
                        "normalisation float")
TWO_PLANES = ("; each frame as two int8 planes (the second the first's rounding remainder, 127 times "
              "finer), stacked into one integer product of twice the rows")
INT8_BACKBONE_SCHEME = ("backbone convolutions static QDQ int8 (weights per channel, uint8 activations per "
                        "tensor, 99.99th-percentile ranges)")


def export_int8(model, out: Path, calib, calib_clips: int, int8_backbone: bool, probe, planes: int = 1,
                num_samples: int = SAMPLE_RATE) -> dict:
    """Write ``model.int8.onnx``: the int8 DFT front-end (models with a log-mel/MFCC front-end),
    plus int8 backbone convolutions with ``int8_backbone`` or when there is no DFT front-end.
    ``planes=2`` cuts each frame into two int8 planes (Int8Frames): closer to float, and
    slower than one plane."""
    from kws_okd.export.quantize import Int8Net, export_int8_frontend, quantize_backbone
    path = out / "model.int8.onnx"
    spec = frame_spec(model.frontend)
    info = dict(checks={})
    front = INT8_FRONTEND_SCHEME + (TWO_PLANES if planes == 2 else "")
    if spec is not None:
        info.update(export_int8_frontend(model, spec, path, num_samples=num_samples, planes=planes))
        with torch.no_grad():
            sim = Int8Net(model, spec, planes=planes).eval()(probe).numpy()
        diff = float(np.abs(run_onnx(session(path), probe.numpy()) - sim).max())
        require_close("int8 front-end export against its PyTorch simulation", diff, 1e-3)
        info["checks"]["int8_frontend_vs_pytorch_simulation_max_abs"] = diff
        info["scheme"] = front + "; backbone float"
    if int8_backbone or spec is None:
        ds = load_dataset(calib)
        idx = np.sort(np.random.default_rng(0).permutation(len(ds))[:calib_clips])
        info.update(quantize_backbone(out / ("model.int8.onnx" if spec is not None else "model.onnx"), path,
                                      ds.waves[idx].numpy()), calibration_manifest=str(calib))
        info["scheme"] = (front + "; " if spec is not None else "front-end float (no DFT form); ") + \
            INT8_BACKBONE_SCHEME
    info["int8_frontend"], info["int8_backbone"] = spec is not None, bool(int8_backbone or spec is None)
    return info


def compare_int8(fp32, int8, card, latency_runs: int, num_samples: int = SAMPLE_RATE) -> dict:
    """Float against int8: accuracy per test set, interleaved latency at batch 1 and 32,
    and which is faster (file sizes are added once the files are listed)."""
    from kws_okd.export.compare import latency_by_batch, speed_summary
    rounds = 5 if latency_runs >= 20 else 1
    lat = latency_by_batch(dict(onnx_fp32=fp32, onnx_int8=int8), (1, 32), runs=latency_runs,
                           rounds=rounds, num_samples=num_samples)
    acc = {s: dict(onnx_fp32=e["onnx_fp32"]["acc"], onnx_int8=e["onnx_int8"]["acc"],
                   change=e["int8_acc_change_vs_fp32"], within_target=e["int8_within_accuracy_target"])
           for s, e in card["accuracy"].items() if "onnx_int8" in e}
    return dict(accuracy=acc, latency_ms_per_clip=lat, **speed_summary(lat),
                latency_note=f"median ms per clip, single thread, float and int8 timed in turns "
                             f"({rounds} round{'s' * (rounds > 1)}) so load from other jobs hits both")


def render_card(c) -> str:
    arch = dict(c["architecture"])
    lines = [f"# Model card: {arch.get('name')}", "",
             f"Source: `{c['model']}`. {len(c['classes'])} classes: {', '.join(c['classes'])}.", "",
             "| | |", "|---|---|",
             f"| parameters | {c['params']:,} |",
             f"| MACs per {c.get('window_s', 1.0):g} s inference | {c['macs_per_inference'] / 1e6:.2f} M ({c['macs_note']}) |"]
    for k, v in c.get("info", {}).items():
        lines.append(f"| {k} | {v} |")
    lines += ["", "## Files", "", "| file | size |", "|---|---|"]
    lines += [f"| `{f}` | {s / 1024:.1f} KiB |" for f, s in c["files"].items()]
    lines += ["", "## Numerical checks (max abs difference)", ""]
    lines += [f"- {k}: {v:.3g}" for k, v in c["checks"].items()]
    st = c["streaming"]
    lines.append("- streaming export: " + (f"posteriors within {st['posterior_max_abs_diff']:.3g} of PyTorch "
                                            f"over {st['windows_checked']} windows" if st["available"] else st["why"]))
    if "int8" in c:
        q = c["int8"]
        calib = (f"; backbone calibrated on {q['calibration_clips']} clips of `{q['calibration_manifest']}`"
                 if "calibration_clips" in q else "; no calibration needed (every scale is fixed in advance)")
        lines += ["", "## int8", "", f"{q['scheme']}{calib}."]
    if c["accuracy"]:
        lines += ["", "## Accuracy (%)", "", "| test set | runtime | accuracy | per domain |", "|---|---|---|---|"]
        for s, e in c["accuracy"].items():
            for rt in ("pytorch", "onnx_fp32", "onnx_int8"):
                if rt in e:
                    dom = ", ".join(f"{d} {100 * a:.1f}" for d, a in e[rt]["by_domain"].items())
                    lines.append(f"| {s} | {rt} | {100 * e[rt]['acc']:.1f} | {dom} |")
            if "int8_acc_change" in e:
                lines.append(f"| {s} | int8 − PyTorch | {100 * e['int8_acc_change']:+.1f} | top-1 agreement with "
                             f"fp32 {100 * e['int8_top1_agreement']:.1f} % |")
    lat = c["latency_ms"]
    lines += ["", "## Latency", "", lat["note"] + ":", ""]
    lines += [f"- {k}: {v:.2f} ms" for k, v in lat.items() if k != "note"]
    if "int8_vs_fp32" in c:
        lines += render_int8_vs_fp32(c["int8_vs_fp32"])
    det = c.get("detection")
    if det and det.get("thresholds"):
        lines += ["", "## Detection thresholds", "",
                  f"Per keyword, on the smoothed posterior (hop {det.get('hop_ms', '?')} ms, smoothing "
                  f"{det.get('smooth', '?')} windows, refractory {det.get('refractory_s', '?')} s); chosen for "
                  f"{det.get('target_fa_per_hour', '?')} false alarms per hour on {det.get('chosen_on', '?')}. "
                  "`kws-okd stream` uses them unless thresholds are given.", "",
                  "| keyword | threshold |", "|---|---|"]
        lines += [f"| {k} | {v:.7g} |" for k, v in det["thresholds"].items()]
        if det.get("measured"):
            lines += ["", "At these thresholds (measured by `make run` when it chose them):", "",
                      "| recording | keywords found | false alarms per hour |", "|---|---|---|"]
            lines += [f"| {m['what']} | " + (f"{m['found']} of {m['keywords']}" if m["keywords"] else "–")
                      + f" | {m['fa_per_hour']:g} |" for m in det["measured"].values()]
    lines.append("")
    return "\n".join(lines)


def render_int8_vs_fp32(v) -> list[str]:
    lat, size = v["latency_ms_per_clip"], v.get("size_bytes", {})
    rows = ["", "## int8 against float (ONNX Runtime)", "",
            "| | float | int8 | int8 / float |", "|---|---|---|---|"]
    for s, a in v["accuracy"].items():
        rows.append(f"| accuracy on {s} (%) | {100 * a['onnx_fp32']:.1f} | {100 * a['onnx_int8']:.1f} | "
                    f"{100 * a['change']:+.1f} points |")
    for b, t in lat.items():
        rows.append(f"| latency per clip, {b.replace('_', ' ')} (ms) | {t['onnx_fp32']:.3f} | {t['onnx_int8']:.3f} | "
                    f"{t['onnx_int8'] / t['onnx_fp32']:.2f}x |")
    if size:
        rows.append(f"| file size (KiB) | {size['onnx_fp32'] / 1024:.0f} | {size['onnx_int8'] / 1024:.0f} | "
                    f"{size['onnx_int8'] / size['onnx_fp32']:.2f}x |")
    faster = {"int8": "int8 is faster than float at every batch size measured",
              "fp32": "float is faster than int8 at every batch size measured",
              "mixed": "neither is faster at every batch size"}[v["faster"]]
    rows += ["", f"Faster: **{v['faster']}** ({faster}); {v['latency_note']}."]
    return rows
