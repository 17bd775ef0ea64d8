import pytest
import torch

from hushnet.models.can import CAN, CANConfig
from hushnet.models.lossnet import LossNet, LossNetConfig, same_padding

from helpers import tiny_can


def test_can_config_matches_the_paper():
    config = CANConfig()
    assert config.dilations == [1] + [2**i for i in range(1, 13)] + [1]
    assert config.receptive_field == 16385
    model = CAN(config)
    assert sum(p.numel() for p in model.parameters()) == 160925  # the authors' checkpoint holds 160,925
    biases = [name for name, _ in model.named_parameters() if name.endswith("bias")]
    assert biases == ["output.bias"]


@pytest.mark.parametrize("length", [1, 7, 1000, 4097])
@pytest.mark.parametrize("norm", ["per-input", "batch"])
def test_can_keeps_length_and_shape(length, norm):
    model = tiny_can(norm)
    x = torch.randn(2, length)
    with torch.no_grad():
        assert model(x).shape == (2, length)
        assert model(x.unsqueeze(1)).shape == (2, 1, length)


def test_per_input_statistics_are_per_example():
    model = tiny_can("per-input")
    a, b = torch.randn(1, 3000), torch.randn(1, 3000) * 3
    with torch.no_grad():
        together = model(torch.cat([a, b]))
        assert torch.allclose(together[0], model(a)[0], atol=1e-6)
        assert torch.allclose(together[1], model(b)[0], atol=1e-6)


def test_batch_mode_updates_running_statistics_only_in_training():
    model = tiny_can("batch")
    before = model.layers[0].norm.running_mean.clone()
    with torch.no_grad():
        model(torch.randn(1, 2000))
    assert torch.equal(before, model.layers[0].norm.running_mean)
    model.train()
    model(torch.randn(2, 2000))
    assert not torch.equal(before, model.layers[0].norm.running_mean)


def test_identity_initialisation_passes_the_signal_through():
    model = CAN(CANConfig(channels=4, dilated_layers=3, norm="batch"))
    model.init_identity()
    for layer in model.layers[1:]:
        w = layer.conv.weight
        assert torch.equal(w[:, :, 1], torch.eye(4)) and not w[:, :, [0, 2]].any()


@pytest.mark.parametrize("length,expected", [(31367, (1, 1)), (1000, (0, 1)), (1001, (1, 1)), (4, (0, 1))])
def test_tf_same_padding_is_asymmetric(length, expected):
    assert same_padding(length, 2) == expected
    assert same_padding(length, 1) == (1, 1)


def test_lossnet_shapes_follow_tf_same():
    model = LossNet(LossNetConfig())
    with torch.no_grad():
        features = model(torch.randn(1, 31367))
    assert [f.shape[1] for f in features] == [32] * 5 + [64] * 5 + [128] * 4
    assert [f.shape[2] for f in features] == [15684, 7842, 3921, 1961, 981, 491, 246, 123, 62, 31, 16, 8, 4, 4]
    scene, tags = model.classify(torch.randn(3, 5000))
    assert scene.shape == (3, 15) and tags.shape == (3, 7)


def test_config_round_trip_rejects_unknown_keys():
    config = CANConfig(channels=16, norm="batch", input_rms_db=-25.0)
    assert CANConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError):
        CANConfig.from_dict({"channels": 8, "widht": 3})
    with pytest.raises(ValueError):
        CANConfig(norm="instance")
