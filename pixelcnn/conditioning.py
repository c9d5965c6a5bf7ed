"""Conditions: what a PixelCNN is conditioned on, one class per kind.

Every kind turns what a user holds (the *raw* condition) into h, the float vector (B, F) that the
paper's V h reads in every layer:

    kind       raw condition              h (B, F)                       what the layers read
    "none"     None                       -                              -
    "class"    class ids (B,) int         one-hot (B, num_classes)       h
    "vector"   vectors (B, cond_dim)      the vectors                    h
    "spatial"  vectors (B, cond_dim)      the vectors                    s = m(h) (B, S, H, W), eq. 5
    "sketch"   vectors (B, cond_dim)      the vectors                    s = m(h) (B, C, H, W): an image
    "image"    images (B, C, H, W)        the flattened image            s = m(image) (B, S, H, W)

Wherever a model takes a condition it also takes h itself (a float (B, F) tensor): a mix of two
class one-hots, an interpolated face embedding or an encoder's output are valid conditions.
`Condition.broadcast` expands one condition to a batch. A new kind is a subclass here with its
`kind` name; `PixelCNNConfig(conditioning=<kind>)` finds it through `CONDITIONS`.

The null condition. Every conditional model holds `null_h` (F,), the h that means "no condition",
for classifier-free guidance (`pixelcnn.sampling`): a learned vector when the model was trained
with condition dropout (`config.learned_null`), else the average condition of its training data
(set by training; older checkpoints without it get `default_null`: the uniform class mix, or the
standardisation mean).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .codecs import DeconvDecoder, EncoderConfig

if TYPE_CHECKING:
    from .config import PixelCNNConfig

# the sketch prior's standard deviation at strength 1, as a share of the levels' range (32 of 256 levels);
# `sketch_log_density` is its one formula, used by the sampler's `SketchPrior` and by an "image"
# model trained with its prior (`PixelCNNConfig.sketch_prior`)
SKETCH_SIGMA_FRACTION = 1 / 8


def sketch_log_density(sketch: Tensor, levels: int, strength: float) -> Tensor:
    """A sketch in [0, 1], any shape (...) -> (..., levels): -strength (v - s)^2 / (2 sigma_1^2) at every
    level v, with s the sketch in levels and sigma_1 = SKETCH_SIGMA_FRACTION (levels - 1)."""
    top = levels - 1
    values = torch.arange(levels, device=sketch.device, dtype=sketch.dtype)
    distance = values - sketch.clamp(0, 1)[..., None] * top
    return distance.square() * (-strength / (2 * (SKETCH_SIGMA_FRACTION * top) ** 2))


# kind name -> Condition subclass, filled as the subclasses are defined
CONDITIONS: dict[str, type[Condition]] = {}


def condition_class(kind: str) -> type[Condition]:
    """The Condition subclass for a `conditioning` name; `ValueError` for an unknown one."""
    if kind not in CONDITIONS:
        raise ValueError(f"conditioning must be one of {tuple(CONDITIONS)}, got {kind!r}")
    return CONDITIONS[kind]


class Condition(nn.Module):
    """Validates, broadcasts and encodes one kind of condition.

    kind: the `conditioning` name in the config.
    batch_field: the field of a data batch (`pixelcnn.data.ImageDataset.batch`) that holds the raw
        condition when training, or None.
    spatial: whether the layers read a (B, S, H, W) map (a 1x1 convolution) instead of h (a linear map).
    """

    kind: ClassVar[str] = ""
    batch_field: ClassVar[str | None] = None
    spatial: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            CONDITIONS[cls.kind] = cls

    def __init__(self, config: PixelCNNConfig) -> None:
        super().__init__()
        self.config = config
        width = self.features(config)
        if width:
            null = torch.zeros(width)
            if config.learned_null:
                self.null_h = nn.Parameter(null)
            else:
                self.register_buffer("null_h", null)

    # ---------------------------------------------------------------- what a subclass defines
    @staticmethod
    def config_error(config: PixelCNNConfig) -> str | None:
        """Why this config cannot use this kind, or None."""
        return None

    @staticmethod
    def features(config: PixelCNNConfig) -> int:
        """F, the width of h (0: no condition)."""
        return 0

    @staticmethod
    def layer_features(config: PixelCNNConfig) -> int:
        """Channels of what the layers read: F, or S for a spatial map."""
        return Condition.features(config)

    def encode_raw(self, cond: Tensor, batch_size: int) -> Tensor:
        """A raw condition that is not already h -> h (B, F); raise ValueError if invalid."""
        raise ValueError(self.expected(batch_size))

    def expected(self, batch_size: int) -> str:
        return f"this model is conditioned on {self.kind!r}"

    def default_null(self, state: dict[str, Tensor], prefix: str) -> Tensor:
        """The null h (F,) for a saved state that has none: zeros, or what a subclass knows better."""
        return torch.zeros(self.width)

    # ---------------------------------------------------------------- shared behaviour
    @property
    def width(self) -> int:
        return self.features(self.config)

    def null(self, n: int) -> Tensor:
        """The null condition as h for n images: (n, F)."""
        if self.width == 0:
            raise ValueError("an unconditional model has no null condition to guide with")
        return self.null_h.expand(n, -1)

    @torch.no_grad()
    def set_average(self, mean_h: Tensor) -> None:
        """Set the null to the average h of the training data (F,), e.g. class frequencies."""
        self.null_h.copy_(torch.as_tensor(mean_h, dtype=self.null_h.dtype))

    def drop(self, h: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
        """Condition dropout: each row of h (B, F) replaced by the null with probability p."""
        if p <= 0:
            return h
        mask = torch.rand(h.shape[0], 1, generator=generator, device=h.device) < p
        return torch.where(mask, self.null(h.shape[0]).to(h.dtype), h)

    def broadcast(self, cond: Any, n: int) -> Any:
        """One condition for all n images -> one per image; a batch passes unchanged."""
        if cond is None or self.width == 0:
            return cond
        cond = torch.as_tensor(cond)
        if cond.dim() == 0:
            return cond.expand(n)
        if cond.dim() == 1 and cond.dtype.is_floating_point and cond.shape[0] == self.width:
            return cond.expand(n, -1)
        return cond

    def encode(self, cond: Any, batch_size: int, *, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor | None:
        """Raw condition or h -> validated h (B, F) in `dtype`, or None for "none"."""
        if self.width == 0:
            if cond is not None:
                raise ValueError("this model is unconditional (conditioning='none'); pass cond=None")
            return None
        if cond is None:
            raise ValueError(f"{self.expected(batch_size)}; pass cond")
        cond = torch.as_tensor(cond, device=device)
        if cond.dtype.is_floating_point and cond.shape == (batch_size, self.width):
            h = cond.to(dtype)  # already h
        else:
            h = self.encode_raw(cond, batch_size).to(dtype)
        if not torch.isfinite(h).all():
            raise ValueError("the condition contains NaN or inf")
        return h

    def trusted(self, cond: Tensor | None, dtype: torch.dtype) -> Tensor | None:
        """A training batch's condition, checked when the data were loaded -> h (B, F) in `dtype`,
        with no checks: nothing here reads a value back from the device."""
        if self.width == 0 or cond is None:
            return None
        return cond.to(dtype)

    def layer_input(self, h: Tensor | None) -> Tensor | None:
        """h -> what every layer's V reads: h itself, or the spatial map m(h)."""
        return h

    def log_prior(self, h: Tensor | None) -> Tensor | None:
        """What the model adds to its logits given h (B, levels, C, H, W), or None (every kind but
        an "image" one trained with its sketch prior)."""
        return None


