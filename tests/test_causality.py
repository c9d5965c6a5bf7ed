"""The autoregressive contract, proven on randomised models for every sub-pixel.

Output sub-pixel k (raster order: row, column, then R, G, B) may depend on input sub-pixels < k
only. Every parameter is random (no zero-initialised layer can hide a leak) and the models run in
float64, so "no influence" is exactly zero while real influence is far above the threshold.
"""

import pytest
import torch

from pixelcnn.receptive_field import (blind_spot, dependency_map, perturbation_influence, random_model,
                                      raster_order)

from conftest import example_condition, random_images, tiny_config

ZERO = 1e-10  # float64: a structural zero stays far below this; real influence is far above it


def causal_violations(model, x, cond):
    """(leak, influence): the largest output change at or before a perturbed sub-pixel, and after it."""
    cfg = model.config
    influence = perturbation_influence(model, x, cond)  # (N in raster order, C, H, W)
    out_order = raster_order(cfg.image_channels, cfg.height, cfg.width).flatten()
    in_order = torch.arange(out_order.numel())
    later = out_order[None, :] > in_order[:, None]  # output strictly after the perturbed input
    flat = influence.flatten(1)
    return flat[~later].max().item(), flat[later].max().item()


@pytest.mark.parametrize("conditioning", ["none", "class", "vector", "spatial", "sketch", "image"])
@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("architecture", ["gated", "original"])
def test_no_output_sees_its_own_or_a_later_subpixel(architecture, channels, kernel, conditioning):
    config = tiny_config(channels=channels, size=(5, 6), kernel=kernel, conditioning=conditioning)
    model = random_model(architecture, config, seed=kernel)
    x = random_images(config, 1, seed=1)
    leak, influence = causal_violations(model, x, example_condition(config, 1))
    assert leak < ZERO, f"output changed by {leak} when an input at or after it changed"
    assert influence > 1e-3, "the test is vacuous: no input influenced any later output"


@pytest.mark.parametrize("architecture", ["gated", "original"])
def test_an_image_model_with_its_sketch_prior_stays_causal(architecture):
    config = tiny_config(channels=3, size=(5, 6), conditioning="image", sketch_prior=3.0)
    model = random_model(architecture, config)
    leak, influence = causal_violations(model, random_images(config, 1, seed=2), example_condition(config, 1))
    assert leak < ZERO and influence > 1e-3


@pytest.mark.parametrize("architecture", ["gated", "original"])
def test_causal_with_binary_levels_and_tall_images(architecture):
    config = tiny_config(channels=1, size=(7, 3), kernel=5, levels=2, n_layers=4)
    model = random_model(architecture, config)
    leak, influence = causal_violations(model, random_images(config, 1), None)
    assert leak < ZERO and influence > 1e-3


@pytest.mark.parametrize("architecture", ["gated", "original"])
def test_causal_with_uneven_colour_groups(architecture):
    """p = 10 and a head of 7 split into R, G, B groups of unequal size."""
    config = tiny_config(channels=3, size=(4, 5), hidden_channels=10, head_channels=7)
    leak, influence = causal_violations(random_model(architecture, config), random_images(config, 1), None)
    assert leak < ZERO and influence > 1e-3


def test_leak_detector_catches_a_broken_mask():
    """If the current-pixel colour mask were wrong, the test above must fail."""
    config = tiny_config(channels=3, size=(4, 4))
    model = random_model("gated", config)
    model.layers[0].horizontal_mask.fill_(1.0)  # mask A removed: R now sees its own value
    leak, _ = causal_violations(model, random_images(config, 1), None)
    assert leak > 1e-3

    model = random_model("original", config)
    model.blocks[0].conv.mask.fill_(1.0)  # the whole k x k kernel, future included
    leak, _ = causal_violations(model, random_images(config, 1), None)
    assert leak > 1e-3


@pytest.mark.parametrize("architecture", ["gated", "original"])
def test_images_in_a_batch_do_not_influence_each_other(architecture):
    config = tiny_config(channels=3, conditioning="class")
    model = random_model(architecture, config)
    x = random_images(config, 3)
    cond = example_condition(config, 3)
    with torch.no_grad():
        before = model(x, cond)
        x2 = x.clone()
        x2[1] = (x2[1] + 17) % config.levels
        cond2 = cond.clone()
        cond2[1] = (cond2[1] + 1) % config.num_classes
        after = model(x2, cond2)
    assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
    assert not torch.allclose(before[1], after[1])


def test_gated_pixelcnn_has_no_blind_spot():
    """Deep enough, every earlier sub-pixel of an 8x8x3 image reaches the last sub-pixel (and others)."""
    config = tiny_config(channels=3, size=(8, 8), kernel=3, n_layers=12)
    model = random_model("gated", config)
    for target in [(7, 7, 2), (7, 2, 2), (4, 0, 1), (6, 5, 0)]:
        assert not blind_spot(model, target).any(), f"blind spot at {target}"
    # The same, through the integer interface: perturbing any earlier sub-pixel moves the last output.
    influence = perturbation_influence(model, random_images(config, 1), None)
    last = influence[:-1, 2, 7, 7]  # every input before the last sub-pixel
    assert (last > ZERO).all()


@pytest.mark.parametrize("n_layers", [10, 20])
def test_original_pixelcnn_has_a_blind_spot_however_deep(n_layers):
    """Deep enough to reach the top row (>= 8 layers), yet a wedge stays blind at any depth."""
    config = tiny_config(channels=3, size=(8, 8), kernel=3, n_layers=n_layers)
    model = random_model("original", config)
    target = (7, 2, 2)
    blind = blind_spot(model, target).any(0)
    # With 3x3 masks one layer reaches one row up and at most one column right, so a pixel d rows
    # up and e > d columns right is never reached: the wedge of the paper's Figure 1.
    row, col = target[:2]
    wedge = torch.zeros(8, 8, dtype=torch.bool)
    for d in range(1, row + 1):
        wedge[row - d, col + d + 1:] = True
    assert torch.equal(blind, wedge)
    # Everything outside the wedge and before the target is seen.
    seen = dependency_map(model, target).any(0)
    assert seen[:row][~wedge[:row]].all() and seen[row, :col].all()
