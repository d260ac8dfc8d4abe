"""Exports of a (briefly trained) BC-ResNet-1: TorchScript, ONNX, int8 and the streaming
export load and agree with PyTorch; the model card reports what it should."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from kws_okd.data.manifest import write_manifest
from kws_okd.export.frontend import check_frontend
from kws_okd.export.onnx_io import TOLERANCE, session
from kws_okd.export.pipeline import INT8_TOLERANCE, export_all
from kws_okd.models import build_model
from kws_okd.stream.backends import OnnxStreamModel
from kws_okd.stream.engine import StreamConfig, StreamEngine
from kws_okd.train.checkpoint import save_model, set_stream_thresholds

SR = 16000
CLASSES = ["low", "mid", "high", "_noise_"]
FREQS = {"low": 400.0, "mid": 1200.0, "high": 3000.0}


def clip(word, rng):
    x = rng.standard_normal(SR).astype(np.float32) * rng.uniform(0.003, 0.03)
    if word in FREQS:
        n = int(0.4 * SR)
        p = rng.integers(0, SR - n)
        t = np.arange(n) / SR
        x[p:p + n] += (rng.uniform(0.2, 0.6) * np.hanning(n)
                       * np.sin(2 * np.pi * FREQS[word] * rng.uniform(0.9, 1.1) * t)).astype(np.float32)
    return x


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = build_model("bcresnet1", len(CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        y = rng.integers(0, len(CLASSES), 16)
        x = torch.from_numpy(np.stack([clip(CLASSES[i], rng) for i in y]))
        loss = nn.functional.cross_entropy(model(x), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Forty steps leave the running batch-norm statistics far behind the weights:
    # re-estimate them (cumulative average) so the eval-mode model is the trained one.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        for _ in range(4):
            model(torch.from_numpy(np.stack([clip(CLASSES[i % 4], rng) for i in range(32)])))
    model.eval()
    save_model(root / "model.pt", model, {"name": "bcresnet1"}, CLASSES, {"role": "student"})
    set_stream_thresholds(root / "model.pt", {CLASSES[0]: 0.8125, CLASSES[1]: 0.9}, target_fa_per_hour=1.0,
                          hop_ms=20.0, smooth=5, refractory_s=1.0, chosen_on="a validation recording",
                          measured={"test_people": dict(what="real people's keywords", keywords=40, found=29,
                                                        fa_per_hour=3.5),
                                    "valid_real": dict(what="people talking", keywords=0, found=0, fa_per_hour=0.0)})
    rows = []
    for i in range(32):
        w = CLASSES[i % len(CLASSES)]
        sf.write(str(root / f"{i}.wav"), clip(w, rng), SR, subtype="FLOAT")
        rows.append(dict(ID=str(i), wav=f"{i}.wav", word=w, label=CLASSES.index(w), domain=f"d{i % 2}"))
    write_manifest(root / "clips.csv", rows)
    card = export_all(root / "model.pt", root / "out", calib=root / "clips.csv", tests=[root / "clips.csv"],
                      calib_clips=24, latency_runs=5)
    torch.set_num_threads(prev)
    return dict(root=root, out=root / "out", model=model, card=card)


def probe(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, SR, generator=g) * torch.logspace(-2, -0.5, n)[:, None]


def test_onnx_and_torchscript_agree_with_pytorch(exported):
    x = probe()
    with torch.no_grad():
        ref = exported["model"](x).numpy()
    got = session(exported["out"] / "model.onnx").run(None, {"wav": x.numpy()})[0]
    assert np.abs(got - ref).max() <= TOLERANCE
    ts = torch.jit.load(str(exported["out"] / "model.ts"))
    with torch.no_grad():
        assert np.abs(ts(x).numpy() - ref).max() <= TOLERANCE


def test_int8_loads_and_mostly_agrees(exported):
    out, card = exported["out"], exported["card"]
    fp32, int8 = session(out / "model.onnx"), session(out / "model.int8.onnx")
    import onnx
    q = onnx.load(str(out / "model.int8.onnx"))
    ops = {n.op_type for n in q.graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # The DFT basis, nearly all of the weights, is stored as int8.
    n_int8 = sum(int(np.prod(t.dims)) for t in q.graph.initializer if t.data_type == onnx.TensorProto.INT8)
    assert n_int8 >= 480 * 482
    assert card["files"]["model.int8.onnx"] < 0.5 * card["files"]["model.onnx"]
    assert card["checks"]["int8_frontend_vs_pytorch_simulation_max_abs"] <= 1e-3
    rng = np.random.default_rng(7)
    x = np.stack([clip(CLASSES[i % 4], rng) for i in range(40)])
    a, b = fp32.run(None, {"wav": x})[0], int8.run(None, {"wav": x})[0]
    assert (a.argmax(1) == b.argmax(1)).mean() >= INT8_TOLERANCE["min_top1_agreement"]
    acc = card["accuracy"]["clips"]
    assert acc["pytorch"]["acc"] >= 0.6           # the model learnt the tones
    assert set(acc["onnx_int8"]["by_domain"]) == {"d0", "d1"}
    assert abs(acc["int8_acc_change"]) <= 0.15


def test_streaming_export_matches_the_pytorch_stream(exported):
    rng = np.random.default_rng(3)
    audio = np.concatenate([clip(w, rng) for w in ("low", "_noise_", "high", "mid", "_noise_")])
    cfg = StreamConfig(hop_ms=20, smooth=3, threshold=0.6, keywords=["low", "mid", "high"])
    ref = StreamEngine(exported["model"], CLASSES, cfg, record=True)
    onx = StreamEngine(OnnxStreamModel(exported["out"]), CLASSES, cfg, record=True)
    d_ref, d_onx = ref.run([audio[i:i + 700] for i in range(0, len(audio), 700)]), onx.run([audio])
    assert np.abs(ref.trace()[1] - onx.trace()[1]).max() <= TOLERANCE
    assert [(d.time_s, d.keyword) for d in d_ref] == [(d.time_s, d.keyword) for d in d_onx]


def test_model_card(exported):
    out = exported["out"]
    card = json.loads((out / "card.json").read_text())
    assert card["params"] == sum(p.numel() for p in exported["model"].parameters()) < 20_000
    assert card["macs_per_inference"] > 1e6
    assert {"model.onnx", "model.int8.onnx", "model.ts", "frames.onnx", "classifier.onnx"} <= set(card["files"])
    assert all(v > 0 for k, v in card["latency_ms"].items() if k != "note")
    assert card["checks"]["onnx_vs_torch_max_abs"] <= TOLERANCE
    # Float and int8 side by side: accuracy, latency at batch 1 and 32, size, which is faster.
    v = card["int8_vs_fp32"]
    assert set(v["accuracy"]["clips"]) >= {"onnx_fp32", "onnx_int8", "change", "within_target"}
    assert set(v["latency_ms_per_clip"]) == {"batch_1", "batch_32"}
    assert all(t["onnx_fp32"] > 0 and t["onnx_int8"] > 0 for t in v["latency_ms_per_clip"].values())
    assert v["faster"] in ("int8", "fp32", "mixed") and set(v["int8_speedup"]) == {"batch_1", "batch_32"}
    assert v["size_bytes"]["onnx_int8"] == card["files"]["model.int8.onnx"]
    assert card["int8"]["int8_frontend"] and not card["int8"]["int8_backbone"]
    assert card["int8"]["frame_planes"] == 1 and "two int8 planes" not in card["int8"]["scheme"]
    md = (out / "card.md").read_text()
    assert "MACs" in md and "int8" in md and "d0" in md
    assert "int8 against float" in md and "batch 32" in md and "Faster: **" in md
    assert not list(out.glob(".*.tmp"))   # atomic writes leave no temporaries
    # The detection thresholds stored in the model file travel into the card.
    assert card["detection"]["thresholds"] == {CLASSES[0]: 0.8125, CLASSES[1]: 0.9}
    assert "## Detection thresholds" in md and f"| {CLASSES[0]} | 0.8125 |" in md
    # and what they were measured to do
    assert "| real people's keywords | 29 of 40 | 3.5 |" in md and "| people talking | – | 0 |" in md


@pytest.mark.parametrize("frontend", [{"name": "logmel"}, {"name": "mfcc"},
                                      {"name": "logmel", "win_ms": 40, "hop_ms": 20}])
def test_dft_frontend_matches_torchaudio(frontend):
    m = build_model("bcresnet1", 4, frontend=frontend).eval()
    assert check_frontend(m) <= 1e-4