class NoCondition(Condition):
    """An unconditional model."""

    kind = "none"


class ClassCondition(Condition):
    """A class id, encoded as a one-hot h of `num_classes` (the paper's class-conditional model)."""

    kind = "class"
    batch_field = "labels"

    @staticmethod
    def config_error(config: PixelCNNConfig) -> str | None:
        if not (isinstance(config.num_classes, int) and config.num_classes >= 1):
            return f"conditioning='class' needs num_classes >= 1, got {config.num_classes!r}"
        return None

    @staticmethod
    def features(config: PixelCNNConfig) -> int:
        return config.num_classes

    @staticmethod
    def layer_features(config: PixelCNNConfig) -> int:
        return config.num_classes

    def expected(self, batch_size: int) -> str:
        return (f"this model is conditioned on 'class': it needs integer class ids of shape ({batch_size},) "
                f"or an encoded h of shape ({batch_size}, {self.width})")

    def encode_raw(self, cond: Tensor, batch_size: int) -> Tensor:
        if cond.dtype.is_floating_point or cond.dtype == torch.bool or cond.shape != (batch_size,):
            raise ValueError(f"{self.expected(batch_size)}, got {tuple(cond.shape)} {cond.dtype}")
        if cond.numel() and (int(cond.min()) < 0 or int(cond.max()) >= self.width):
            raise ValueError(f"class ids must lie in [0, {self.width}), "
                             f"got values from {int(cond.min())} to {int(cond.max())}")
        return F.one_hot(cond.long(), self.width)

    def default_null(self, state: dict[str, Tensor], prefix: str) -> Tensor:
        return torch.full((self.width,), 1.0 / self.width)  # every class equally

    def trusted(self, cond: Tensor | None, dtype: torch.dtype) -> Tensor | None:
        if cond is None or cond.dtype.is_floating_point:
            return super().trusted(cond, dtype)
        return F.one_hot(cond.long(), self.width).to(dtype)


