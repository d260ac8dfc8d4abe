"""Device exports of trained models: TorchScript, ONNX (whole-window and streaming),
int8 post-training quantisation, and a model card."""
