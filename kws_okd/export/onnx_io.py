"""ONNX and TorchScript export with numerical checks against PyTorch."""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from kws_okd.errors import ConfigError
from kws_okd.utils.atomic import atomic_path

OPSET = 17
TOLERANCE = 1e-4


def export_onnx(module, example: torch.Tensor, path, input_name: str, dynamic_last: bool = False) -> None:
    """Export with a dynamic batch axis (and a dynamic last axis for the frame front-end),
    written atomically."""
    module.eval()
    axes = {input_name: {0: "batch"}, "logits": {0: "batch"}}
    out_name = "logits"
    if dynamic_last:
        axes = {input_name: {0: "batch", 1: "samples"}, "frames": {0: "batch", 2: "frames"}}
        out_name = "frames"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # tracer chatter about shape-dependent Python
        torch.onnx.export(module, (example,), buf, input_names=[input_name], output_names=[out_name],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def session(path, threads: int = 1):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(sess, x: np.ndarray, batch: int = 64) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + batch].astype(np.float32)})[0]
                           for i in range(0, len(x), batch)])


def max_diff_vs_torch(module, sess, x: torch.Tensor) -> float:
    with torch.no_grad():
        ref = module(x).numpy()
    return float(np.abs(run_onnx(sess, x.numpy()) - ref).max())


def export_torchscript(module, example: torch.Tensor, path) -> float:
    """Trace (shapes are fixed per window) and return the max abs difference of the
    reloaded script against the module."""
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")   # torch.jit deprecation / tracer warnings
        traced = torch.jit.trace(module, example)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())
        loaded = torch.jit.load(str(path))
        diff = float((loaded(example) - module(example)).abs().max())
    return diff


def require_close(what: str, diff: float, tol: float = TOLERANCE) -> None:
    if not diff <= tol:
        raise ConfigError(f"{what}: exported model differs from PyTorch by {diff:.3g} > {tol:g}")