class VectorCondition(Condition):
    """A float vector, e.g. a face embedding or an auto-encoder's code: h is the vector (eq. 4)."""

    kind = "vector"
    batch_field = "vectors"

    @staticmethod
    def config_error(config: PixelCNNConfig) -> str | None:
        if not (isinstance(config.cond_dim, int) and config.cond_dim >= 1):
            return f"conditioning={config.conditioning!r} needs cond_dim >= 1, got {config.cond_dim!r}"
        return None

    @staticmethod
    def features(config: PixelCNNConfig) -> int:
        return config.cond_dim

    @staticmethod
    def layer_features(config: PixelCNNConfig) -> int:
        return config.cond_dim

    def expected(self, batch_size: int) -> str:
        return (f"this model is conditioned on {self.kind!r}: it needs a float tensor of shape "
                f"({batch_size}, {self.width})")

    def __init__(self, config: PixelCNNConfig) -> None:
        super().__init__(config)
        if config.standardise_cond:
            self.register_buffer("cond_mean", torch.zeros(config.cond_dim))
            self.register_buffer("cond_std", torch.ones(config.cond_dim))

    def encode_raw(self, cond: Tensor, batch_size: int) -> Tensor:
        raise ValueError(f"{self.expected(batch_size)}, got {tuple(cond.shape)} {cond.dtype}")

    def default_null(self, state: dict[str, Tensor], prefix: str) -> Tensor:
        mean = state.get(prefix + "cond_mean")  # the training mean, when the model standardises
        return torch.zeros(self.width) if mean is None else mean.clone().float()

    def fit_statistics(self, vectors: Tensor) -> None:
        """Set the standardisation from the training vectors (N, cond_dim) (`standardise_cond` only)."""
        if not self.config.standardise_cond:
            raise ValueError("this model reads h as it is (standardise_cond=False)")
        vectors = torch.as_tensor(vectors, dtype=torch.float64)
        self.cond_mean.copy_(vectors.mean(0))
        self.cond_std.copy_(vectors.std(0).clamp_min(1e-6))

    def standardise(self, h: Tensor) -> Tensor:
        """h (B, F) -> what V reads: with `standardise_cond`, (h - mean) / (std sqrt(F)), a vector of
        expected norm 1, so that Adam moves V h like one bias rather than F of them; else h itself."""
        if not self.config.standardise_cond:
            return h
        return (h - self.cond_mean) / (self.cond_std * math.sqrt(self.width))

    def layer_input(self, h: Tensor | None) -> Tensor | None:
        return None if h is None else self.standardise(h)


class SpatialCondition(VectorCondition):
    """A vector mapped to a feature map s = m(h) by a deconvolution network: the location-dependent
    bias V * s of the paper's eq. 5, V a 1x1 convolution."""

    kind = "spatial"
    spatial = True

    @staticmethod
    def config_error(config: PixelCNNConfig) -> str | None:
        if config.spatial_channels < 1:
            return f"spatial_channels must be >= 1, got {config.spatial_channels}"
        return VectorCondition.config_error(config)

    @staticmethod
    def layer_features(config: PixelCNNConfig) -> int:
        return config.spatial_channels

    def __init__(self, config: PixelCNNConfig) -> None:
        super().__init__(config)
        self.spatial_net = self.map_network(config)

    @staticmethod
    def map_network(config: PixelCNNConfig) -> nn.Module:
        """m(h): (B, cond_dim) -> (B, layer_features, H, W)."""
        return SpatialConditionNet(config.cond_dim, config.spatial_channels, config.height, config.width)

    def layer_input(self, h: Tensor | None) -> Tensor | None:
        return None if h is None else self.spatial_net(self.standardise(h))


class SketchCondition(SpatialCondition):
    """Spatial conditioning whose m(h) is the MSE auto-encoder's deconvolution decoder: s is a blurry
    image (image_channels maps in [-1, 1], `spatial_channels` the width of its last hidden layer).

    Why: a PixelCNN decoder reads a learnt map of 32 channels mostly to sharpen what its context
    already shows, and its samples drift from the code's content. A map that is a rough picture of
    the image tells every location what belongs there, so a decoding keeps its image's layout; the
    map starts as a trained MSE decoder (`pixelcnn.train --code_from`), frozen with `--freeze_code`.
    """

    kind = "sketch"

    @staticmethod
    def layer_features(config: PixelCNNConfig) -> int:
        return config.image_channels

    @staticmethod
    def map_network(config: PixelCNNConfig) -> nn.Module:
        return SketchNet(config)


