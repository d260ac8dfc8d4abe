"""A teacher that has heard people: Google's speech embedding (trained on a large amount
of real speech; shipped in pyopen-wakeword, see :mod:`kws_okd.models.embedding_weights`)
rebuilt in PyTorch, frozen, with a small trainable head.

The embedding maps 76 log-mel frames (775 ms) to 96 features. It is fully convolutional
in time with valid padding and a total time stride of 8, so running it once over a whole
clip yields the embeddings of every 76-frame window starting at a multiple of 8 frames,
exactly as openWakeWord's streaming loop computes them one window at a time (a 1-s clip:
97 frames -> 3 embeddings).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from kws_okd.audio.features import EmbeddingMel
from kws_okd.errors import ConfigError
from kws_okd.models import embedding_weights
from kws_okd.models.registry import register_model


class SpeechEmbedding(nn.Module):
    """(B, 32, T) embedding log-mels -> (B, L, 96), L = (T - 76) // 8 + 1."""

    # The graph's architecture (kws_okd.models.embedding_weights, which checks the
    # converted graph against it): see embedding_weights.LAYERS for the notation.
    LEAKY, FLOOR = embedding_weights.LEAKY, embedding_weights.FLOOR
    LAYERS = embedding_weights.LAYERS
    WINDOW, STRIDE, DIM = 76, 8, 96
    # The last block: everything after the fourth pooling layer (the "last block" that
    # ``trainable_blocks: 1`` unfreezes).
    LAST_BLOCK_FIRST_CONV = 15

    def __init__(self):
        super().__init__()
        convs, c_in = [], 1
        for item in self.LAYERS:
            if item[0] == "conv":
                _, c_out, (kh, kw) = item
                # The first conv is 3x3 "valid" after a one-bin zero pad of the mel axis.
                pad = (0, 1) if kw == 3 else (0, 0)
                convs.append(nn.Conv2d(c_in, c_out, (kh, kw), padding=pad))
                c_in = c_out
        self.convs = nn.ModuleList(convs).to(memory_format=torch.channels_last)

    def forward(self, mel):  # (B, 32, T)
        # (B, 1, T, 32): time is the height axis. Channels-last runs these small convs
        # about 1.5x faster on CPU.
        x = mel.transpose(1, 2).unsqueeze(1).contiguous(memory_format=torch.channels_last)
        ci, last = 0, len(self.convs) - 1
        for item in self.LAYERS:
            if item[0] == "pool":
                x = F.max_pool2d(x, item[1], item[1])
                continue
            x = self.convs[ci](x)
            if ci != last:
                x = torch.clamp_min(F.leaky_relu(x, self.LEAKY), self.FLOOR)
            ci += 1
        return x.squeeze(-1).transpose(1, 2)  # (B, L, 96)

    def last_block_parameters(self):
        for conv in self.convs[self.LAST_BLOCK_FIRST_CONV:]:
            yield from conv.parameters()


class EmbeddingCache:
    """Embeddings of inputs already seen, keyed by the input's bytes (LRU, bounded).

    Clean training and validation clips come back every epoch, so training the head or
    distilling on clean inputs pays for the frozen embedding once. Augmented inputs
    (OKD's ``x_ood``) are new every step: they miss and go through the whole network."""

    def __init__(self, max_items: int):
        self.max_items = max_items
        self.store: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def key(row: torch.Tensor, salt: bytes) -> bytes:
        return hashlib.blake2b(row.detach().cpu().contiguous().numpy().tobytes(), digest_size=16,
                               key=salt[:64]).digest()

    def lookup(self, wav, salt, compute):
        """Embeddings of ``wav`` (B, N), computing only the rows not cached."""
        keys = [self.key(r, salt) for r in wav]
        missing = [i for i, k in enumerate(keys) if k not in self.store]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = compute(wav[missing])
            for i, e in zip(missing, fresh):
                self.store[keys[i]] = e.detach().cpu()
                if len(self.store) > self.max_items:
                    self.store.popitem(last=False)
        out = []
        for k in keys:
            self.store.move_to_end(k)
            out.append(self.store[k])
        return torch.stack(out).to(wav.device)


