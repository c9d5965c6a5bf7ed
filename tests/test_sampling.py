"""The generation engine: cached sampling equals naive sampling, sample for sample and step by step."""

import inspect
import time

import pytest
import torch

import pixelcnn.sampling as sampling
from pixelcnn.receptive_field import random_model
from pixelcnn.sampling import CachedEngine, NaiveEngine, choose, given_top_rows, sample, stream

from conftest import example_condition, random_images, tiny_config


def lockstep(model, n, cond, seed, temperature=1.0, given=None):
    """Drive both engines over the same sub-pixels; return the largest logit gap and the images."""
    cfg = model.config
    images, start = sampling._check_given(model, given, n)
    cond = model.encode_condition(model.condition.broadcast(cond, n), n)
    naive = NaiveEngine(model, images.clone(), cond)
    cached = CachedEngine(model, images.clone(), cond, start)
    gen = torch.Generator().manual_seed(seed)
    gap = 0.0
    for k in range(start, cfg.num_subpixels):
        pixel, c = divmod(k, cfg.image_channels)
        i, j = divmod(pixel, cfg.width)
        a, b = naive.logits(i, j, c), cached.logits(i, j, c)
        gap = max(gap, (a - b).abs().max().item())
        values = choose(a, torch.rand(n, generator=gen, dtype=torch.float64), temperature)
        naive.commit(i, j, c, values)
        cached.commit(i, j, c, values)
    assert torch.equal(naive.images, cached.images)
    return gap, naive.images


@pytest.mark.parametrize("conditioning", ["none", "class", "vector", "spatial", "sketch", "image"])
@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("channels", [1, 3])
def test_cached_equals_naive(channels, kernel, conditioning):
    config = tiny_config(channels=channels, size=(5, 6), kernel=kernel, conditioning=conditioning,
                         first_kernel_size=7)
    model = random_model("gated", config, seed=kernel + channels)
    cond = example_condition(config, 3)
    # the logits of both paths agree at every step
    gap, _ = lockstep(model, 3, cond, seed=0)
    assert gap < 1e-10
    # and the public sampler draws identical images, for several seeds
    for seed in (0, 1, 2):
        naive = sample(model, 3, cond, seed=seed, method="naive")
        cached = sample(model, 3, cond, seed=seed, method="cached")
        assert torch.equal(naive, cached), f"seed {seed}"
        assert naive.shape == (3, channels, 5, 6)
        assert 0 <= int(naive.min()) and int(naive.max()) < config.levels


def test_cached_equals_naive_in_float32_with_a_deeper_model():
    config = tiny_config(channels=3, size=(6, 7), conditioning="class", n_layers=6, hidden_channels=24,
                         head_channels=24, first_kernel_size=7)
    model = random_model("gated", config, dtype=torch.float32)
    gap, _ = lockstep(model, 2, torch.tensor([1, 4]), seed=3)
    assert gap < 1e-4


def test_temperature_zero_takes_the_argmax_at_every_step():
    config = tiny_config(channels=3, conditioning="vector")
    model = random_model("gated", config)
    cond = example_condition(config, 2)
    greedy = sample(model, 2, cond, seed=0, temperature=0)
    assert torch.equal(greedy, sample(model, 2, cond, seed=99, temperature=0))  # no randomness left
    logits = model(greedy, cond)
    assert torch.equal(logits.argmax(dim=1), greedy)  # each value is the mode given its past


@pytest.mark.parametrize("temperature", [1e-12, 1e-3, 1e3, 1e30])
def test_extreme_temperatures_stay_valid(temperature):
    config = tiny_config(channels=3, levels=256)
    model = random_model("gated", config, dtype=torch.float32, std=1.0)
    images = sample(model, 2, seed=0, temperature=temperature)
    assert images.dtype == torch.long and 0 <= int(images.min()) and int(images.max()) < 256
    if temperature >= 1e3:  # nearly uniform: many distinct values
        assert images.unique().numel() > 50


def test_choose_is_inverse_cdf():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7]]))
    for u, expected in [(0.0, 0), (0.099, 0), (0.1001, 1), (0.299, 1), (0.3001, 2), (0.99999, 2)]:
        assert choose(logits, torch.tensor([u]), 1.0).item() == expected


