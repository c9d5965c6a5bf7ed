"""Classifier-free guidance and the null condition: w = 1 is plain sampling bit for bit, the guided
logits are l_null + w (l_cond - l_null), cached = naive, causality holds, and condition dropout
trains a learned null."""

import pytest
import torch

import pixelcnn
import pixelcnn.sampling as sampling
from pixelcnn.receptive_field import random_model, raster_order
from pixelcnn.sampling import CachedEngine, GuidedEngine, NaiveEngine, choose, interpolate, sample

from conftest import example_condition, random_images, tiny_config

KINDS = ["class", "vector", "spatial", "sketch", "image"]


def guided_model(conditioning, channels=3, seed=0, **overrides):
    config = tiny_config(channels=channels, size=(5, 6), conditioning=conditioning, **overrides)
    model = random_model("gated", config, seed=seed)
    with torch.no_grad():  # a null unlike any condition, so that a mix-up shows
        model.condition.null_h.copy_(torch.randn(model.condition.width, dtype=torch.float64) * 0.7 + 0.3)
    return model


@pytest.mark.parametrize("conditioning", KINDS)
def test_guidance_one_is_plain_sampling_bit_for_bit(conditioning):
    model = guided_model(conditioning)
    cond = example_condition(model.config, 3)
    for method in ("cached", "naive"):
        plain = sample(model, 3, cond, seed=5, method=method)
        assert torch.equal(sample(model, 3, cond, seed=5, method=method, guidance=1), plain)
        assert torch.equal(sample(model, 3, cond, seed=5, method=method, guidance=1.0), plain)
        # and guidance does change the images, so the equality above is not vacuous
        assert not torch.equal(sample(model, 3, cond, seed=5, method=method, guidance=4), plain)


@pytest.mark.parametrize("conditioning", KINDS)
@pytest.mark.parametrize("w", [0.0, 2.5])
def test_guided_logits_are_the_formula_on_full_forward_passes(conditioning, w):
    model = guided_model(conditioning, seed=1)
    n, cfg = 2, model.config
    h = model.encode_condition(example_condition(cfg, n), n)
    x = random_images(cfg, n, seed=2)
    with torch.no_grad():
        l_cond, l_null = model(x, h), model(x, model.condition.null(n))
    for engine_class in (NaiveEngine, CachedEngine):
        engine = GuidedEngine(engine_class, model, torch.zeros_like(x), h, w)
        for k in range(cfg.num_subpixels):  # write x in raster order, checking every sub-pixel's logits
            pixel, c = divmod(k, cfg.image_channels)
            i, j = divmod(pixel, cfg.width)
            expected = l_null[:, :, c, i, j] + w * (l_cond[:, :, c, i, j] - l_null[:, :, c, i, j])
            assert torch.allclose(engine.logits(i, j, c), expected, atol=1e-10), (engine_class.__name__, k)
            engine.commit(i, j, c, x[:, c, i, j])


def test_guidance_zero_samples_the_null_condition():
    model = guided_model("vector", seed=2)
    cond = example_condition(model.config, 3)
    null = model.condition.null(3)
    assert torch.equal(sample(model, 3, cond, seed=9, method="naive", guidance=0),
                       sample(model, 3, null, seed=9, method="naive"))


@pytest.mark.parametrize("conditioning", KINDS)
def test_guided_cached_equals_guided_naive(conditioning):
    model = guided_model(conditioning, seed=3)
    cond = example_condition(model.config, 3)
    for w in (0.0, 3.0):
        for seed in (0, 1):
            assert torch.equal(sample(model, 3, cond, seed=seed, method="naive", guidance=w),
                               sample(model, 3, cond, seed=seed, method="cached", guidance=w)), (w, seed)


@pytest.mark.parametrize("channels", [1, 3])
def test_guided_logits_are_causal_at_every_subpixel(channels):
    """Changing every sub-pixel at or after k leaves the guided logits of sub-pixel k unchanged, and
    changing the one before it does not (so the test can fail)."""
    model = guided_model("spatial", channels=channels, seed=4)
    cfg, n = model.config, 2
    h = model.encode_condition(example_condition(cfg, n), n)
    x, noise = random_images(cfg, n, seed=5), random_images(cfg, n, seed=6)
    order = raster_order(cfg.image_channels, cfg.height, cfg.width)  # (C, H, W)
    moved = 0.0
    for k in range(cfg.num_subpixels):
        pixel, c = divmod(k, cfg.image_channels)
        i, j = divmod(pixel, cfg.width)
        later = (order >= k).expand_as(x)
        logits = []
        for images in (x, torch.where(later, noise, x)):
            engine = GuidedEngine(NaiveEngine, model, images.clone(), h, 3.0)
            logits.append(engine.logits(i, j, c))
        leak = (logits[0] - logits[1]).abs().max().item()  # float64: a structural zero stays below 1e-10
        assert leak < 1e-10, f"sub-pixel {k} saw itself or a later one ({leak})"
        if k:
            engine = GuidedEngine(NaiveEngine, model, torch.where(order >= k - 1, noise, x).clone(), h, 3.0)
            moved = max(moved, (engine.logits(i, j, c) - logits[0]).abs().max().item())
    assert moved > 1e-3, "the test is vacuous: no earlier sub-pixel influenced the guided logits"


