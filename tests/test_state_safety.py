"""Resume files hold no pickled code (issue 36): the RNG state is saved as tensors and plain
values, loaded with ``weights_only=True``, and a crafted file is refused without running."""
import os
import pickle
import random

import numpy as np
import pytest
import torch

from kws_okd.errors import ConfigError, KWSError
from kws_okd.train.state import AtomicCheckpointer, RNGState, load_rng_state, rng_state

PLAIN = (torch.Tensor, list, dict, str, int, float, type(None))


class WritesAMarker:
    """Unpickling this would create ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def draws():
    """One draw of each generator, and a Gaussian (NumPy and Python cache the second of
    each pair: the state must carry that too)."""
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(),
            torch.rand(4).tolist(), torch.randn(2).tolist())


def plain(x):
    if isinstance(x, dict):
        return all(isinstance(k, str) and plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(plain(v) for v in x)
    return isinstance(x, PLAIN)


def test_rng_state_is_tensors_and_plain_values_and_resumes_bitwise(tmp_path):
    random.gauss(0, 1), np.random.randn()       # leave a cached Gaussian in both generators
    state = rng_state()
    assert plain(state), state
    RNGState().save(tmp_path / "rng.ckpt")
    ref = draws()
    RNGState().load(tmp_path / "rng.ckpt")      # weights_only=True inside
    assert draws() == ref


def test_the_checkpointer_resumes_the_rng_exactly(tmp_path):
    ckpt = AtomicCheckpointer(tmp_path / "save", recoverables={"rng": RNGState()})
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    ckpt.save_checkpoint()
    ref = draws()
    draws()                                     # the run goes on, then is killed
    AtomicCheckpointer(tmp_path / "save", recoverables={"rng": RNGState()}).recover_if_possible()
    assert draws() == ref


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_resume_file_with_pickled_code_is_refused_and_the_code_does_not_run(tmp_path, writer):
    save = tmp_path / "save"
    AtomicCheckpointer(save, recoverables={"rng": RNGState()}).save_checkpoint()
    (folder,) = [p for p in save.iterdir() if p.name.startswith("CKPT")]
    evil = folder / "rng.ckpt"
    assert evil.exists()
    marker = tmp_path / "code-ran"
    payload = {**rng_state(), "python": WritesAMarker(marker)}
    if writer == "torch.save":
        torch.save(payload, evil)
    else:
        with open(evil, "wb") as f:
            pickle.dump(payload, f, protocol=2)   # torch.save's protocol

    with pytest.raises(ConfigError) as err:     # through the real resume path
        AtomicCheckpointer(save, recoverables={"rng": RNGState()}).recover_if_possible()
    assert isinstance(err.value, KWSError)
    assert str(evil) in str(err.value)
    assert "refusing" in str(err.value) and "weights_only=False" not in str(err.value)
    assert not marker.exists()


def test_a_foreign_but_safe_file_is_refused_with_its_name(tmp_path):
    path = tmp_path / "rng.ckpt"
    torch.save({"torch": torch.get_rng_state()}, path)   # no format tag
    with pytest.raises(ConfigError, match=str(path)):
        load_rng_state(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match=str(path)):
        load_rng_state(path)