def test_same_seed_same_images_and_first_image_independent_of_batch_size():
    config = tiny_config(channels=3, conditioning="class")
    model = random_model("gated", config)
    a = sample(model, 4, 2, seed=7)
    assert torch.equal(a, sample(model, 4, torch.tensor([2, 2, 2, 2]), seed=7))
    assert not torch.equal(a, sample(model, 4, 2, seed=8))
    assert torch.equal(a[:1], sample(model, 1, 2, seed=7))  # the noise is laid out per image


def test_same_seed_and_nearby_conditions_give_nearby_images():
    """The interpolation figure depends on it: the noise does not depend on the model's outputs."""
    config = tiny_config(channels=1, size=(8, 8), conditioning="vector", levels=16)
    model = random_model("gated", config, std=0.2)
    h = example_condition(config, 1)[0]
    base = sample(model, 1, h, seed=5)
    near = sample(model, 1, h + 1e-4, seed=5)
    far = sample(model, 1, h + 3.0, seed=5)
    assert (base == near).float().mean() > 0.95
    assert (base == far).float().mean() < (base == near).float().mean()


@pytest.mark.parametrize("method", ["naive", "cached"])
def test_completion_keeps_every_given_subpixel(method):
    config = tiny_config(channels=3, size=(6, 5), conditioning="class")
    model = random_model("gated", config)
    original = random_images(config, 2, seed=3)
    given = given_top_rows(original, 3)
    out = sample(model, 2, torch.tensor([0, 1]), seed=0, given=given, method=method)
    assert torch.equal(out[:, :, :3], original[:, :, :3])
    # a prefix that ends inside a pixel, after its R value, shared by both images
    given = given.clone()
    given[:, :, 3, :2] = original[:, :, 3, :2]
    given[:, 0, 3, 2] = original[:, 0, 3, 2]
    out = sample(model, 2, torch.tensor([0, 1]), seed=0, given=given, method=method)
    assert torch.equal(out[:, :, :3], original[:, :, :3])
    assert torch.equal(out[:, :, 3, :2], original[:, :, 3, :2]) and torch.equal(out[:, 0, 3, 2], original[:, 0, 3, 2])


def test_completion_cached_equals_naive_and_one_given_image_serves_all():
    config = tiny_config(channels=3, size=(6, 5), conditioning="spatial")
    model = random_model("gated", config)
    given = given_top_rows(random_images(config, 1)[0], 2)  # (C, H, W), broadcast to n
    cond = example_condition(config, 3)
    gap, _ = lockstep(model, 3, cond, seed=1, given=given)
    assert gap < 1e-10
    assert torch.equal(sample(model, 3, cond, seed=4, given=given, method="naive"),
                       sample(model, 3, cond, seed=4, given=given, method="cached"))


def test_naive_sampling_works_for_the_original_pixelcnn():
    config = tiny_config(channels=3, conditioning="class")
    model = random_model("original", config)
    a = sample(model, 2, 1, seed=0, method="naive")
    assert torch.equal(a, sample(model, 2, 1, seed=0, method="naive"))
    with pytest.raises(ValueError, match="needs a GatedPixelCNN"):
        sample(model, 2, 1, seed=0)


def test_stream_elapsed_counts_generation_only():
    """A slow-motion player pauses between events; the pause must not lower the reported rate. The
    clock is the test's own: generation takes 1 s per sub-pixel, each pause 100 s."""
    model = random_model("gated", tiny_config(channels=1, size=(4, 4)))
    now = [0.0]

    class Clock:
        def __call__(self) -> float:
            now[0] += 1.0  # read at the start and the end of each block: 1 s of generation per block
            return now[0]

    events = []
    for event in stream(model, 1, seed=0, every=4, clock=Clock()):
        events.append(event)
        now[0] += 100.0  # the player pauses
    assert len(events) == 4 and now[0] > 400
    assert [e.elapsed for e in events] == [1.0, 2.0, 3.0, 4.0], [e.elapsed for e in events]


