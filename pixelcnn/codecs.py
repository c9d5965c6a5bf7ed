"""The codecs: `ConvEncoder` (image -> code of m numbers) and its mirror `DeconvDecoder` (code ->
image in [0, 1]), with their `EncoderConfig`.

They sit below `conditioning` (a "sketch" condition draws with a `DeconvDecoder`) and above only
`shapes` and `hub`; the auto-encoders that join them to a PixelCNN live in `autoencoder`.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .hub import PretrainedMixin
from .shapes import ImageShape, SavedConfig


@dataclass(frozen=True)
class EncoderConfig(SavedConfig, ImageShape):
    """image_channels, image_size (int or (H, W)), levels: the images it reads; code_dim: m, the
    length of the code; channels: width of the first convolution (doubled at each stride).

    `DeconvDecoder`, the encoder's mirror image, takes the same config."""

    image_channels: int = 3
    image_size: int | tuple[int, int] = 32
    levels: int = 256
    code_dim: int = 10
    channels: int = 32

    def __post_init__(self) -> None:
        self.tuple_image_size()
        if self.image_channels not in (1, 3) or self.code_dim < 1 or self.channels < 1 or self.levels < 2:
            raise ValueError(f"EncoderConfig: invalid {self}")


def code_network_shape(config: EncoderConfig) -> tuple[list[int], tuple[int, int]]:
    """(widths of the stride-2 convolutions, (h, w) of the smallest grid): halve the image until
    it is at most 4 on its short side, doubling `channels` at each stride."""
    widths, size, grid = [], min(config.height, config.width), (config.height, config.width)
    while size > 4:
        widths.append(config.channels * 2 ** len(widths))
        size, grid = size // 2, (grid[0] // 2, grid[1] // 2)
    return widths, grid


class ConvEncoder(nn.Module, PretrainedMixin):
    """Integer images (B, C, H, W) -> codes h (B, code_dim).

    Stride-2 4x4 convolutions halve the image until it is at most 4x4 (3 times for 32x32), then a
    linear map gives the code.
    """

    architecture = "conv-encoder"
    config_class = EncoderConfig

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        widths, grid = code_network_shape(config)
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)
                                   for c_in, c_out in zip([config.image_channels, *widths[:-1]], widths))
        self.to_code = nn.Linear(widths[-1] * grid[0] * grid[1], config.code_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.config.scale(x, self.to_code.weight.dtype)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return self.to_code(x.flatten(1))


class DeconvDecoder(nn.Module, PretrainedMixin):
    """Codes h (B, code_dim) -> images scaled to [0, 1] (B, C, H, W): `ConvEncoder` in reverse.

    A linear map to the encoder's smallest grid, then stride-2 4x4 transposed convolutions; sizes
    that do not halve evenly (28 -> 3 -> 24) are resized to H x W at the end.
    """

    architecture = "deconv-decoder"
    config_class = EncoderConfig

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        widths, self.grid = code_network_shape(config)
        self.from_code = nn.Linear(config.code_dim, widths[-1] * self.grid[0] * self.grid[1])
        outs = [*reversed(widths[:-1]), config.image_channels]
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
                                     for c_in, c_out in zip(reversed(widths), outs))

    def forward(self, h: Tensor) -> Tensor:
        x = self.from_code(h).view(h.shape[0], -1, *self.grid)
        for k, deconv in enumerate(self.deconvs):
            x = deconv(F.leaky_relu(x, 0.2) if k else x)
        if x.shape[-2:] != (self.config.height, self.config.width):
            x = F.interpolate(x, size=(self.config.height, self.config.width), mode="bilinear", align_corners=False)
        return torch.sigmoid(x)
