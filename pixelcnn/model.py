"""The models: `GatedPixelCNN` (the paper's Figure 2) and the original masked `PixelCNN` baseline.

Both map integer images x (B, C, H, W) in [0, levels) to logits (B, levels, C, H, W), where the
logits at sub-pixel (i, j, c) depend only on the sub-pixels before it in raster order
(rows, then columns, then R, G, B). p(x) is the product of the softmaxes at every sub-pixel.
"""

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .conditioning import build_condition
from .config import ARCHITECTURES, PixelCNNConfig
from .hub import PretrainedMixin
from .layers import ColourMaskedConv1x1, ConditionBias, GatedLayer, MaskedConv2d, OutputHead

def as_wide(logits: Tensor) -> Tensor:
    """Logits in float32, or as they are when wider (float64): a softmax over 256 levels in bf16 or
    fp16 loses the small probabilities that likelihoods are made of."""
    return logits if logits.dtype == torch.float64 else logits.float()


def build_model(config: PixelCNNConfig) -> "_PixelCNNBase":
    """The model that `config.architecture` names, with freshly initialised weights."""
    return ARCHITECTURES[config.architecture](config)


class _PixelCNNBase(nn.Module, PretrainedMixin, ABC):
    """What both models share: input checks, conditioning, likelihoods, the loss and Hub I/O.

    Building a class directly sets the config's architecture to that class's.
    """

    config_class = PixelCNNConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.architecture:
            ARCHITECTURES[cls.architecture] = cls

    def __init__(self, config: PixelCNNConfig) -> None:
        super().__init__()
        if not isinstance(config, PixelCNNConfig):
            raise TypeError(f"expected a PixelCNNConfig, got {type(config).__name__}")
        if config.architecture != self.architecture:
            config = config.replace(architecture=self.architecture)
        self.config = config
        self.condition = build_condition(config)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def condition_field(self) -> str | None:
        """The field of a data batch that holds this model's condition (`ImageDataset.batch`), or None."""
        return self.condition.batch_field

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # ------------------------------------------------------------------ inputs
    def check_images(self, x: Tensor) -> None:
        """Raise `ValueError` unless x is an integer image batch (B, C, H, W) in [0, levels)."""
        self.config.check_images(x)

    def scale(self, x: Tensor) -> Tensor:
        """Integer images -> floats in [-1, 1], the network's input (B, C, H, W)."""
        return self.config.scale(x, self.dtype)

    def encode_condition(self, cond: Any, batch_size: int) -> Tensor | None:
        """A raw condition (class ids, vectors) or h -> validated h (B, F) on the model, or None.

        Pass the result anywhere a condition goes: it gives the same logits and samples as `cond`.
        """
        return self.condition.encode(cond, batch_size, device=self.device, dtype=self.dtype)

    def condition_input(self, cond: Any, batch_size: int) -> Tensor | None:
        """What every layer's V reads: h (B, F), the map m(h) (B, S, H, W) for spatial, or None."""
        return self.condition.layer_input(self.encode_condition(cond, batch_size))

    # ------------------------------------------------------------------ the network
    def forward(self, x: Tensor, cond: Any = None) -> Tensor:
        """Integer images (B, C, H, W) in [0, levels) -> logits (B, levels, C, H, W).

        cond: a raw condition or its encoded h (see `pixelcnn.conditioning`).
        Each model also has `forward_scaled(x_scaled, cond)`, the same on float images already
        scaled to [-1, 1]; it is differentiable in its input, which `pixelcnn.receptive_field`
        uses to find the pixels that each output can see.
        """
        self.check_images(x)
        return self.forward_scaled(self.scale(x), cond)

    def forward_scaled(self, x_scaled: Tensor, cond: Any = None) -> Tensor:
        """The logits (B, levels, C, H, W) of float images already scaled to [-1, 1], for a raw
        condition or h (validated)."""
        return self.logits_of(x_scaled, self.encode_condition(cond, x_scaled.shape[0]))

    @abstractmethod
    def logits_of(self, x_scaled: Tensor, h: Tensor | None) -> Tensor:
        """The network itself: scaled images and an encoded, valid h (or None) -> logits; each
        architecture defines it."""

    def with_prior(self, logits: Tensor, h: Tensor | None) -> Tensor:
        """The logits (B, levels, C, H, W), plus the sketch prior of the condition when the model has
        one (`PixelCNNConfig.sketch_prior`)."""
        prior = self.condition.log_prior(h)
        return logits if prior is None else logits + prior.to(logits.dtype)

    def complete_state(self, state: dict[str, Any]) -> dict[str, Any]:
        key = "condition.null_h"  # saved before the null condition existed
        if self.condition.width and key not in state:
            state = {**state, key: self.condition.default_null(state, "condition.")}
        return state

    # ------------------------------------------------------------------ likelihoods
    def loss(self, x: Tensor, cond: Any = None, *, cond_dropout: float = 0.0, validate: bool = True) -> Tensor:
        """The training objective: mean negative log-likelihood in bits/dim over the batch, a scalar.

        cond_dropout: the share of images whose condition is replaced by the null (`Condition.drop`),
        so that the model also learns p(x | null), the unconditional model that guidance needs.
        validate: check the images and the condition (each check reads values back from the device);
            the trainer passes False for data it checked when it loaded them, so that a step never
            waits for the device and compiles to one graph.
        """
        if validate:
            self.check_images(x)
            h = self.encode_condition(cond, x.shape[0])
        else:
            h = self.condition.trusted(cond, self.dtype)
        if cond_dropout > 0:
            h = self.condition.drop(h, cond_dropout)
        logits = self.logits_of(self.scale(x), h)
        return F.cross_entropy(as_wide(logits), x.long()) / math.log(2)

    def log_prob(self, x: Tensor, cond: Any = None) -> Tensor:
        """log p(x | cond) in nats, one value per image: (B,)."""
        logits = self(x, cond)  # scored in float32 (or wider) whatever the model's dtype
        return -F.cross_entropy(as_wide(logits), x.long(), reduction="none").flatten(1).sum(1)

    def bits_per_subpixel(self, x: Tensor, cond: Any = None) -> Tensor:
        """-log2 p(x_k | x_<k, cond) of every sub-pixel: (B, C, H, W). Where the model is surprised."""
        logits = self(x, cond)
        return F.cross_entropy(as_wide(logits), x.long(), reduction="none") / math.log(2)

    def bits_per_dim(self, x: Tensor, cond: Any = None) -> Tensor:
        """-log2 p(x | cond) / (C * H * W), one value per image: (B,). Take `.mean()` for a batch."""
        return -self.log_prob(x, cond) / (self.config.num_subpixels * math.log(2))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class GatedPixelCNN(_PixelCNNBase):
    """Gated PixelCNN (van den Oord et al., 2016): a vertical and a horizontal stack without blind spot.

    Layer 0 reads the image with mask A (colour group c sees channels < c of the current pixel);
    layers 1..n-1 use mask B and a residual connection in the horizontal stack. The output head reads
    the horizontal stack. With conditioning, every layer adds V_f h and V_g h inside both gates.
    """

    architecture = "gated"

    def __init__(self, config: PixelCNNConfig) -> None:
        super().__init__(config)
        c, p = config.image_channels, config.hidden_channels
        cond_features, spatial = self.condition.layer_features(config), self.condition.spatial
        self.layers = nn.ModuleList(
            GatedLayer(c if i == 0 else p, p, config.first_kernel_size if i == 0 else config.kernel_size, c,
                       "A" if i == 0 else "B", cond_features, spatial, vertical_output=i < config.n_layers - 1)
            for i in range(config.n_layers))
        self.head = OutputHead(p, config.head_channels, c, config.levels)

    def condition_biases(self, cond_input: Tensor | None) -> list[tuple[Tensor | None, Tensor | None]]:
        """`condition_input` -> per layer (vertical, horizontal) biases, each (B, 2p, 1, 1) or (B, 2p, H, W)."""
        return [layer.condition_biases(cond_input) for layer in self.layers]

    def logits_of(self, x_scaled: Tensor, h: Tensor | None) -> Tensor:
        biases = self.condition_biases(self.condition.layer_input(h))
        vertical = horizontal = x_scaled
        for layer, bias in zip(self.layers, biases):
            vertical, horizontal = layer(vertical, horizontal, bias)
        return self.with_prior(self.head(horizontal), h)


