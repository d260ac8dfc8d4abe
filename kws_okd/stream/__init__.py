"""Streaming keyword detection: ring buffer, incremental features, smoothing, detection,
audio sources (microphone, files, stdin) and long-audio evaluation."""
from kws_okd.stream.engine import Detection, StreamConfig, StreamEngine  # noqa: F401