class SketchNet(nn.Module):
    """m(h) of "sketch": (B, cond_dim) -> (B, image_channels, H, W), a `DeconvDecoder`'s image in [-1, 1]."""

    def __init__(self, config: PixelCNNConfig) -> None:
        super().__init__()
        self.decoder = DeconvDecoder(EncoderConfig(
            image_channels=config.image_channels, image_size=config.image_size, levels=config.levels,
            code_dim=config.cond_dim, channels=config.spatial_channels))

    def forward(self, h: Tensor) -> Tensor:
        return self.decoder(h) * 2 - 1


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


class ImageCondition(Condition):
    """An image that the model draws to, e.g. a face sketch: floats in [0, 1] (B, C, H, W), h its
    flattened values (B, C * H * W). A small convolution network m(s) maps it to a (B, S, H, W) map, the
    location-dependent bias V * m(s) of eq. 5 in every layer. The image is a condition, known
    everywhere before sampling starts, so m(s) sees all of it and the model stays causal in x.

    Why: a PixelCNN conditioned on a face embedding passes little of the person on (identity is worth
    little likelihood), but one trained on a sketch of each photo's own pose and light learns to draw
    what the sketch shows, as the auto-encoder's sketch decoder does (`pixelcnn.sketch`).
    """

    kind = "image"
    batch_field = "vectors"
    spatial = True

    @staticmethod
    def config_error(config: PixelCNNConfig) -> str | None:
        if config.spatial_channels < 1:
            return f"spatial_channels must be >= 1, got {config.spatial_channels}"
        if config.standardise_cond:
            return "conditioning='image' reads the image as it is: standardise_cond must be False"
        return None

    # sketch_prior > 0 is only valid for this kind (PixelCNNConfig.validate)
    takes_sketch_prior = True

    @staticmethod
    def features(config: PixelCNNConfig) -> int:
        return config.image_channels * config.height * config.width

    @staticmethod
    def layer_features(config: PixelCNNConfig) -> int:
        return config.spatial_channels

    def __init__(self, config: PixelCNNConfig) -> None:
        super().__init__(config)
        c, s = config.image_channels, config.spatial_channels
        self.image_net = nn.Sequential(nn.Conv2d(c, s, 3, padding=1), nn.ReLU(), nn.Conv2d(s, s, 3, padding=1),
                                       nn.ReLU(), nn.Conv2d(s, s, 3, padding=1))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.image_channels, self.config.height, self.config.width

    def expected(self, batch_size: int) -> str:
        return (f"this model is conditioned on 'image': it needs float images in [0, 1] of shape "
                f"({batch_size}, {', '.join(map(str, self.image_shape))}) or h of shape ({batch_size}, {self.width})")

    def broadcast(self, cond: Any, n: int) -> Any:
        if cond is not None and torch.as_tensor(cond).shape == self.image_shape:
            return torch.as_tensor(cond).expand(n, *self.image_shape)
        return super().broadcast(cond, n)

    def encode_raw(self, cond: Tensor, batch_size: int) -> Tensor:
        if not cond.dtype.is_floating_point or cond.shape != (batch_size, *self.image_shape):
            raise ValueError(f"{self.expected(batch_size)}, got {tuple(cond.shape)} {cond.dtype}")
        return cond.flatten(1)

    def default_null(self, state: dict[str, Tensor], prefix: str) -> Tensor:
        return torch.full((self.width,), 0.5)

    def trusted(self, cond: Tensor | None, dtype: torch.dtype) -> Tensor | None:
        return None if cond is None else cond.flatten(1).to(dtype)  # images or h alike

    def layer_input(self, h: Tensor | None) -> Tensor | None:
        return None if h is None else self.image_net(h.view(-1, *self.image_shape) * 2 - 1)

    def log_prior(self, h: Tensor | None) -> Tensor | None:
        """With `sketch_prior` > 0, what the model adds to its logits: the sketch prior of its condition
        image at that strength, (B, levels, C, H, W); else None."""
        if h is None or not self.config.sketch_prior:
            return None
        density = sketch_log_density(h.view(-1, *self.image_shape), self.config.levels, self.config.sketch_prior)
        return density.permute(0, 4, 1, 2, 3)


def build_condition(config: PixelCNNConfig) -> Condition:
    """The Condition module for a config."""
    return condition_class(config.conditioning)(config)
