"""The auto-encoders of the paper's section 3.4: the PixelCNN decoder given a code, the MSE baseline,
and the warm start that gives the decoder a trained PixelCNN's layers."""

import pytest
import torch
import torch.nn.functional as F

import pixelcnn
from pixelcnn import (ConvEncoder, DeconvDecoder, EncoderConfig, MSEAutoEncoder, PixelCNNAutoEncoder,
                      mse_reconstruction, reconstructions, sample)
from pixelcnn.autoencoder import psnr
from pixelcnn.receptive_field import random_model
from pixelcnn.surgery import load_initial_weights

from conftest import random_images, tiny_config
from test_causality import ZERO, causal_violations


def toy_pixelcnn_autoencoder(size=(6, 6), dtype=torch.float32, conditioning: str = "spatial") -> PixelCNNAutoEncoder:
    decoder = random_model("gated", tiny_config(channels=3, size=size, conditioning=conditioning, cond_dim=4),
                           dtype=dtype)
    encoder = ConvEncoder(EncoderConfig(image_channels=3, image_size=size, code_dim=4, channels=4)).to(dtype)
    return PixelCNNAutoEncoder(encoder, decoder).eval()


def toy_mse_autoencoder(channels: int = 3, size: int = 8) -> MSEAutoEncoder:
    config = EncoderConfig(image_channels=channels, image_size=size, code_dim=5, channels=4)
    return MSEAutoEncoder(ConvEncoder(config), DeconvDecoder(config)).eval()


@pytest.mark.parametrize("conditioning", ["spatial", "sketch"])
def test_given_a_fixed_code_the_spatial_decoder_is_causal_over_every_subpixel(conditioning):
    """The code comes from the whole image by design, so it is computed once and held fixed."""
    model = toy_pixelcnn_autoencoder(dtype=torch.float64, conditioning=conditioning)
    x = random_images(model.config, 1, seed=2)
    code = pixelcnn.encode(model, x)
    leak, influence = causal_violations(model.decoder, x, code)
    assert leak < ZERO, f"output changed by {leak} when an input at or after it changed"
    assert influence > 1e-3


def test_decodings_stream_and_are_deterministic_for_a_seed():
    model = toy_pixelcnn_autoencoder()
    image = random_images(model.config, 1, seed=3)[0]
    events = list(reconstructions(model, image, 3, seed=5, every=6))
    assert len(events) > 3 and events[-1].finished and not events[0].finished
    again = list(reconstructions(model, image, 3, seed=5))[-1].images
    assert torch.equal(events[-1].images, again)
    # exactly the decoder sampled given the image's code, at the default guidance; another seed draws other images
    from pixelcnn.autoencoder import RECONSTRUCTION_GUIDANCE

    code = pixelcnn.encode(model, image)[0]
    assert torch.equal(again, sample(model.decoder, 3, code, seed=5, guidance=RECONSTRUCTION_GUIDANCE))
    plain = list(reconstructions(model, image, 3, seed=5, guidance=1))[-1].images
    assert torch.equal(plain, sample(model.decoder, 3, code, seed=5))
    assert not torch.equal(again, list(reconstructions(model, image, 3, seed=6))[-1].images)
    with pytest.raises(TypeError, match="mse_reconstruction"):
        reconstructions(toy_mse_autoencoder(), image, 2)


def test_decodings_can_be_held_to_the_mse_decoders_sketch_of_their_code():
    """The natural sketch of a "sketch"-conditioned decoder is the MSE decoder's picture of the code:
    strength 0 is plain decoding, bit for bit; a strong hold pulls every decoding to that picture."""
    from pixelcnn.autoencoder import code_sketch

    model = toy_pixelcnn_autoencoder(conditioning="sketch")
    image = random_images(model.config, 1, seed=3)[0]
    code = pixelcnn.encode(model, image)
    sketch = code_sketch(model, code)
    assert sketch.shape == (1, 3, 6, 6) and 0 <= sketch.min() and sketch.max() <= 1
    free = list(reconstructions(model, image, 4, seed=5))[-1].images
    assert torch.equal(free, list(reconstructions(model, image, 4, seed=5, strength=0.0))[-1].images)
    held = list(reconstructions(model, image, 4, seed=5, strength=400.0))[-1].images
    gap = lambda images: (images.double() - sketch.double() * 255).abs().mean().item()  # noqa: E731
    assert gap(held) < 0.25 * gap(free) and gap(held) < 8
    with pytest.raises(ValueError, match="not 'sketch'-conditioned"):
        reconstructions(toy_pixelcnn_autoencoder(), image, 2, strength=1.0)


@pytest.mark.parametrize("channels,size", [(3, 32), (1, 28), (3, 8)])
def test_the_mse_baseline_mirrors_its_encoder(channels, size):
    model = toy_mse_autoencoder(channels, size)
    x = random_images(tiny_config(channels=channels, size=(size, size)), 2)
    out = mse_reconstruction(model, x)
    assert out.shape == x.shape and out.dtype == torch.long and 0 <= out.min() and out.max() <= 255
    assert mse_reconstruction(model, x[0]).shape == (1, channels, size, size)
    model.train().loss(x).backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, dead
    with pytest.raises(ValueError, match="integer images"):
        model.encode(x.float())
    assert psnr(0.01) == pytest.approx(20.0) and psnr(1.0) == 0.0


def test_the_mse_composite_round_trips(tmp_path):
    model = toy_mse_autoencoder()
    model.save_pretrained(tmp_path / "mse")
    loaded = pixelcnn.from_pretrained(tmp_path / "mse")
    assert type(loaded) is MSEAutoEncoder and type(loaded.decoder) is DeconvDecoder
    x = random_images(tiny_config(size=(8, 8)), 3)
    assert torch.equal(mse_reconstruction(model, x), mse_reconstruction(loaded, x))


