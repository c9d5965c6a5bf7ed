"""Which input sub-pixels can each output see? Measured on the real model code, never drawn by hand.

Two measurements:
  * `perturbation_influence`: change one input sub-pixel at a time through the public integer
    interface and record how much every output moves. This is the causality contract itself.
  * `gradient_field`: |d logits(target) / d input| by autograd on `forward_scaled`, averaged over
    random probe images. Cheap enough to run on every click in the app.

Sub-pixels are ordered as the model generates them: raster index (i * W + j) * C + c.
"""

import torch
from torch import Tensor

from .config import PixelCNNConfig
from .layers import raster_order
from .model import ARCHITECTURES, GatedPixelCNN, PixelCNN, build_model

__all__ = ["random_model", "perturbation_influence", "gradient_field", "dependency_map", "blind_spot",
           "field_by_depth", "raster_order"]


def random_model(architecture: str, config: PixelCNNConfig, seed: int = 0, std: float | None = 0.3,
                 dtype: torch.dtype = torch.float64) -> GatedPixelCNN | PixelCNN:
    """A model of the given shape with every parameter drawn from N(0, std^2).

    Every parameter is random (none left at zero), so no connection hides behind a zero weight.
    float64 makes a true zero influence exactly zero, far below any real influence.
    std=None scales each weight's std by 1/sqrt(fan-in) (biases 0.1): deep models then neither
    saturate their gates nor overflow, so a gradient that is zero is zero because no path exists.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}")
    torch.manual_seed(seed)
    model = build_model(config.replace(architecture=architecture)).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            scale = std if std is not None else (p[0].numel() ** -0.5 if p.dim() > 1 else 0.1)
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return model.eval()


@torch.no_grad()
def perturbation_influence(model: GatedPixelCNN | PixelCNN, x: Tensor, cond: Tensor | None = None,
                           chunk_size: int = 256, seed: int = 0) -> Tensor:
    """How far each output moves when one input sub-pixel changes.

    x: one integer image (1, C, H, W); cond: its condition with batch size 1, or None.
    Returns (N, C, H, W) with N = C * H * W: entry [k, c, i, j] is the largest change of any logit
    at output sub-pixel (i, j, c) when input sub-pixel k (raster order) takes another random value.
    """
    cfg = model.config
    model.check_images(x)
    c, height, width = cfg.image_channels, cfg.height, cfg.width
    order = raster_order(c, height, width).flatten()
    position = torch.empty_like(order)
    position[order] = torch.arange(order.numel())  # raster index -> flat (c, i, j) index
    gen = torch.Generator().manual_seed(seed)
    base_flat = x.reshape(-1).cpu()
    # a new value for every sub-pixel, guaranteed different from the old one
    shift = torch.randint(1, cfg.levels, (order.numel(),), generator=gen)
    device = x.device
    h = model.encode_condition(cond, 1)  # encoded once, (1, F) or None
    base_logits = model(x, h)[0]
    out = torch.empty(order.numel(), c, height, width, dtype=base_logits.dtype)
    for start in range(0, order.numel(), chunk_size):
        ks = torch.arange(start, min(start + chunk_size, order.numel()))
        batch = base_flat.repeat(len(ks), 1)
        flat_pos = position[ks]
        batch[torch.arange(len(ks)), flat_pos] = (base_flat[flat_pos] + shift[ks]) % cfg.levels
        batch_h = None if h is None else h.expand(len(ks), -1)
        logits = model(batch.view(len(ks), c, height, width).to(device), batch_h)
        out[ks] = (logits - base_logits).abs().amax(dim=1).cpu()
    return out


def gradient_field(model: GatedPixelCNN | PixelCNN, target: tuple[int, int, int], cond: Tensor | None = None,
                   probes: int = 4, seed: int = 0) -> Tensor:
    """Sum over probe images of |gradient| of the target's logits with respect to the input.

    target: (row, column, channel) of the output sub-pixel. cond: condition with batch size 1, or None.
    Returns (C, H, W), zero exactly where the input cannot influence the target.
    Random probe images and random logit weights avoid accidental zeros.
    """
    cfg = model.config
    row, col, channel = target
    if not (0 <= row < cfg.height and 0 <= col < cfg.width and 0 <= channel < cfg.image_channels):
        raise ValueError(f"target {target} lies outside the {cfg.height}x{cfg.width}x{cfg.image_channels} image")
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(probes, cfg.image_channels, cfg.height, cfg.width, generator=gen) * 2 - 1)
    x = x.to(model.device, model.dtype).requires_grad_(True)
    weights = torch.randn(probes, cfg.levels, generator=gen).to(model.device, model.dtype)
    h = model.encode_condition(cond, 1)
    batch_h = None if h is None else h.expand(probes, -1)
    logits = model.forward_scaled(x, batch_h)[:, :, channel, row, col]  # (probes, levels)
    (grad,) = torch.autograd.grad((logits * weights).sum(), x)
    return grad.abs().sum(0).detach()


def dependency_map(model: GatedPixelCNN | PixelCNN, target: tuple[int, int, int], cond: Tensor | None = None,
                   probes: int = 4, seed: int = 0) -> Tensor:
    """Input sub-pixels that can influence the target output: (C, H, W) bool."""
    return gradient_field(model, target, cond, probes, seed) > 0


def blind_spot(model: GatedPixelCNN | PixelCNN, target: tuple[int, int, int], cond: Tensor | None = None,
               probes: int = 4, seed: int = 0) -> Tensor:
    """Sub-pixels before the target in generation order that cannot influence it: (C, H, W) bool.

    Empty for the Gated PixelCNN once it is deep enough; a wedge up and to the right for the
    original PixelCNN, whatever its depth.
    """
    cfg = model.config
    row, col, channel = target
    order = raster_order(cfg.image_channels, cfg.height, cfg.width)
    earlier = order < (row * cfg.width + col) * cfg.image_channels + channel
    seen = dependency_map(model, target, cond, probes, seed).cpu()
    return earlier & ~seen


def field_by_depth(architecture: str, config: PixelCNNConfig, target: tuple[int, int, int],
                   seed: int = 0) -> list[Tensor]:
    """The receptive field after 1, 2, ..., n_layers layers, each from a random model that deep.

    Returns one (C, H, W) bool map per depth: how the field grows layer by layer.
    """
    fields = []
    for depth in range(1, config.n_layers + 1):
        shallow = config.replace(n_layers=depth)
        fields.append(dependency_map(random_model(architecture, shallow, seed, std=None), target))
    return fields
