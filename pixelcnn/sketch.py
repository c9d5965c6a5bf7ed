"""The face sketch: a blurry picture of a person drawn from their face embedding, m(h) trained alone.

A face embedding carries who a person is; a Gated PixelCNN conditioned on it passes little of that
on to its portraits (the likelihood gains little from identity). `EmbeddingSketch` is a deconvolution
network trained alone from the embedding to the photo. With `latent_dim` 0 it is trained on mean
squared error, and its answer is the average face that the embedding allows: blurry, and an average
over pose and light. With a latent z (`latent_dim` > 0) it is a conditional VAE (Kingma et al., 2014;
Sohn et al., 2015): an encoder reads the photo into z, which takes what the embedding does not say
(pose, light, expression, background), so the decoder can draw the person itself sharply from the
embedding; at z = 0 it draws a typical photo of the person, and z drawn at a temperature gives new
poses and light. Sampling is then held to the sketch (`pixelcnn.sampling.SketchPrior`): the PixelCNN
draws the detail, the sketch keeps the person. `PortraitModel` ships both as one composite, one
sub-folder per part, which `pixelcnn.from_pretrained` loads as one object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .codecs import ConvEncoder, DeconvDecoder, EncoderConfig
from .hub import CompositeMixin, PretrainedMixin
from .model import GatedPixelCNN
from .shapes import ImageShape, SavedConfig

SKETCH_LOSSES = ("mse", "l1")
LATENT_SEED_OFFSET = 0x5EED  # z is drawn from seed + this, so it is not the pixel noise of the same seed


@dataclass(frozen=True)
class SketchConfig(SavedConfig, ImageShape):
    """image_channels, image_size, levels: the images it draws; cond_dim: the embedding's length;
    channels: the width of the decoder's last hidden layer (doubled at each coarser scale);
    loss: "mse" (the average face) or "l1" (the median face);
    latent_dim: the length of z, what the photo shows beyond the embedding (0: none, a plain decoder);
    kl_weight: beta, the weight of z's KL divergence per sub-pixel against the reconstruction error
        (the error of pixels in [0, 1]; 0.05 matches the Gaussian likelihood of a residual of std 0.16);
    encoder_channels: the width of the encoder that reads z from the photo."""

    image_channels: int = 3
    image_size: int | tuple[int, int] = 32
    levels: int = 256
    cond_dim: int = 128
    channels: int = 64
    loss: str = "mse"
    latent_dim: int = 0
    kl_weight: float = 0.05
    encoder_channels: int = 32

    def __post_init__(self) -> None:
        self.tuple_image_size()
        if self.loss not in SKETCH_LOSSES:
            raise ValueError(f"SketchConfig: loss must be one of {SKETCH_LOSSES}, got {self.loss!r}")
        if (self.image_channels not in (1, 3) or self.cond_dim < 1 or self.channels < 1 or self.levels < 2
                or self.latent_dim < 0 or self.kl_weight < 0 or self.encoder_channels < 1):
            raise ValueError(f"SketchConfig: invalid {self}")


class EmbeddingSketch(nn.Module, PretrainedMixin):
    """Embeddings (B, cond_dim), and z (B, latent_dim) -> sketches in [0, 1] (B, C, H, W).

    The embedding is standardised with the training set's mean and std (buffers that training fills)
    and scaled to norm ~1, as `VectorCondition.standardise` does; the decoder reads it with z.
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
        shape = dict(image_channels=config.image_channels, image_size=config.image_size, levels=config.levels)
        self.decoder = DeconvDecoder(EncoderConfig(**shape, code_dim=config.cond_dim + config.latent_dim,
                                                   channels=config.channels))
        self.encoder = (ConvEncoder(EncoderConfig(**shape, code_dim=2 * config.latent_dim,
                                                  channels=config.encoder_channels)) if config.latent_dim else None)

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

    def forward(self, vectors: Tensor, z: Tensor | None = None) -> Tensor:
        """Embeddings (B, cond_dim) and z (B, latent_dim; None: 0) -> sketches (B, C, H, W) in [0, 1]."""
        h = (vectors - self.cond_mean) / (self.cond_std * math.sqrt(self.config.cond_dim))
        if self.config.latent_dim:
            z = torch.zeros(len(h), self.config.latent_dim, dtype=h.dtype, device=h.device) if z is None else z
            h = torch.cat([h, z.to(h.dtype)], 1)
        return self.decoder(h)

    def latents(self, n: int, temperature: float, seed: int | None) -> Tensor | None:
        """n draws of z from its prior N(0, temperature^2), fixed by `seed` (None: 0 at temperature 0,
        else a fresh draw): (n, latent_dim), or None for a sketch without z."""
        if not self.config.latent_dim:
            return None
        if not (isinstance(temperature, (int, float)) and 0 <= temperature < float("inf")):
            raise ValueError(f"the sketch's temperature must be a finite number >= 0, got {temperature!r}")
        gen = torch.Generator()
        gen.manual_seed((LATENT_SEED_OFFSET + seed) % 2 ** 64) if seed is not None else gen.seed()
        z = torch.randn(n, self.config.latent_dim, generator=gen, dtype=torch.float64)
        return (z * temperature).to(self.device, self.dtype)

    def sketch(self, vectors: Any, z: Tensor | None = None) -> Tensor:
        """The sketches of embeddings, (cond_dim,) or (B, cond_dim), at z (None: 0), checked:
        (B, C, H, W) in [0, 1]."""
        vectors = self.check_vectors(vectors)
        with torch.no_grad():
            return self(vectors, None if z is None else torch.as_tensor(z).to(self.device, self.dtype))

    def posterior(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log-variance) of z given integer photos (B, C, H, W): each (B, latent_dim)."""
        mean, log_var = self.encoder(images).chunk(2, dim=1)
        return mean, log_var.clamp(-12, 6)

    def objective(self, images: Tensor, vectors: Tensor) -> Tensor:
        """The training loss per image (B,): the error of the sketch (with z drawn from the photo's
        posterior, for a latent sketch), plus kl_weight times z's KL divergence per sub-pixel."""
        target = images.to(self.dtype) / (self.config.levels - 1)
        z, kl = None, 0.0
        if self.config.latent_dim:
            mean, log_var = self.posterior(images)
            z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
            kl = 0.5 * (mean.square() + log_var.exp() - 1 - log_var).sum(1) / target[0].numel()
        diff = self(vectors, z) - target
        error = (diff.square() if self.config.loss == "mse" else diff.abs()).flatten(1).mean(1)
        return error + self.config.kl_weight * kl

    def mse(self, images: Tensor, vectors: Tensor) -> Tensor:
        """Mean squared error of each image's sketch at z = 0 (B,), pixels scaled to [0, 1]."""
        target = images.to(self.dtype) / (self.config.levels - 1)
        return (self(vectors) - target).square().flatten(1).mean(1)

    def loss(self, images: Tensor, vectors: Tensor, *, validate: bool = True) -> Tensor:
        """The training objective: the mean of `objective`, a scalar (`validate`: check the images,
        which reads them back from the device; the trainer checked its data when it loaded them)."""
        if validate:
            self.config.check_images(images)
            vectors = self.check_vectors(vectors)
        return self.objective(images, vectors.to(self.dtype)).mean()

    def test_loss(self, images: Tensor, vectors: Tensor) -> Tensor:
        """What the card reports: the mean squared error of the sketch at z = 0 against the photo."""
        self.config.check_images(images)
        return self.mse(images, vectors).mean()


