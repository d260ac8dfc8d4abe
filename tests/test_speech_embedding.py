"""The speech-embedding teacher: PyTorch rebuild against the TFLite runtime, the weight
cache, the embedding cache and the errors users see."""
import importlib.util
import shutil
import subprocess

import numpy as np
import pytest
import torch

from kws_okd.audio.features import EmbeddingMel
from kws_okd.errors import ConfigError
from kws_okd.models import build_model
from kws_okd.models import embedding_weights as ew
from kws_okd.models.speech_embedding import SpeechEmbedding, SpeechEmbeddingTeacher

HAVE_PACKAGE = importlib.util.find_spec("pyopen_wakeword") is not None
needs_package = pytest.mark.skipif(not HAVE_PACKAGE, reason="pyopen-wakeword is not installed")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KWS_OKD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def speech_clip(tmp_path):
    from kws_okd.audio.io import read_audio
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "yes no up down left right"], check=True)
    return read_audio(wav, 16000)[:24000].astype(np.float32)


@needs_package
def test_pytorch_matches_tflite_runtime_on_noise_and_speech(tmp_path, cache):
    from kws_okd.models.tflite_reference import ReferenceEmbedding
    ref = ReferenceEmbedding()
    teacher = SpeechEmbeddingTeacher(num_classes=3).eval()
    rng = np.random.default_rng(0)
    clips = {"noise": (0.1 * rng.standard_normal(16000)).astype(np.float32),
             "speech": speech_clip(tmp_path)}
    for name, wav in clips.items():
        ref_mels, ref_emb = ref(wav)
        with torch.no_grad():
            mels = teacher.mel(torch.from_numpy(wav)[None])[0].T.numpy()
            emb = teacher.embedding(teacher.mel(torch.from_numpy(wav)[None]))[0].numpy()
        assert mels.shape == ref_mels.shape and emb.shape == ref_emb.shape, name
        assert np.abs(mels - ref_mels).max() < 1e-4, name
        assert np.abs(emb - ref_emb).max() < 1e-4, name
        assert np.abs(ref_emb).max() > 1.0, name  # a real comparison, not of zeros


def test_whole_clip_embedding_equals_windowed_embedding():
    torch.manual_seed(0)
    net = SpeechEmbedding().eval()
    mel = torch.randn(2, 32, 120)
    with torch.no_grad():
        whole = net(mel)
        windows = torch.stack([net(mel[:, :, s:s + 76])[:, 0] for s in range(0, 120 - 76 + 1, 8)], 1)
    assert whole.shape == (2, (120 - 76) // 8 + 1, 96)
    torch.testing.assert_close(whole, windows, atol=1e-5, rtol=1e-5)


def test_mel_frame_count_and_scaling():
    fe = EmbeddingMel()
    out = fe(torch.zeros(2, 16000))
    assert out.shape == (2, 32, 1 + (16000 - 512) // 160)
    # Silence sits at the 1e-10 floor: 10*log10(1e-10) = -100 dB -> -100/10 + 2 = -8.
    torch.testing.assert_close(out, torch.full_like(out, -8.0))


def test_wrong_sample_rate_is_refused():
    with pytest.raises(ConfigError, match="16 kHz"):
        EmbeddingMel(sample_rate=8000)


@needs_package
def test_conversion_is_cached_and_a_damaged_cache_is_rebuilt(cache, monkeypatch):
    first = ew.embedding_state_dict()
    files = list(cache.glob("speech_embedding-*.pt"))
    assert len(files) == 1 and not list(cache.glob(".*.tmp"))
    # The second call reads the cache: converting again would fail here.
    monkeypatch.setattr(ew, "read_embedding_graph", lambda path: pytest.fail("converted twice"))
    second = ew.embedding_state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    # A cache cut short by a kill is never used: it is rebuilt.
    monkeypatch.undo()
    monkeypatch.setenv("KWS_OKD_CACHE", str(cache))
    files[0].write_bytes(files[0].read_bytes()[:1000])
    third = ew.embedding_state_dict()
    assert all(torch.equal(first[k], third[k]) for k in first)
    torch.load(files[0], weights_only=True)  # whole again


def test_missing_package_gives_one_clear_error_and_resnet_still_works(cache, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyopen_wakeword" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pyopen-wakeword==1\.1\.0.*teacher=resnet"):
        build_model("speech_embedding", num_classes=5)
    assert build_model("resnet", num_classes=5)(torch.zeros(1, 16000)).shape == (1, 5)


@needs_package
def test_corrupt_model_file_is_named(cache, tmp_path, monkeypatch):
    fake = tmp_path / "pkg" / "models"
    shutil.copytree(ew.package_models_dir(), fake)
    (fake / "embedding_model.tflite").write_bytes(b"\x00" * 64)
    monkeypatch.setattr(ew, "package_models_dir", lambda: fake)
    with pytest.raises(ConfigError, match=r"embedding_model\.tflite.*pyopen-wakeword"):
        ew.embedding_state_dict()


def test_embedding_cache_serves_clean_inputs_and_misses_new_ones():
    torch.manual_seed(0)
    teacher = SpeechEmbeddingTeacher(num_classes=4, pretrained=False).eval()
    x = 0.1 * torch.randn(5, 16000)
    with torch.no_grad():
        direct = teacher.head(teacher.embed(x))
        first = teacher(x)
        again = teacher(x[[3, 1]])
    torch.testing.assert_close(first, direct)
    torch.testing.assert_close(again, first[[3, 1]])
    assert (teacher.cache.misses, teacher.cache.hits) == (5, 2)
    with torch.no_grad():
        teacher(x + 0.01)  # an augmented batch goes through the whole network
    assert teacher.cache.misses == 10
    # New embedding weights must not be served stale embeddings.
    with torch.no_grad():
        teacher.embedding.convs[0].bias.add_(1.0)
        torch.testing.assert_close(teacher(x), teacher.head(teacher.embed(x)))


def test_unfreezing_the_last_block_trains_only_it_and_skips_the_cache():
    teacher = SpeechEmbeddingTeacher(num_classes=4, pretrained=False, trainable_blocks=1)
    trainable = {n for n, p in teacher.named_parameters() if p.requires_grad}
    assert {n.split(".")[0] for n in trainable} == {"embedding", "head"}
    conv_ids = {int(n.split(".")[2]) for n in trainable if n.startswith("embedding")}
    assert conv_ids == set(range(SpeechEmbedding.LAST_BLOCK_FIRST_CONV, 20))
    teacher(0.1 * torch.randn(2, 16000)).sum().backward()
    assert teacher.embedding.convs[19].weight.grad is not None
    assert teacher.cache.misses == 0
    with pytest.raises(ConfigError, match="trainable_blocks"):
        SpeechEmbeddingTeacher(num_classes=4, pretrained=False, trainable_blocks=2)


def test_teacher_exports_to_onnx_and_matches_pytorch(tmp_path):
    import onnxruntime as ort
    torch.manual_seed(0)
    teacher = build_model("speech_embedding", num_classes=4, pretrained=False).eval()
    x = 0.1 * torch.randn(2, 16000)
    path = tmp_path / "teacher.onnx"
    torch.onnx.export(teacher, (x,), str(path), opset_version=17, input_names=["wav"],
                      output_names=["logits"], dynamic_axes={"wav": {0: "batch"}}, dynamo=False)
    got = ort.InferenceSession(str(path)).run(None, {"wav": x.numpy()})[0]
    with torch.no_grad():
        want = teacher(x).numpy()
    assert np.abs(got - want).max() < 1e-3 * max(1.0, np.abs(want).max())
