"""Audio sources for the streaming engine: each yields mono float32 blocks at the
model's sample rate, converting rate and channels on the way.

- :func:`mic_blocks`: sounddevice ``InputStream`` whose callback fills a queue;
- :func:`file_blocks`: any file soundfile reads (WAV, FLAC, ...), optionally paced
  in real time;
- :func:`stdin_blocks`: raw 16-bit little-endian mono PCM at a given rate.
"""
from __future__ import annotations

import queue
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from kws_okd.errors import AudioError, KWSError
from kws_okd.stream.resample import StreamResampler


class DeviceError(KWSError):
    """No usable audio input device."""


NO_DEVICE_HELP = ("no audio input device could be opened ({why}). Connect a microphone "
                  "(or check `python -m sounddevice`), or stream a file with --wav or raw PCM with --stdin.")


def _mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 and x.shape[1] > 1 else x.reshape(-1)


def file_blocks(path, sample_rate: int = 16000, block_s: float = 0.1, realtime: bool = False):
    """Read ``path`` block by block (long recordings never sit in memory at once)."""
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file does not exist")
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:  # soundfile raises several types for broken files
        raise AudioError(path, f"cannot decode audio ({e})") from None
    with f:
        rs = StreamResampler(f.samplerate, sample_rate)
        n = max(1, int(f.samplerate * block_s))
        t0, sent = time.monotonic(), 0
        for blk in f.blocks(blocksize=n, dtype="float32", always_2d=True):
            x = _mono(blk)
            if not np.isfinite(x).all():
                raise AudioError(path, "audio contains NaN or Inf samples")
            y = rs(x)
            if realtime:  # pace like a live source: never run ahead of the clock
                sent += len(x) / f.samplerate
                ahead = sent - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            yield y


def stdin_blocks(rate: int, sample_rate: int = 16000, stream=None, block_s: float = 0.05):
    """Raw signed 16-bit little-endian mono PCM at ``rate`` Hz until end of input."""
    stream = stream if stream is not None else sys.stdin.buffer
    rs = StreamResampler(rate, sample_rate)
    nbytes = 2 * max(1, int(rate * block_s))
    carry = b""
    while True:
        chunk = stream.read(nbytes)
        if not chunk:
            break
        chunk = carry + chunk
        usable = len(chunk) - len(chunk) % 2   # an odd byte waits for its partner
        carry = chunk[usable:]
        if usable:
            yield rs(np.frombuffer(chunk[:usable], dtype="<i2").astype(np.float32) / 32768.0)


def _device_arg(device):
    """sounddevice takes an index (int) or a name substring; the command line gives text."""
    if isinstance(device, str) and device.strip().lstrip("-").isdigit():
        return int(device)
    return device


def _any_input(sd) -> bool:
    try:
        return any(d["max_input_channels"] > 0 for d in sd.query_devices())
    except Exception:  # noqa: BLE001 (a broken PortAudio is reported by the caller)
        return False


def mic_blocks(sample_rate: int = 16000, block_s: float = 0.02, device=None,
               duration_s: float | None = None, timeout_s: float = 5.0, rate: int | None = None):
    """Blocks from an input device; runs until ``duration_s`` (or forever). The device is
    opened at ``rate`` when given, else at the model's rate (PortAudio/ALSA convert when
    they can), else at the device's own default rate; other rates are resampled here.
    A missing device or a refused rate raises :class:`DeviceError` with one clear line,
    before any audio is read."""
    try:
        import sounddevice as sd
    except OSError as e:  # the PortAudio library itself is missing
        raise DeviceError(NO_DEVICE_HELP.format(why=f"PortAudio is not available: {e}")) from None
    device = _device_arg(device)

    q: queue.Queue = queue.Queue()
    overflows = [0]

    def callback(indata, frames, time_info, status):
        if status:
            overflows[0] += 1
        q.put(np.array(indata, dtype=np.float32, copy=True))

    def open_stream(r):
        return sd.InputStream(samplerate=r, blocksize=max(1, int(r * block_s)), channels=1,
                              dtype="float32", device=device, callback=callback)

    def rate_refused(e) -> bool:
        return "sample rate" in str(e).lower()

    def describe():
        info = sd.query_devices(device, "input")
        return info["name"], int(info["default_samplerate"])

    try:
        first = int(rate or sample_rate)
        try:
            stream = open_stream(first)
            opened = first
        except sd.PortAudioError as e:
            if not rate_refused(e):
                raise
            name, default = describe()
            if rate or default == first:
                hint = (f"its default rate is {default} Hz: try --rate {default}" if default != first
                        else "choose a rate it supports with --rate")
                raise DeviceError(f"the input device {name!r} does not support {first} Hz ({e}); "
                                  f"{hint}") from None
            try:
                stream = open_stream(default)
                opened = default
            except sd.PortAudioError as e2:
                if not rate_refused(e2):
                    raise
                raise DeviceError(f"the input device {name!r} supports neither {first} Hz nor its default "
                                  f"{default} Hz ({e2}); choose a rate it supports with --rate") from None
    except (sd.PortAudioError, ValueError) as e:
        why = str(e).strip() or type(e).__name__
        if device is None and not _any_input(sd):
            why = f"PortAudio finds no input device: {why}"
        raise DeviceError(NO_DEVICE_HELP.format(why=why)) from None

    return _drain(stream, q, StreamResampler(opened, sample_rate),
                  None if duration_s is None else int(round(duration_s * opened)), timeout_s, overflows)


def _drain(stream, q, rs, limit, timeout_s, overflows):
    """The generator half of :func:`mic_blocks`, so that opening the device (and its
    error) happens at the call, before anything is printed."""
    got = 0
    with stream:
        while limit is None or got < limit:
            try:
                blk = q.get(timeout=timeout_s)
            except queue.Empty:
                raise DeviceError(f"the input device sent no audio for {timeout_s:g} s") from None
            x = _mono(blk)
            if limit is not None:
                x = x[:limit - got]
            got += len(x)
            yield rs(x)
    if overflows[0]:
        print(f"warning: the input overflowed {overflows[0]} time(s); detections may have "
              "missed audio (the machine could not keep up)", file=sys.stderr)
