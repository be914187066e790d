"""Checkpoints are data: loading one must never run code hidden in it."""

import os
import pickle

import pytest

from charlm.checkpoint import load_checkpoint, save_checkpoint
from charlm.errors import CheckpointError
from tests.conftest import TINY_TEXT
from tests.helpers import ids_of, tiny_model


class _Payload:
    """Unpickling this object calls os.system, which would create `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_a_code_executing_payload_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    # The payload is real: unpickling it does create the file ...
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()

    # ... but put where a checkpoint's weights belong, it is refused without being run.
    tokenizer, _ = ids_of(TINY_TEXT)
    path = save_checkpoint(tmp_path / "ckpt", tiny_model(tokenizer.vocab_size), tokenizer)
    for weights in path.glob("weights-*.safetensors"):
        weights.write_bytes(payload)
    with pytest.raises(CheckpointError, match="corrupt or not safetensors"):
        load_checkpoint(path)
    assert not marker.exists()
