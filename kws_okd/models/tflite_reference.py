"""The TFLite C runtime that ships in pyopen-wakeword, run through ctypes: the reference
the PyTorch rebuild of the speech embedding is checked against (tests and
``tools/bench_teacher.py``). Training and inference never use it."""
from __future__ import annotations

import ctypes as C
import os
from pathlib import Path

import numpy as np

from kws_okd.errors import ConfigError
from kws_okd.models.embedding_weights import INSTALL_HINT, package_models_dir


def _library() -> C.CDLL:
    lib_dir = package_models_dir().parent / "lib"
    found = sorted(lib_dir.glob("*tensorflowlite_c*"))
    if not found:
        raise ConfigError(f"{lib_dir}: no TFLite C library in the installed pyopen-wakeword ({INSTALL_HINT})")
    lib = C.CDLL(str(found[0]), mode=getattr(os, "RTLD_GLOBAL", 0))
    vp, i32, sz = C.c_void_p, C.c_int32, C.c_size_t
    sigs = {"TfLiteModelCreateFromFile": ([C.c_char_p], vp),
            "TfLiteInterpreterCreate": ([vp, vp], vp),
            "TfLiteInterpreterResizeInputTensor": ([vp, i32, C.POINTER(i32), i32], C.c_int),
            "TfLiteInterpreterAllocateTensors": ([vp], C.c_int),
            "TfLiteInterpreterInvoke": ([vp], C.c_int),
            "TfLiteInterpreterGetInputTensor": ([vp, i32], vp),
            "TfLiteInterpreterGetOutputTensor": ([vp, i32], vp),
            "TfLiteTensorNumDims": ([vp], i32),
            "TfLiteTensorDim": ([vp, i32], i32),
            "TfLiteTensorCopyFromBuffer": ([vp, vp, sz], C.c_int),
            "TfLiteTensorCopyToBuffer": ([vp, vp, sz], C.c_int),
            "TfLiteInterpreterDelete": ([vp], None),
            "TfLiteModelDelete": ([vp], None)}
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


class TFLiteGraph:
    """One TFLite model with a float32 input and output, resized to each input's shape."""

    def __init__(self, path: Path):
        self.lib = _library()
        self.path = Path(path)
        self.model = self.lib.TfLiteModelCreateFromFile(str(self.path).encode())
        if not self.model:
            raise ConfigError(f"{self.path}: the TFLite runtime cannot read it ({INSTALL_HINT})")
        self.interp = self.lib.TfLiteInterpreterCreate(self.model, None)
        self.shape = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        lib = self.lib
        if x.shape != self.shape:
            dims = (C.c_int32 * x.ndim)(*x.shape)
            if lib.TfLiteInterpreterResizeInputTensor(self.interp, 0, dims, x.ndim) or \
                    lib.TfLiteInterpreterAllocateTensors(self.interp):
                raise ValueError(f"{self.path}: cannot take an input of shape {x.shape}")
            self.shape = x.shape
        inp = lib.TfLiteInterpreterGetInputTensor(self.interp, 0)
        lib.TfLiteTensorCopyFromBuffer(inp, x.ctypes.data_as(C.c_void_p), x.nbytes)
        if lib.TfLiteInterpreterInvoke(self.interp):
            raise RuntimeError(f"{self.path}: TFLite invoke failed")
        out = lib.TfLiteInterpreterGetOutputTensor(self.interp, 0)
        shape = [lib.TfLiteTensorDim(out, i) for i in range(lib.TfLiteTensorNumDims(out))]
        y = np.empty(shape, dtype=np.float32)
        lib.TfLiteTensorCopyToBuffer(out, y.ctypes.data_as(C.c_void_p), y.nbytes)
        return y

    def __del__(self):
        if getattr(self, "interp", None):
            self.lib.TfLiteInterpreterDelete(self.interp)
        if getattr(self, "model", None):
            self.lib.TfLiteModelDelete(self.model)


class ReferenceEmbedding:
    """openWakeWord's computation on one clip with the TFLite runtime: mels of the whole
    clip (int16-scaled samples), ``x/10 + 2``, then the embedding of each 76-frame window
    starting at a multiple of 8 frames. Returns ``(mels[T, 32], embeddings[L, 96])``."""

    def __init__(self):
        models = package_models_dir()
        self.mel = TFLiteGraph(models / "melspectrogram.tflite")
        self.emb = TFLiteGraph(models / "embedding_model.tflite")

    def __call__(self, wav: np.ndarray):
        mels = self.mel((np.asarray(wav, np.float32) * 32768.0)[None])  # (1, 1, T, 32)
        mels = mels.reshape(-1, 32) / 10.0 + 2.0
        embs = [self.emb(mels[s:s + 76][None, :, :, None]).reshape(96)
                for s in range(0, len(mels) - 76 + 1, 8)]
        return mels, np.stack(embs)
