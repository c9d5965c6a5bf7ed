"""Conditioning networks: turn a user's condition into the h that every layer adds as a bias.

* "class":   class ids (B,) int            -> one-hot h (B, num_classes)
* "vector":  embeddings (B, cond_dim) float -> h unchanged (B, cond_dim), e.g. a face embedding
* "spatial": vectors (B, cond_dim) float    -> s = m(h) (B, spatial_channels, H, W) through a
             deconvolution network, for the paper's location-dependent bias V * s (eq. 5)
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import PixelCNNConfig


class SpatialConditionNet(nn.Module):
    """m(h): a linear map to a coarse grid, then stride-2 transposed convolutions up to H x W.

    (B, cond_dim) -> (B, spatial_channels, H, W). Works for any H, W (the last map is cropped).
    """

    def __init__(self, cond_dim: int, channels: int, height: int, width: int) -> None:
        super().__init__()
        n_up = 0
        while n_up < 3 and min(height, width) >= 4 * 2 ** (n_up + 1):
            n_up += 1
        self.channels, self.height, self.width = channels, height, width
        self.grid = (math.ceil(height / 2 ** n_up), math.ceil(width / 2 ** n_up))
        self.project = nn.Linear(cond_dim, channels * self.grid[0] * self.grid[1])
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1) for _ in range(n_up))

    def forward(self, h: Tensor) -> Tensor:
        s = self.project(h).view(h.shape[0], self.channels, *self.grid)
        for up in self.upsample:
            s = up(F.relu(s))
        return s[:, :, : self.height, : self.width]


class ConditionEncoder(nn.Module):
    """Checks a user's condition and encodes it as h for the layers (see the module docstring)."""

    def __init__(self, config: PixelCNNConfig) -> None:
        super().__init__()
        self.config = config
        self.spatial_net = None
        if config.conditioning == "spatial":
            self.spatial_net = SpatialConditionNet(config.cond_dim, config.spatial_channels,
                                                   config.height, config.width)

    def forward(self, cond: Tensor | None, batch_size: int, device: torch.device,
                dtype: torch.dtype) -> Tensor | None:
        cfg = self.config
        mode = cfg.conditioning
        if mode == "none":
            if cond is not None:
                raise ValueError("this model is unconditional (conditioning='none'); pass cond=None")
            return None
        if cond is None:
            raise ValueError(f"this model is conditioned on {mode!r}; pass cond "
                             + ("class ids of shape (B,)" if mode == "class"
                                else f"vectors of shape (B, {cfg.cond_dim})"))
        cond = torch.as_tensor(cond, device=device)
        if mode == "class":
            if cond.dtype.is_floating_point or cond.dtype == torch.bool or cond.shape != (batch_size,):
                raise ValueError(f"class conditioning needs integer class ids of shape ({batch_size},), "
                                 f"got {tuple(cond.shape)} {cond.dtype}")
            if cond.numel() and (int(cond.min()) < 0 or int(cond.max()) >= cfg.num_classes):
                raise ValueError(f"class ids must lie in [0, {cfg.num_classes}), "
                                 f"got values from {int(cond.min())} to {int(cond.max())}")
            return F.one_hot(cond.long(), cfg.num_classes).to(dtype)
        if cond.shape != (batch_size, cfg.cond_dim):
            raise ValueError(f"{mode} conditioning needs a float tensor of shape ({batch_size}, {cfg.cond_dim}), "
                             f"got {tuple(cond.shape)}")
        h = cond.to(dtype)
        if not torch.isfinite(h).all():
            raise ValueError("the conditioning vector contains NaN or inf")
        return self.spatial_net(h) if self.spatial_net is not None else h
