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

from kws_okd.data.dataset import ManifestDataset
from kws_okd.evaluate.report import accuracy_by_domain, predict
from kws_okd.export.frontend import DFTFrames, ExportNet, WindowClassifier, check_frontend
from kws_okd.export.latency import ort_window_ms, torch_window_ms
from kws_okd.export.onnx_io import (TOLERANCE, export_onnx, export_torchscript, max_diff_vs_torch,
                                    require_close, run_onnx, session)
from kws_okd.models import count_macs, count_params
from kws_okd.stream.features import frame_spec
from kws_okd.train.checkpoint import load_model
from kws_okd.utils.atomic import write_json, write_text

SAMPLE_RATE = 16000
INT8_TOLERANCE = dict(min_top1_agreement=0.85)


def _probe_inputs(n=8, num_samples=SAMPLE_RATE, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, num_samples, generator=g) * torch.logspace(-2.5, -0.5, n)[:, None]


def export_streaming(model, classes, out: Path, num_samples: int = SAMPLE_RATE) -> dict:
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
    cfg = StreamConfig(hop_ms=20, smooth=1, keywords=list(classes), threshold=2.0)
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
               latency_runs: int = 200) -> dict:
    out = Path(out_dir)
    model, blob = load_model(model_path)
    classes = blob["classes"]
    net = ExportNet(model).eval()
    probe = _probe_inputs()
    card = dict(model=str(model_path), architecture=blob["model"], classes=classes,
                info={k: v for k, v in blob.get("info", {}).items() if isinstance(v, (int, float, str))},
                params=count_params(model), macs_per_inference=count_macs(model),
                macs_note="backbone convolutions and linear layers per 1 s window; the front-end "
                          "(FFT in PyTorch, DFT-as-conv in the exports) is not counted",
                tolerance=dict(onnx_fp32=TOLERANCE, int8=INT8_TOLERANCE), files={}, checks={})
    card["checks"]["dft_frontend_vs_torchaudio_max_abs"] = check_frontend(model)
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
    card["streaming"] = export_streaming(model, classes, out)

    int8 = None
    if calib:
        from kws_okd.export.quantize import quantize_int8
        ds = ManifestDataset(calib)
        idx = np.sort(np.random.default_rng(0).permutation(len(ds))[:calib_clips])
        card["int8"] = dict(quantize_int8(out / "model.onnx", out / "model.int8.onnx", ds.waves[idx].numpy()),
                            calibration_manifest=str(calib),
                            scheme="static, QDQ, int8 weights per channel, uint8 activations per tensor "
                                   "(99.99th-percentile calibration); "
                                   "front-end kept float")
        int8 = session(out / "model.int8.onnx")

    card["accuracy"] = {}
    for test in tests:
        ds = ManifestDataset(test)
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
        card["accuracy"][Path(test).stem] = entry

    card["latency_ms"] = dict(
        note="median per 1 s window, single thread (torch.set_num_threads(1), ORT intra_op_num_threads=1), "
             "on a shared machine",
        pytorch=torch_window_ms(model, runs=latency_runs),
        onnx_fp32=ort_window_ms(fp32, runs=latency_runs))
    if int8 is not None:
        card["latency_ms"]["onnx_int8"] = ort_window_ms(int8, runs=latency_runs)
    for f in sorted(out.iterdir()):
        if f.suffix in (".ts", ".onnx", ".json") and not f.name.startswith("card"):
            card["files"][f.name] = f.stat().st_size
    write_json(out / "card.json", card)
    write_text(out / "card.md", render_card(card))
    return card


def render_card(c) -> str:
    arch = dict(c["architecture"])
    lines = [f"# Model card: {arch.get('name')}", "",
             f"Source: `{c['model']}`. {len(c['classes'])} classes: {', '.join(c['classes'])}.", "",
             "| | |", "|---|---|",
             f"| parameters | {c['params']:,} |",
             f"| MACs per 1 s inference | {c['macs_per_inference'] / 1e6:.2f} M ({c['macs_note']}) |"]
    for k, v in c.get("info", {}).items():
        lines.append(f"| {k} | {v} |")
    lines += ["", "## Files", "", "| file | size |", "|---|---|"]
    lines += [f"| `{f}` | {s / 1024:.1f} KiB |" for f, s in c["files"].items()]
    lines += ["", "## Numerical checks (max abs difference)", ""]
    lines += [f"- {k}: {v:.3g}" for k, v in c["checks"].items()]
    st = c["streaming"]
    lines.append(f"- streaming export: " + (f"posteriors within {st['posterior_max_abs_diff']:.3g} of PyTorch "
                                            f"over {st['windows_checked']} windows" if st["available"] else st["why"]))
    if "int8" in c:
        q = c["int8"]
        lines += ["", "## int8", "", f"{q['scheme']}; calibrated on {q['calibration_clips']} clips of "
                  f"`{q['calibration_manifest']}`; {q['excluded_nodes']} front-end nodes left in float."]
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
    lines.append("")
    return "\n".join(lines)