def test_stream_reports_progress_and_ends_with_the_sample():
    config = tiny_config(channels=3, size=(4, 5), conditioning="class")
    model = random_model("gated", config)
    events = list(stream(model, 2, 3, seed=11, every=7))
    total = 3 * 4 * 5
    assert [e.done for e in events] == list(range(7, total, 7)) + [total]
    assert all(e.total == total for e in events) and events[-1].finished
    assert torch.equal(events[-1].images, sample(model, 2, 3, seed=11))
    assert all(b.elapsed >= a.elapsed for a, b in zip(events, events[1:]))
    for event in events:
        assert event.final.shape == (3, 4, 5) and int(event.final.sum()) == event.done
        # final sub-pixels already hold their final values; the others are still 0
        final = events[-1].images
        assert torch.equal(event.images[:, event.final], final[:, event.final])
        assert (event.images[:, ~event.final] == 0).all()
    # the default rate is one row
    assert len(list(stream(model, 1, 3, seed=0))) == 4


def test_closing_stream_stops_the_computation(monkeypatch):
    config = tiny_config(channels=3, size=(6, 6))
    model = random_model("gated", config)
    calls = []
    original = CachedEngine.logits
    monkeypatch.setattr(CachedEngine, "logits", lambda self, *a: calls.append(a) or original(self, *a))
    gen = stream(model, 1, seed=0, every=5)
    next(gen)
    next(gen)
    assert len(calls) == 10
    gen.close()
    assert inspect.getgeneratorstate(gen) == inspect.GEN_CLOSED
    assert len(calls) == 10
    assert torch.is_grad_enabled()  # the caller's autograd state is untouched between events


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "n must be a positive int"),
    (dict(n=-3), "n must be a positive int"),
    (dict(n=2.0), "n must be a positive int"),
    (dict(cond=torch.tensor([0, 1, 2])), r"shape \(2,\)"),
    (dict(cond=torch.tensor([0, 5])), "class ids must lie in"),
    (dict(cond=7), "class ids must lie in"),
    (dict(cond=None), "conditioned on 'class'"),
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"),
    (dict(method="fast"), "method must be one of"),
    (dict(given=torch.zeros(2, 3, 4, 4, dtype=torch.long)), "given must have shape"),
    (dict(given=torch.zeros(3, 5, 6)), "given must hold integers"),
    (dict(given=torch.full((3, 5, 6), 300)), "given values must lie"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    config = tiny_config(channels=3, conditioning="class")
    model = random_model("gated", config)
    args = dict(n=2, cond=torch.tensor([0, 1]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        sample(model, args.pop("n"), args.pop("cond"), seed=0, **args)


def test_given_must_be_a_raster_prefix():
    config = tiny_config(channels=1)
    model = random_model("gated", config)
    given = torch.full((1, 5, 6), -1)
    given[0, 2, 3] = 5  # a known pixel after unknown ones
    with pytest.raises(ValueError, match="raster prefix"):
        sample(model, 1, seed=0, given=given)


# ------------------------------------------------------------------------------------ the sketch prior
def prior_setup(conditioning="spatial", channels=3, seed=0):
    config = tiny_config(channels=channels, size=(5, 6), conditioning=conditioning, first_kernel_size=5)
    model = random_model("gated", config, seed=seed)
    sketch = torch.rand(3, channels, 5, 6, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    return model, example_condition(config, 3), sketch


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_a_sketch_prior_of_strength_zero_is_plain_sampling_bit_for_bit(guidance):
    model, cond, sketch = prior_setup()
    plain = sample(model, 3, cond, seed=5, guidance=guidance)
    held = sample(model, 3, cond, seed=5, guidance=guidance, prior=sampling.SketchPrior(sketch, 0.0))
    assert torch.equal(plain, held)


@pytest.mark.parametrize("guidance", [1.0, 2.5])
@pytest.mark.parametrize("conditioning", ["none", "class", "spatial"])
def test_sketch_prior_cached_equals_naive(conditioning, guidance):
    model, cond, sketch = prior_setup(conditioning)
    if conditioning == "none":
        guidance = 1.0
    prior = sampling.SketchPrior(sketch, 3.0)
    for seed in (0, 1):
        naive = sample(model, 3, cond, seed=seed, method="naive", guidance=guidance, prior=prior)
        cached = sample(model, 3, cond, seed=seed, method="cached", guidance=guidance, prior=prior)
        assert torch.equal(naive, cached)
    assert not torch.equal(cached, sample(model, 3, cond, seed=1, guidance=guidance))


def test_the_sketch_prior_adds_a_gaussian_log_density_to_the_guided_logits():
    """The product of experts, exactly: guided logits - strength (v - s)^2 / (2 sigma_1^2)."""
    model, cond, sketch = prior_setup("class")
    images, start = sampling._check_given(model, None, 3)
    h = model.encode_condition(cond, 3)
    strength = 2.0
    guided = sampling.build_engine(model, images.clone(), h, start, "naive", 2.0, None)
    held = sampling.build_engine(model, images.clone(), h, start, "naive", 2.0,
                                 sampling.SketchPrior(sketch, strength).checked(3, (3, 5, 6)))
    sigma = 255 / 8
    levels = torch.arange(256, dtype=torch.float64)
    for i, j, c in ((0, 0, 0), (2, 3, 1), (4, 5, 2)):
        expected = guided.logits(i, j, c) - strength * (levels - sketch[:, c, i, j, None] * 255) ** 2 / (2 * sigma ** 2)
        assert torch.allclose(held.logits(i, j, c), expected, atol=1e-9)


def test_a_strong_prior_draws_the_sketch_and_a_weaker_one_varies_more():
    model, cond, sketch = prior_setup("spatial")
    one = sketch[:1].expand(3, -1, -1, -1)
    distance = {}
    for strength in (0.0, 1.0, 50.0):
        drawn = sample(model, 3, cond, seed=0, prior=sampling.SketchPrior(one, strength)).double()
        distance[strength] = (drawn - one * 255).abs().mean().item()
    assert distance[50.0] < 6 < distance[1.0] < distance[0.0]


def test_the_sketch_prior_keeps_the_images_causal():
    """A sub-pixel's value depends only on what comes before it and on the sketch at its own place:
    changing the sketch after a sub-pixel leaves the images before it unchanged."""
    model, cond, sketch = prior_setup("spatial")
    base = sample(model, 3, cond, seed=2, prior=sampling.SketchPrior(sketch, 4.0))
    order = sampling.raster_order(3, 5, 6)
    for k in (0, 7, 44, 89):
        changed = sketch.clone()
        changed[:, order >= k] = 1 - changed[:, order >= k]
        other = sample(model, 3, cond, seed=2, prior=sampling.SketchPrior(changed, 4.0))
        assert torch.equal(base[:, order < k], other[:, order < k])
        if k < 89:
            assert not torch.equal(base, other)


@pytest.mark.parametrize("prior, message", [
    (sampling.SketchPrior(torch.rand(3, 5, 6), -1.0), "strength"),
    (sampling.SketchPrior(torch.rand(3, 5, 6), float("nan")), "strength"),
    (sampling.SketchPrior(torch.rand(3, 5, 5), 1.0), "shape"),
    (sampling.SketchPrior(torch.rand(2, 3, 5, 6), 1.0), "shape"),
    (sampling.SketchPrior(torch.full((3, 5, 6), float("inf")), 1.0), "finite"),
    (sampling.SketchPrior(torch.zeros(3, 5, 6, dtype=torch.long), 1.0), "floats"),
])
def test_a_bad_sketch_prior_is_refused_before_any_work(prior, message):
    model, cond, _ = prior_setup()
    with pytest.raises(ValueError, match=message):
        sample(model, 3, cond, seed=0, prior=prior)


# ------------------------------------------------------------------------------------ seeds
def test_any_python_int_is_a_seed_taken_modulo_two_to_the_64():
    model, cond, _ = prior_setup("class")
    huge = 99999999999999999999
    assert torch.equal(sample(model, 2, cond[:2], seed=huge), sample(model, 2, cond[:2], seed=huge % 2 ** 64))
    assert torch.equal(sample(model, 2, cond[:2], seed=-1), sample(model, 2, cond[:2], seed=2 ** 64 - 1))
    assert torch.equal(sample(model, 2, cond[:2], seed=10 ** 40), sample(model, 2, cond[:2], seed=10 ** 40))
    for bad in (1.5, "3", True, 1e30):
        with pytest.raises(ValueError, match="seed must be an int"):
            sample(model, 2, cond[:2], seed=bad)


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_an_image_model_with_its_sketch_prior_samples_its_own_likelihood_cached_equals_naive(guidance):
    """sketch_prior: the prior of the condition image is part of the model: its logits are the
    network's plus the prior's log-density, and both engines sample that, guided or not, with
    the sampler's own prior on top."""
    config = tiny_config(channels=3, size=(5, 6), conditioning="image", sketch_prior=2.0, learned_null=True)
    model = random_model("gated", config, seed=3)
    plain = random_model("gated", config.replace(sketch_prior=0.0), seed=3)
    images = example_condition(config, 3)
    x = random_images(config, 3)
    expected = plain(x, images) + sampling.sketch_log_density(images, 256, 2.0).permute(0, 4, 1, 2, 3)
    assert torch.allclose(model(x, images), expected, atol=1e-9)
    extra = sampling.SketchPrior(torch.rand(3, 3, 5, 6, dtype=torch.float64), 1.5)
    for prior in (None, extra):
        naive = sample(model, 3, images, seed=4, method="naive", guidance=guidance, prior=prior)
        cached = sample(model, 3, images, seed=4, method="cached", guidance=guidance, prior=prior)
        assert torch.equal(naive, cached)
    assert not torch.equal(cached, sample(plain, 3, images, seed=4, guidance=guidance, prior=extra))
    with pytest.raises(ValueError, match="needs conditioning='image'"):
        tiny_config(conditioning="spatial", sketch_prior=1.0)


# ------------------------------------------------------------------------------------ precision
def one_subpixel_model(dtype):
    """A 1x1 grey model whose single sub-pixel has an uneven 256-way distribution (largest p ~0.04)."""
    config = tiny_config(channels=1, size=(1, 1), conditioning="class")
    model = random_model("gated", config, seed=7, dtype=torch.float32)
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.mul_(2.0)
    return model.to(dtype)


def test_a_bf16_model_samples_its_own_distribution_and_scores_like_float32():
    """The choice of a sub-pixel is made in float32 whatever the model's dtype: 20,000 draws from a bf16
    model match its softmax within sampling noise and reach the levels an fp32 choice reaches (a bf16
    cumsum over 256 levels skipped about half of them), and bits/dim are taken from float32 logits."""
    model = one_subpixel_model(torch.bfloat16)
    cond = torch.zeros(20000, dtype=torch.long)
    with torch.no_grad():
        probs = torch.softmax(model(torch.zeros(1, 1, 1, 1, dtype=torch.long), cond[:1])[0, :, 0, 0, 0].float(), 0)
    drawn = sample(model, 20000, cond, seed=0)[:, 0, 0, 0]
    counts = torch.bincount(drawn, minlength=256).double() / len(drawn)
    total_variation = 0.5 * (counts - probs.double()).abs().sum().item()
    assert total_variation < 0.07, total_variation  # noise alone: 0.04 at 20,000 draws; a bf16 choice: 0.14
    assert int((counts > 0).sum()) >= int((probs > 1e-3).sum())  # fp32: all 256 levels; a bf16 choice: 191
    wide = one_subpixel_model(torch.bfloat16).float()  # the same bf16-rounded weights, computed in float32
    x = torch.randint(0, 256, (64, 1, 1, 1), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        narrow_bits = model.bits_per_dim(x, cond[:64])
        assert narrow_bits.dtype == torch.float32
        wide_bits = wide.bits_per_dim(x, cond[:64])  # bf16 arithmetic in the network: within 0.5%
        assert ((narrow_bits - wide_bits).abs() / wide_bits).max() < 0.005


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_cached_equals_naive_and_bf16_samples_its_distribution():
    config = tiny_config(channels=3, size=(5, 6), conditioning="class", first_kernel_size=5)
    model = random_model("gated", config, seed=1, dtype=torch.float32).cuda()
    cond = torch.tensor([0, 3, 4]).cuda()
    assert torch.equal(sample(model, 3, cond, seed=2, method="naive"), sample(model, 3, cond, seed=2))
    narrow = one_subpixel_model(torch.bfloat16).cuda()
    drawn = sample(narrow, 20000, torch.zeros(20000, dtype=torch.long).cuda(), seed=0)
    assert drawn.is_cuda and int(torch.unique(drawn).numel()) > 50
