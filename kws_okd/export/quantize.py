"""int8 post-training static quantisation of the ONNX classifier (ONNX Runtime, QDQ).

Only the backbone's convolutions and matrix products are quantised: the DFT
front-end and its log stay float, because 8 bits cannot hold the dynamic range of
a power spectrum (quiet bins would collapse into one log value).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kws_okd.utils.atomic import atomic_path


class WaveReader:
    """CalibrationDataReader over in-memory waveforms, ``batch`` at a time."""

    def __init__(self, input_name: str, waves: np.ndarray, batch: int = 16):
        # Histogram calibrators stack every batch's activations, so all batches must
        # have one shape: a ragged last batch is dropped.
        batch = min(batch, len(waves))
        waves = waves[:len(waves) // batch * batch]
        self.input_name, self.waves, self.batch, self.i = input_name, waves, batch, 0

    def get_next(self):
        if self.i >= len(self.waves):
            return None
        x = self.waves[self.i:self.i + self.batch].astype(np.float32)
        self.i += self.batch
        return {self.input_name: x}

    def rewind(self):
        self.i = 0


def quantize_int8(fp32_path, int8_path, calib_waves: np.ndarray) -> dict:
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(WaveReader, CalibrationDataReader):
        pass

    model = onnx.load(str(fp32_path))
    name = model.graph.input[0].name
    frontend = [n.name for n in model.graph.node if n.name.startswith("/frontend")]
    with atomic_path(int8_path) as tmp:
        quantize_static(str(fp32_path), str(tmp), Reader(name, calib_waves),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                        nodes_to_exclude=frontend,
                        # Min/max ranges let rare outliers (utterance-normalised features,
                        # un-folded sub-spectral norms) stretch the scale: on BC-ResNet-1
                        # they cost 12 accuracy points, the 99.99th percentile about 5.
                        calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": 99.99})
    return dict(calibration_clips=int(len(calib_waves) // min(16, len(calib_waves)) * min(16, len(calib_waves))), calibration="percentile 99.99", excluded_nodes=len(frontend),
                size_bytes=Path(int8_path).stat().st_size)