class EmbeddingHead(nn.Module):
    """Trainable head over the embedding sequence: a temporal conv, mean+max pooling, a
    linear classifier."""

    def __init__(self, num_classes, dim=96, hidden=128, dropout=0.2):
        super().__init__()
        # Embedding features range over tens of units: standardise them first.
        self.norm = nn.BatchNorm1d(dim)
        self.conv = nn.Conv1d(dim, hidden, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden, num_classes)

    def forward(self, emb):  # (B, L, 96)
        h = F.relu(self.conv(self.norm(emb.transpose(1, 2))))
        h = torch.cat([h.mean(-1), h.amax(-1)], dim=1)
        return self.fc(self.drop(h))


@register_model("speech_embedding")
class SpeechEmbeddingTeacher(nn.Module):
    """Waveform -> :class:`EmbeddingMel` -> frozen :class:`SpeechEmbedding` -> head.

    The mel front-end sits inside this backbone (the model's own front-end is ``none``)
    so the embedding cache can key on the waveform itself. ``pretrained`` loads the
    converted weights (building them from pyopen-wakeword on first use);
    ``trainable_blocks: 1`` also trains the embedding's last block (no caching then).

    ``pad_seconds`` (before, after) surrounds each clip with silence before embedding it:
    a 775 ms embedding window then sees the whole word from several offsets (as in
    openWakeWord's stream, which starts from a buffer of silence). On the default
    corpus's validation set a linear probe reached 76 % with no padding, 91 % with
    (0.25, 0.25), 95 % with (0.5, 0.5) and 96 % with (0.75, 0.25) s.
    """
    default_frontend = "none"

    def __init__(self, num_classes, n_features=0, hidden=128, dropout=0.2, trainable_blocks=0,
                 pretrained=True, cache_items=200_000, pad_seconds=(0.75, 0.25)):
        super().__init__()
        self.pad = tuple(int(round(16000 * float(s))) for s in pad_seconds)
        if len(self.pad) != 2 or min(self.pad) < 0:
            raise ConfigError(f"speech_embedding: pad_seconds must be two lengths >= 0, got {pad_seconds!r}")
        if trainable_blocks not in (0, 1):
            raise ConfigError(f"speech_embedding: trainable_blocks must be 0 or 1, got {trainable_blocks!r}")
        self.mel = EmbeddingMel()
        self.embedding = SpeechEmbedding()
        if pretrained:
            self.embedding.load_state_dict(embedding_weights.embedding_state_dict())
        for p in self.embedding.parameters():
            p.requires_grad_(False)
        if trainable_blocks:
            for p in self.embedding.last_block_parameters():
                p.requires_grad_(True)
        self.head = EmbeddingHead(num_classes, SpeechEmbedding.DIM, hidden, dropout)
        self.cache = EmbeddingCache(cache_items) if cache_items else None

    def embed(self, wav):
        if any(self.pad):
            wav = F.pad(wav, self.pad)
        return self.embedding(self.mel(wav))

    def _salt(self) -> bytes:
        # The cache must not outlive a change of the embedding's weights.
        h = hashlib.blake2b(digest_size=16)
        for p in self.embedding.parameters():
            h.update(p.detach().cpu().numpy().tobytes())
        return h.digest()

    def forward(self, wav):  # (B, N) waveforms in [-1, 1]
        frozen = not any(p.requires_grad for p in self.embedding.parameters())
        if frozen and self.cache is not None and not torch.jit.is_scripting() \
                and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
            with torch.no_grad():
                emb = self.cache.lookup(wav, self._salt(), self.embed)
        elif frozen:
            with torch.no_grad():
                emb = self.embed(wav)
        else:
            emb = self.embed(wav)
        return self.head(emb)