class _MaskedResidualBlock(nn.Module):
    """ReLU, k x k masked conv (mask B) plus condition bias, ReLU, masked 1x1, and a residual add."""

    def __init__(self, channels: int, kernel_size: int, image_channels: int, cond_features: int,
                 spatial: bool) -> None:
        super().__init__()
        self.conv = MaskedConv2d(channels, channels, kernel_size, image_channels, "B")
        self.out = ColourMaskedConv1x1(channels, channels, image_channels)
        self.cond = ConditionBias(cond_features, channels, spatial) if cond_features else None

    def forward(self, x: Tensor, cond_input: Tensor | None) -> Tensor:
        t = self.conv(F.relu(x))
        if self.cond is not None and cond_input is not None:
            t = t + self.cond(cond_input)
        return x + self.out(F.relu(t))


class PixelCNN(_PixelCNNBase):
    """The original PixelCNN (van den Oord et al., 2016a): masked convolutions and ReLUs.

    The paper's Table 1 baseline, with the same interface and conditioning as `GatedPixelCNN`.
    Its stacked masked convolutions never see a wedge of pixels above and to the right of each
    position: the blind spot the gated two-stack design removes.
    """

    architecture = "original"

    def __init__(self, config: PixelCNNConfig) -> None:
        super().__init__(config)
        c, p = config.image_channels, config.hidden_channels
        cond_features, spatial = self.condition.layer_features(config), self.condition.spatial
        self.input_conv = MaskedConv2d(c, p, config.first_kernel_size, c, "A")
        self.input_cond = ConditionBias(cond_features, p, spatial) if cond_features else None
        self.blocks = nn.ModuleList(_MaskedResidualBlock(p, config.kernel_size, c, cond_features, spatial)
                                    for _ in range(config.n_layers - 1))
        self.head = OutputHead(p, config.head_channels, c, config.levels)

    def logits_of(self, x_scaled: Tensor, h: Tensor | None) -> Tensor:
        cond_input = self.condition.layer_input(h)
        x = self.input_conv(x_scaled)
        if self.input_cond is not None:
            x = x + self.input_cond(cond_input)
        for block in self.blocks:
            x = block(x, cond_input)
        return self.with_prior(self.head(x), h)