def test_a_warm_start_carries_a_class_models_layers_into_the_decoder(tmp_path):
    """Every layer is copied and V = 0, so the decoder starts as the class model given the mean
    one-hot: exactly so below the first row, whatever the code."""
    config = tiny_config(channels=3, size=(6, 6), conditioning="class")
    start = random_model("gated", config, dtype=torch.float32).eval()
    start.save_pretrained(tmp_path / "class-model")
    autoencoder = toy_pixelcnn_autoencoder()
    assert autoencoder.decoder.config.replace(conditioning="class", cond_dim=3) == config
    load_initial_weights(autoencoder, str(tmp_path / "class-model"))
    autoencoder.eval()
    x = random_images(config, 2, seed=4)
    with torch.no_grad():
        mean_one_hot = torch.full((2, config.num_classes), 1 / config.num_classes)
        expected = start.bits_per_subpixel(x, mean_one_hot)[:, :, 1:]
        warm = autoencoder.decoder.bits_per_subpixel(x, torch.randn(2, 4))[:, :, 1:]
    torch.testing.assert_close(warm, expected, rtol=1e-4, atol=1e-4)
    # a model that differs beyond its conditioning is refused
    other = random_model("gated", tiny_config(channels=3, size=(6, 6), conditioning="class", n_layers=2))
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(Exception, match="beyond its conditioning"):
        load_initial_weights(toy_pixelcnn_autoencoder(), str(tmp_path / "other"))


def test_a_decoding_is_judged_by_which_image_its_coarse_layout_is_closest_to():
    from pixelcnn.experiments.autoencoder import closest_to_own

    # ten flat images of distinct greys, each with noise finer than the 4x4 blocks compared
    levels = torch.arange(10) * 25
    images = levels[:, None, None, None].expand(10, 3, 8, 8).clone()
    images[..., ::2, ::2] += 3
    owners = torch.arange(10).repeat_interleave(2)
    assert closest_to_own(images[owners], owners, images).all()
    # details changed, layout kept: still its own; another image's layout: never
    assert closest_to_own((images[owners] + 4).clamp(max=255), owners, images).all()
    assert not closest_to_own(images[(owners + 3) % 10], owners, images).any()
    with pytest.raises(ValueError, match="candidates"):
        closest_to_own(images, torch.arange(10), images, candidates=11)


def test_content_kept_compares_decodings_with_their_images_and_is_deterministic_for_a_seed():
    from pixelcnn.experiments.autoencoder import content_kept

    images = random_images(toy_pixelcnn_autoencoder().config, 4, seed=5)
    model = toy_pixelcnn_autoencoder()
    first, again = (content_kept(model, images, samples=2, candidates=4, pool=2, seed=3) for _ in range(2))
    assert first == again and 0 <= first["recognised"] <= 1 and first["coarse_mse"] > 0
    mse = toy_mse_autoencoder(size=6)
    blurred = content_kept(mse, images, candidates=4, pool=2)
    layouts = F.avg_pool2d(images.float() / 255, 2)
    expected = (F.avg_pool2d(mse_reconstruction(mse, images).float() / 255, 2) - layouts).pow(2).mean().item()
    assert blurred["coarse_mse"] == pytest.approx(expected, rel=1e-5)


def test_the_measurement_cli_writes_figures_card_and_figure6(tmp_path):
    import numpy as np
    from PIL import Image

    from pixelcnn.experiments.autoencoder import main
    from pixelcnn.hub import read_metrics

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("red", "blue"):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for k in range(3):
                Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    toy_pixelcnn_autoencoder().save_pretrained(tmp_path / "ae")
    config = EncoderConfig(image_channels=3, image_size=6, code_dim=4, channels=4)
    MSEAutoEncoder(ConvEncoder(config), DeconvDecoder(config)).save_pretrained(tmp_path / "mse")
    reference = random_model("gated", tiny_config(channels=3, size=(6, 6), conditioning="class", num_classes=2))
    reference.save_pretrained(tmp_path / "reference")
    (tmp_path / "ae" / "metrics.json").write_text('{"test_bpd": 8.0, "test_images": 6, "dataset": "toy", '
                                                  '"train_images": 6, "parameters": 1, "torch": "x", "history": []}')
    assert main([str(tmp_path / "ae"), "--mse", str(tmp_path / "mse"), "--reference", str(tmp_path / "reference"),
                 "--data", f"folder:{tmp_path / 'data'}", "--images", "0"]) == 0
    measured = read_metrics(tmp_path / "ae")["autoencoder"]
    assert measured["code_dim"] == 4 and measured["test_images"] == 6
    assert all(measured[k] > 0 for k in ("bpd_own", "bpd_shuffled", "reference_bpd", "mse_mse", "mse_psnr"))
    assert measured["content_images"] == 6 and measured["content_candidates"] == 6
    assert 0 <= measured["content_recognised"] <= 1 and 0 <= measured["mse_content_recognised"] <= 1
    assert set(measured["content_guidance"]) == {"1", "1.5", "2", "3"}  # 1.5: the default
    assert measured["content_guidance"]["1"]["recognised"] == measured["content_recognised"]
    card = (tmp_path / "ae" / "README.md").read_text()
    assert "PixelCNN auto-encoder" in card and f"{measured['bpd_own']:.4f}" in card and "figure6.png" in card
    assert f"guidance w = 3 against the decoder's average code | {measured['content_guidance']['3']['recognised']:.0%}" in card
    assert f"| **{measured['content_recognised']:.0%}** |" in card and "coarse layout" in card
    assert (tmp_path / "ae" / "figure6.png").stat().st_size > 0 and len(list((tmp_path / "ae" / "examples").glob("*.png"))) == 2
