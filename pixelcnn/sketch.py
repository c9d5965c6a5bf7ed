"""The face sketch: a blurry picture of a person drawn from their face embedding, m(h) trained alone.

A face embedding carries who a person is; a Gated PixelCNN conditioned on it passes little of that
on to its portraits (the likelihood gains little from identity). `EmbeddingSketch` is a deconvolution
network trained alone on mean squared error from the embedding to the photo: its answer is the
average face that the embedding allows, blurry but recognisably that person. Sampling is then held to
the sketch (`pixelcnn.sampling.SketchPrior`): the PixelCNN draws the sharp detail, the sketch keeps the
person (the sampling's product of experts). `PortraitModel` ships both as one composite, one sub-folder
per part, which `pixelcnn.from_pretrained` loads as one object.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .codecs import DeconvDecoder, EncoderConfig
from .hub import CompositeMixin, PretrainedMixin
from .model import GatedPixelCNN
from .shapes import ImageShape

SKETCH_LOSSES = ("mse", "l1")


@dataclass(frozen=True)
class SketchConfig(ImageShape):
    """image_channels, image_size, levels: the images it draws; cond_dim: the embedding's length;
    channels: the width of the decoder's last hidden layer (doubled at each coarser scale);
    loss: "mse" (the average face) or "l1" (the median face)."""

    image_channels: int = 3
    image_size: int | tuple[int, int] = 32
    levels: int = 256
    cond_dim: int = 128
    channels: int = 64
    loss: str = "mse"

    def __post_init__(self) -> None:
        if isinstance(self.image_size, list):
            object.__setattr__(self, "image_size", tuple(self.image_size))
        if self.loss not in SKETCH_LOSSES:
            raise ValueError(f"SketchConfig: loss must be one of {SKETCH_LOSSES}, got {self.loss!r}")
        if self.image_channels not in (1, 3) or self.cond_dim < 1 or self.channels < 1 or self.levels < 2:
            raise ValueError(f"SketchConfig: invalid {self}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if isinstance(self.image_size, tuple):
            out["image_size"] = list(self.image_size)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SketchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class EmbeddingSketch(nn.Module, PretrainedMixin):
    """Embeddings (B, cond_dim) -> sketches in [0, 1] (B, C, H, W).

    The embedding is standardised with the training set's mean and std (buffers that training fills)
    and scaled to norm ~1, as `VectorCondition.standardise` does, then decoded by a `DeconvDecoder`.
    """

    architecture = "embedding-sketch"
    config_class = SketchConfig
    condition_field = "vectors"  # what it reads from a data batch when training
    metric = "mse"

    def __init__(self, config: SketchConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("cond_mean", torch.zeros(config.cond_dim))
        self.register_buffer("cond_std", torch.ones(config.cond_dim))
        self.decoder = DeconvDecoder(EncoderConfig(image_channels=config.image_channels, image_size=config.image_size,
                                                   levels=config.levels, code_dim=config.cond_dim,
                                                   channels=config.channels))

    @property
    def device(self) -> torch.device:
        return self.cond_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.from_code.weight.dtype

    @torch.no_grad()
    def fit_statistics(self, vectors: Tensor) -> None:
        """The standardisation, from the training embeddings (N, cond_dim)."""
        vectors = torch.as_tensor(vectors, dtype=torch.float64)
        self.cond_mean.copy_(vectors.mean(0))
        self.cond_std.copy_(vectors.std(0).clamp_min(1e-6))

    def check_vectors(self, vectors: Any) -> Tensor:
        """Embeddings as a float batch (B, cond_dim) on the model; ValueError for anything else."""
        vectors = torch.as_tensor(vectors)
        if vectors.dim() == 1:
            vectors = vectors[None]
        if vectors.dim() != 2 or vectors.shape[1] != self.config.cond_dim or not vectors.dtype.is_floating_point:
            raise ValueError(f"expected float embeddings of shape (B, {self.config.cond_dim}) or "
                             f"({self.config.cond_dim},), got {tuple(vectors.shape)} {vectors.dtype}")
        if not torch.isfinite(vectors).all():
            raise ValueError("the embeddings contain NaN or inf")
        return vectors.to(self.device, self.dtype)

    def forward(self, vectors: Tensor) -> Tensor:
        """Embeddings (B, cond_dim) -> sketches (B, C, H, W) in [0, 1]."""
        h = (vectors - self.cond_mean) / (self.cond_std * math.sqrt(self.config.cond_dim))
        return self.decoder(h)

    def sketch(self, vectors: Any) -> Tensor:
        """The sketches of embeddings, (cond_dim,) or (B, cond_dim), checked: (B, C, H, W) in [0, 1]."""
        with torch.no_grad():
            return self(self.check_vectors(vectors))

    def errors(self, images: Tensor, vectors: Tensor) -> Tensor:
        """The training loss per image (B,): squared or absolute error, pixels scaled to [0, 1]."""
        target = images.to(self.dtype) / (self.config.levels - 1)
        diff = self(vectors) - target
        return (diff.square() if self.config.loss == "mse" else diff.abs()).flatten(1).mean(1)

    def mse(self, images: Tensor, vectors: Tensor) -> Tensor:
        """Mean squared error of each image's sketch (B,), pixels scaled to [0, 1]."""
        target = images.to(self.dtype) / (self.config.levels - 1)
        return (self(vectors) - target).square().flatten(1).mean(1)

    def loss(self, images: Tensor, vectors: Tensor) -> Tensor:
        """The training objective: the mean of `errors`, a scalar."""
        self.config.check_images(images)
        return self.errors(images, vectors).mean()


class PortraitModel(nn.Module, CompositeMixin):
    """A face sketch and a Gated PixelCNN conditioned on the same embedding, saved as one folder with
    a sub-folder per part (`sketch/`, `decoder/`). `pixelcnn.faces.portraits` draws with both."""

    architecture = "portrait-model"
    parts = ("sketch", "decoder")
    condition_field = "vectors"

    def __init__(self, sketch: EmbeddingSketch, decoder: GatedPixelCNN) -> None:
        super().__init__()
        if decoder.config.cond_dim != sketch.config.cond_dim:
            raise ValueError(f"the sketch reads embeddings of {sketch.config.cond_dim} numbers but the decoder reads "
                             f"{decoder.config.cond_dim}")
        shape = lambda c: (c.image_channels, c.height, c.width, c.levels)  # noqa: E731
        if shape(decoder.config) != shape(sketch.config):
            raise ValueError("the sketch and the decoder must draw images of one shape and number of levels")
        self.sketch, self.decoder = sketch, decoder

    @property
    def config(self):
        """The decoder's config: the images this model draws and the condition it reads."""
        return self.decoder.config

    @property
    def device(self) -> torch.device:
        return self.decoder.device

    def draw_sketch(self, vectors: Any) -> Tensor:
        """The sketches of embeddings (cond_dim,) or (B, cond_dim): (B, C, H, W) in [0, 1]."""
        return self.sketch.sketch(vectors)

