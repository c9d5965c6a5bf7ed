"""Conditions as objects: a raw condition and its encoded h are interchangeable everywhere, and an
encoder's code is a condition like any other."""

import pytest
import torch

import pixelcnn
from pixelcnn import ConvEncoder, EncoderConfig, PixelCNNAutoEncoder, sample
from pixelcnn.conditioning import CONDITIONS, Condition
from pixelcnn.receptive_field import random_model

from conftest import example_condition, random_images, tiny_config


@pytest.mark.parametrize("architecture", ["gated", "original"])
@pytest.mark.parametrize("conditioning", ["class", "vector", "spatial"])
def test_encoded_h_gives_the_same_logits_and_samples_as_the_raw_condition(architecture, conditioning):
    config = tiny_config(channels=3, conditioning=conditioning)
    model = random_model(architecture, config)
    x, cond = random_images(config, 3), example_condition(config, 3)
    h = model.encode_condition(cond, 3)
    assert h.shape == (3, config.cond_features) and h.dtype == torch.float64
    with torch.no_grad():
        assert torch.equal(model(x, cond), model(x, h))
        assert torch.equal(model.bits_per_dim(x, cond), model.bits_per_dim(x, h))
    method = "cached" if architecture == "gated" else "naive"
    assert torch.equal(sample(model, 3, cond, seed=4, method=method), sample(model, 3, h, seed=4, method=method))
    # one condition for the whole batch, raw or encoded
    one = cond[0]
    assert torch.equal(sample(model, 2, one, seed=1, method=method), sample(model, 2, h[0], seed=1, method=method))


def test_a_mix_of_two_class_one_hots_is_a_condition_between_them():
    config = tiny_config(channels=1, conditioning="class", size=(4, 4))
    model = random_model("gated", config)
    x = random_images(config, 1)
    ends = model.encode_condition(torch.tensor([0, 3]), 2)
    mix = 0.5 * ends[0] + 0.5 * ends[1]
    with torch.no_grad():
        a, b, m = model(x, ends[:1]), model(x, ends[1:]), model(x, mix[None])
    # a float h that is no one-hot is accepted, and differs from both ends
    assert not torch.equal(m, a) and not torch.equal(m, b)
    row = sample(model, 3, torch.stack([ends[0], mix, ends[1]]), seed=0)
    assert torch.equal(row[0], sample(model, 1, 0, seed=0)[0])  # image k does not depend on the batch


def test_bad_encoded_conditions_are_refused_clearly():
    model = random_model("gated", tiny_config(channels=1, conditioning="class"))
    x = random_images(model.config, 2)
    with pytest.raises(ValueError, match=r"encoded h of shape \(2, 5\)"):
        model(x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NaN or inf"):
        model(x, torch.full((2, 5), float("nan")))


def test_every_kind_is_registered_and_names_its_batch_field():
    assert set(CONDITIONS) == {"none", "class", "vector", "spatial", "sketch", "image"}
    assert all(issubclass(kind, Condition) for kind in CONDITIONS.values())
    assert CONDITIONS["class"].batch_field == "labels" and CONDITIONS["spatial"].batch_field == "vectors"
    assert CONDITIONS["none"].batch_field is None


def test_the_config_is_frozen_and_names_its_architecture():
    config = tiny_config()
    with pytest.raises(Exception):
        config.n_layers = 9
    assert config.replace(n_layers=9).n_layers == 9 and config.n_layers == 3
    assert type(pixelcnn.build_model(config.replace(architecture="original"))) is pixelcnn.PixelCNN
    with pytest.raises(ValueError, match="architecture must be one of"):
        config.replace(architecture="transformer")


def toy_autoencoder(conditioning: str = "spatial") -> PixelCNNAutoEncoder:
    decoder = random_model("gated", tiny_config(channels=3, size=(8, 8), conditioning=conditioning, cond_dim=4),
                           dtype=torch.float32)
    encoder = ConvEncoder(EncoderConfig(image_channels=3, image_size=8, code_dim=4, channels=4))
    return PixelCNNAutoEncoder(encoder, decoder)


@pytest.mark.parametrize("conditioning", ["vector", "spatial", "sketch"])
def test_every_encoder_parameter_gets_a_gradient_from_the_decoder_loss(conditioning):
    model = toy_autoencoder(conditioning)
    model.loss(random_images(model.config, 4)).backward()
    dead = [name for name, p in model.encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, dead


def test_the_composite_round_trips_and_its_code_is_a_condition(tmp_path):
    model = toy_autoencoder().eval()
    model.save_pretrained(tmp_path / "ae")
    loaded = pixelcnn.from_pretrained(tmp_path / "ae")
    assert type(loaded) is PixelCNNAutoEncoder
    x = random_images(model.config, 2)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
        code = loaded.encode(x)
    assert torch.equal(sample(loaded.decoder, 2, code, seed=3), sample(model.decoder, 2, code, seed=3))
    # a part on its own, and strictness: a missing part is an error, not a random encoder
    assert type(pixelcnn.from_pretrained(tmp_path / "ae", subfolder="encoder")) is ConvEncoder
    (tmp_path / "ae" / "encoder" / "model.safetensors").unlink()
    with pytest.raises(pixelcnn.CheckpointError, match="model.safetensors"):
        pixelcnn.from_pretrained(tmp_path / "ae")


@pytest.mark.parametrize("conditioning", ["vector", "spatial"])
def test_a_standardised_condition_is_the_same_model_reading_standardised_h(conditioning, tmp_path):
    """standardise_cond: V reads (h - mean) / std with the training vectors' statistics, saved with
    the weights; a user still passes the raw vector (e.g. a face embedding)."""
    config = tiny_config(channels=3, conditioning=conditioning)
    plain = random_model("gated", config)
    model = random_model("gated", config.replace(standardise_cond=True))
    training_vectors = 0.05 * torch.randn(200, 3, dtype=torch.float64) + torch.tensor([0.1, -0.2, 0.3])
    model.condition.fit_statistics(training_vectors)
    assert torch.allclose(model.condition.cond_mean, training_vectors.mean(0))
    assert torch.allclose(model.condition.cond_std, training_vectors.std(0))
    x, h = random_images(config, 2), training_vectors[:2]
    with torch.no_grad():
        standardised = (h - training_vectors.mean(0)) / training_vectors.std(0) / 3 ** 0.5  # cond_dim 3
        assert torch.allclose(model(x, h), plain(x, standardised))
        assert not torch.allclose(model(x, h), plain(x, h))
    model.save_pretrained(tmp_path / "m")
    again = pixelcnn.from_pretrained(tmp_path / "m").to(torch.float64)
    assert torch.allclose(again.condition.cond_mean, model.condition.cond_mean, atol=1e-7)
    with pytest.raises(ValueError, match="standardise_cond applies to a vector condition"):
        tiny_config(conditioning="class", standardise_cond=True)
    with pytest.raises(ValueError, match="reads h as it is"):
        plain.condition.fit_statistics(training_vectors)
