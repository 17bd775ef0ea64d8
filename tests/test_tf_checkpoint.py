import shutil

import numpy as np
import pytest

from hushnet.reference.tf_checkpoint import CheckpointError, checkpoint_prefix, read_checkpoint

from helpers import REFERENCE, needs_shared

CHECKPOINTS = REFERENCE / "checkpoint"


@needs_shared
def test_reads_the_authors_checkpoint_bit_exactly():
    tensors = read_checkpoint(CHECKPOINTS / "se_model.ckpt", keep=lambda n: "/Adam" not in n and "power" not in n)
    with np.load(REFERENCE / "se_model.npz") as expected:
        assert set(tensors) == set(expected.files)
        for name in expected.files:
            assert tensors[name].dtype == np.float32
            np.testing.assert_array_equal(tensors[name], expected[name])


@needs_shared
def test_loss_model_variables_match_and_verify():
    tensors = read_checkpoint(
        CHECKPOINTS / "loss_model.ckpt", keep=lambda n: n.startswith("loss_conv_") and "/Adam" not in n
    )
    with np.load(REFERENCE / "loss_model.npz") as expected:
        assert set(tensors) == set(expected.files)
        for name in expected.files:
            np.testing.assert_array_equal(tensors[name], expected[name])


@needs_shared
def test_corrupt_data_fails_the_checksum(tmp_path):
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(CHECKPOINTS / f"se_model.ckpt{suffix}", tmp_path / f"se_model.ckpt{suffix}")
    data = tmp_path / "se_model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="CRC32C"):
        read_checkpoint(tmp_path / "se_model.ckpt")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.index").write_bytes(b"hello world" * 10)
    with pytest.raises(CheckpointError, match="not a TensorFlow checkpoint"):
        read_checkpoint(tmp_path / "x")


@needs_shared
def test_prefix_resolution():
    assert checkpoint_prefix(CHECKPOINTS / "se_model.ckpt.index").name == "se_model.ckpt"
    assert checkpoint_prefix(CHECKPOINTS, "se_model").name == "se_model.ckpt"
    with pytest.raises(CheckpointError, match="expected one checkpoint"):
        checkpoint_prefix(CHECKPOINTS)