def test_interpolation_and_streams_take_guidance():
    model = guided_model("vector", seed=7)
    a, b = example_condition(model.config, 2)
    *_, row = interpolate(model, a, b, 4, seed=3, guidance=2.0)
    assert torch.equal(row.images[0], sample(model, 1, a, seed=3, guidance=2.0)[0])
    *_, plain = interpolate(model, a, b, 4, seed=3)
    assert not torch.equal(row.images, plain.images)


@pytest.mark.parametrize("bad, message", [(-1, "guidance must be"), (float("nan"), "guidance must be"),
                                          (float("inf"), "guidance must be"), ("3", "guidance must be"),
                                          (True, "guidance must be")])
def test_bad_guidance_is_refused_before_any_work(bad, message):
    model = guided_model("class")
    with pytest.raises(ValueError, match=message):
        sample(model, 1, 0, guidance=bad)


def test_an_unconditional_model_cannot_be_guided_but_w1_still_works():
    model = random_model("gated", tiny_config(size=(3, 3)))
    with pytest.raises(ValueError, match="unconditional"):
        sample(model, 1, guidance=2)
    assert sample(model, 1, seed=0, guidance=1).shape == (1, 3, 3, 3)


# ------------------------------------------------------------------------------------ the null condition
def test_null_defaults_for_checkpoints_saved_before_it(tmp_path):
    """A state without null_h is completed with the kind's average (`complete_state`, which
    from_pretrained applies): the uniform class mix, the standardisation mean."""
    config = tiny_config(conditioning="class", size=(3, 3))
    model = pixelcnn.build_model(config)
    state = {k: v for k, v in model.state_dict().items() if k != "condition.null_h"}
    fresh = pixelcnn.build_model(config)
    fresh.load_state_dict(fresh.complete_state(state))
    assert torch.allclose(fresh.condition.null_h, torch.full((5,), 0.2))
    vector = pixelcnn.build_model(tiny_config(conditioning="vector", size=(3, 3), standardise_cond=True))
    vector.condition.fit_statistics(torch.randn(50, 3) + 4)
    state = {k: v for k, v in vector.state_dict().items() if k != "condition.null_h"}
    loaded = pixelcnn.build_model(vector.config)
    loaded.load_state_dict(loaded.complete_state(state))
    assert torch.allclose(loaded.condition.null_h, vector.condition.cond_mean.float())
    # the same through save_pretrained / from_pretrained of an older folder
    import safetensors.torch
    vector.save_pretrained(tmp_path / "old")
    safetensors.torch.save_file(state, str(tmp_path / "old" / "model.safetensors"))
    assert torch.allclose(pixelcnn.from_pretrained(tmp_path / "old").condition.null_h,
                          vector.condition.cond_mean.float())


def test_condition_dropout_replaces_rows_by_the_null_and_trains_a_learned_null():
    config = tiny_config(conditioning="vector", size=(4, 4), learned_null=True)
    model = pixelcnn.build_model(config)
    assert isinstance(model.condition.null_h, torch.nn.Parameter)
    h = torch.randn(1000, 3)
    dropped = model.condition.drop(h, 0.3)
    is_null = (dropped == model.condition.null_h).all(1)
    assert 0.25 < is_null.float().mean() < 0.35
    assert torch.equal(dropped[~is_null], h[~is_null])
    assert torch.equal(model.condition.drop(h, 0.0), h)
    # the loss with dropout reaches the learned null; without it, the null gets no gradient
    x = random_images(config, 16, seed=0)
    torch.manual_seed(0)
    model.loss(x, torch.randn(16, 3), cond_dropout=0.5).backward()
    assert model.condition.null_h.grad is not None and model.condition.null_h.grad.abs().sum() > 0
    model.zero_grad()
    model.loss(x, torch.randn(16, 3)).backward()
    assert model.condition.null_h.grad is None or model.condition.null_h.grad.abs().sum() == 0


def test_learned_null_needs_a_condition():
    with pytest.raises(ValueError, match="learned_null"):
        tiny_config(conditioning="none", learned_null=True)
