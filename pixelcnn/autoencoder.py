"""The PixelCNN auto-encoder of the paper's section 3.4: an encoder compresses an image into a code h
of m numbers, and a conditional PixelCNN decodes it. Both are trained end to end on the decoder's
negative log-likelihood.

`ConvEncoder` is a small strided convolutional network; `PixelCNNAutoEncoder` joins it to a
`GatedPixelCNN` conditioned on h ("vector" or "spatial") and saves as a composite, one sub-folder
per part, that `pixelcnn.from_pretrained` loads as one object.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ImageShape
from .hub import CompositeMixin, PretrainedMixin
from .model import _PixelCNNBase


@dataclass(frozen=True)
class EncoderConfig(ImageShape):
    """image_channels, image_size (int or (H, W)), levels: the images it reads; code_dim: m, the
    length of the code; channels: width of the first convolution (doubled at each stride)."""

    image_channels: int = 3
    image_size: int | tuple[int, int] = 32
    levels: int = 256
    code_dim: int = 10
    channels: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.image_size, list):
            object.__setattr__(self, "image_size", tuple(self.image_size))
        if self.image_channels not in (1, 3) or self.code_dim < 1 or self.channels < 1 or self.levels < 2:
            raise ValueError(f"EncoderConfig: invalid {self}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if isinstance(self.image_size, tuple):
            out["image_size"] = list(self.image_size)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncoderConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


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
        layers, channels, size = [], config.image_channels, min(config.height, config.width)
        width = config.channels
        height_out, width_out = config.height, config.width
        while size > 4:
            layers.append(nn.Conv2d(channels, width, 4, stride=2, padding=1))
            channels, width, size = width, width * 2, size // 2
            height_out, width_out = height_out // 2, width_out // 2
        self.convs = nn.ModuleList(layers)
        self.to_code = nn.Linear(channels * height_out * width_out, config.code_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(self.to_code.weight.dtype) * (2.0 / (self.config.levels - 1)) - 1.0
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return self.to_code(x.flatten(1))


class PixelCNNAutoEncoder(nn.Module, CompositeMixin):
    """An encoder and a PixelCNN decoder conditioned on its code (the paper's Figure 6 model).

    `loss(x)` is the decoder's bits/dim given the code of x; gradients reach every encoder weight.
    The decoder is an ordinary conditional PixelCNN: `pixelcnn.sample(ae.decoder, n, ae.encode(x))`
    draws images that share x's code.
    """

    architecture = "pixelcnn-autoencoder"
    parts = ("encoder", "decoder")
    condition_field = None  # the condition comes from the images themselves

    def __init__(self, encoder: ConvEncoder, decoder: _PixelCNNBase) -> None:
        super().__init__()
        if decoder.config.cond_features != encoder.config.code_dim:
            raise ValueError(f"the decoder reads conditions of {decoder.config.cond_features} numbers but the "
                             f"encoder makes codes of {encoder.config.code_dim}")
        self.encoder, self.decoder = encoder, decoder

    @property
    def config(self):
        """The decoder's config: the images this model reads and writes."""
        return self.decoder.config

    @property
    def device(self) -> torch.device:
        return self.decoder.device

    def encode(self, x: Tensor) -> Tensor:
        """Integer images (B, C, H, W) -> codes h (B, m), a valid condition for the decoder."""
        self.decoder.check_images(x)
        return self.encoder(x)

    def forward(self, x: Tensor, cond: Any = None) -> Tensor:
        """Decoder logits (B, levels, C, H, W) given the code of x (or a given code `cond`)."""
        return self.decoder(x, self.encode(x) if cond is None else cond)

    def loss(self, x: Tensor, cond: Any = None) -> Tensor:
        return self.decoder.loss(x, self.encode(x) if cond is None else cond)

    def bits_per_dim(self, x: Tensor, cond: Any = None) -> Tensor:
        return self.decoder.bits_per_dim(x, self.encode(x) if cond is None else cond)