class PortraitModel(nn.Module, CompositeMixin):
    """A face sketch and a Gated PixelCNN, saved as one folder with a sub-folder per part (`sketch/`,
    `decoder/`). The PixelCNN reads the embedding itself, or the sketch ("image" conditioning);
    `pixelcnn.faces.portraits` draws with both, and the sampler holds the portraits to the sketch."""

    architecture = "portrait-model"
    parts = ("sketch", "decoder")
    condition_field = "vectors"

    def __init__(self, sketch: EmbeddingSketch, decoder: GatedPixelCNN) -> None:
        super().__init__()
        if decoder.config.conditioning != "image" and decoder.config.cond_dim != sketch.config.cond_dim:
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

    def condition_for(self, images: Tensor, vectors: Tensor) -> Tensor:
        """What the PixelCNN reads for photos and their embeddings: each photo's own sketch (at its
        posterior z) for one that reads sketches, as it was trained; else the embeddings."""
        if self.decoder.config.conditioning != "image":
            return vectors
        return posterior_sketches(self.sketch, images, vectors).to(vectors.dtype)

    def bits_per_dim(self, images: Tensor, vectors: Tensor) -> Tensor:
        """bits/dim of photos (B, C, H, W) given their embeddings (B, cond_dim), one value per photo."""
        return self.decoder.bits_per_dim(images, self.condition_for(images, vectors))



def load_sketch(source: Any) -> EmbeddingSketch:
    """The face sketch saved at `source`: an `EmbeddingSketch`'s folder or Hub id, or a `PortraitModel`'s."""
    from .hub import CheckpointError, from_pretrained

    model = from_pretrained(source)
    if isinstance(model, PortraitModel):
        return model.sketch
    if not isinstance(model, EmbeddingSketch):
        raise CheckpointError(f"{source!r} holds a {type(model).__name__}, not a face sketch (an EmbeddingSketch or "
                              f"a PortraitModel)")
    return model


@torch.no_grad()
def posterior_sketches(sketch: EmbeddingSketch, images: Tensor, vectors: Tensor, batch_size: int = 500) -> Tensor:
    """The sketch of each photo drawn at its own z (the posterior mean; 0 for a sketch without z), so that
    it shows the photo's pose and light: integer photos (N, C, H, W) and embeddings (N, cond_dim) ->
    (N, C * H * W) floats in [0, 1], the condition a PixelCNN of conditioning "image" trains on."""
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(sketch.device).long()
        v = sketch.check_vectors(vectors[start:start + batch_size])
        z = sketch.posterior(x)[0] if sketch.config.latent_dim else None
        out.append(sketch(v, z).flatten(1).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, sketch.config.image_channels * sketch.config.height
                                                  * sketch.config.width)
