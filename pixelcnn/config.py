"""`PixelCNNConfig`: everything needed to rebuild a model, stored as `config.json`."""

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


from .conditioning import CONDITIONS, condition_class
from .shapes import ImageShape, SavedConfig

# config.architecture -> model class: filled as the model classes are defined (`model._PixelCNNBase`),
# read by `build_model` and config validation
ARCHITECTURES: dict[str, type] = {}


@dataclass(frozen=True)
class PixelCNNConfig(SavedConfig, ImageShape):
    """Shape of the data, size of the network and kind of conditioning. Frozen: change a copy with
    `dataclasses.replace(config, n_layers=20)` or `config.replace(n_layers=20)`.

    architecture: "gated" (`GatedPixelCNN`, the paper's model) or "original" (the masked `PixelCNN`);
        `pixelcnn.build_model(config)` builds it.

    Image:
        image_channels: 1 (grey) or 3 (RGB, generated as R, then G, then B per pixel).
        image_size: an int for square images or an (H, W) pair.
        levels: intensity levels per sub-pixel; 256 for 8-bit images, 2 for binarised MNIST.
    Network:
        hidden_channels: p, the width of both stacks. With RGB it is split into three
            contiguous colour groups (of nearly equal size when p is not divisible by 3).
        n_layers: number of layers, the first (mask A) one included.
        kernel_size: n of the n x n receptive field of every layer after the first.
        first_kernel_size: n of the first layer (the paper and PixelRNN use 7).
        head_channels: width of the two-layer 1x1 output head, split into colour groups like p.
    Conditioning (the paper's section 2.3):
        conditioning: a kind of `pixelcnn.conditioning.CONDITIONS`: "none", "class" (a one-hot of
            `num_classes`), "vector" (a float vector of `cond_dim`, e.g. a face embedding) or
            "spatial" (a vector of `cond_dim` mapped by a deconvolution network m(h) to a map of
            `spatial_channels`) or "sketch" (the same with m(h) an MSE decoder's blurry image,
            `spatial_channels` the width of its last hidden layer).
        standardise_cond: for "vector", "spatial" and "sketch", V reads h standardised per component with the
            training set's mean and std (buffers that training fills in) and scaled to norm ~1: a face
            embedding's components sit far from 0 and vary by only about 0.05.
        learned_null: the null condition (for guidance) is a learned vector, trained by condition
            dropout (`pixelcnn.train --cond_dropout`); else it is the training data's average h.
        sketch_prior: for "image", the sketch prior of the condition image at this strength
            (`pixelcnn.sampling.SketchPrior`) is part of the model: added to its logits in training,
            likelihoods and sampling alike, so the network learns what to add to the sketch (0: none).
        class_names: optional names of the classes, for display (training fills them in).
    """

    image_channels: int = 1
    image_size: int | tuple[int, int] = 28
    levels: int = 256
    hidden_channels: int = 64
    n_layers: int = 15
    kernel_size: int = 3
    first_kernel_size: int = 7
    head_channels: int = 256
    conditioning: str = "none"
    num_classes: int | None = None
    cond_dim: int | None = None
    spatial_channels: int = 32
    standardise_cond: bool = False
    learned_null: bool = False
    sketch_prior: float = 0.0
    class_names: tuple[str, ...] | None = None
    architecture: str = "gated"

    def __post_init__(self) -> None:
        self.tuple_image_size()
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(name) for name in self.class_names))
        self.validate()

    def replace(self, **changes: Any) -> "PixelCNNConfig":
        """A copy with some fields changed (validated)."""
        return replace(self, **changes)

    # ----------------------------------------------------------------- derived sizes
    def class_name(self, k: int) -> str:
        """Display name of class k (its number when the config has no names)."""
        return self.class_names[k] if self.class_names else str(k)

    @property
    def num_subpixels(self) -> int:
        """Dimensions of one image: H * W * C."""
        return self.height * self.width * self.image_channels

    @property
    def cond_features(self) -> int:
        """F, the width of the encoded condition h (0 when unconditional)."""
        return condition_class(self.conditioning).features(self)

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        """Raise `ValueError` naming the first field that cannot describe a model."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"PixelCNNConfig: {message}")

        need(self.image_channels in (1, 3), f"image_channels must be 1 or 3, got {self.image_channels!r}")
        size = self.image_size
        if isinstance(size, tuple):
            need(len(size) == 2 and all(isinstance(s, int) for s in size),
                 f"image_size must be an int or an (H, W) pair of ints, got {size!r}")
        else:
            need(isinstance(size, int), f"image_size must be an int or an (H, W) pair, got {size!r}")
        need(self.height >= 1 and self.width >= 1, f"image_size must be positive, got {size!r}")
        need(isinstance(self.levels, int) and self.levels >= 2, f"levels must be an int >= 2, got {self.levels!r}")
        need(self.n_layers >= 1, f"n_layers must be >= 1, got {self.n_layers}")
        for name in ("kernel_size", "first_kernel_size"):
            k = getattr(self, name)
            need(isinstance(k, int) and k >= 1 and k % 2 == 1, f"{name} must be a positive odd int, got {k!r}")
        for name in ("hidden_channels", "head_channels"):
            width = getattr(self, name)
            need(isinstance(width, int) and width >= self.image_channels,
                 f"{name} must be at least image_channels={self.image_channels} (one group per colour), "
                 f"got {width!r}")
        need(self.architecture in ARCHITECTURES,
             f"architecture must be one of {tuple(ARCHITECTURES)}, got {self.architecture!r}")
        need(self.conditioning in CONDITIONS, f"conditioning must be one of {tuple(CONDITIONS)}, "
                                              f"got {self.conditioning!r}")
        problem = condition_class(self.conditioning).config_error(self)
        need(problem is None, str(problem))
        need(not self.standardise_cond or condition_class(self.conditioning).batch_field == "vectors",
             f"standardise_cond applies to a vector condition, not {self.conditioning!r}")
        need(isinstance(self.sketch_prior, (int, float)) and 0 <= self.sketch_prior < float("inf"),
             f"sketch_prior must be a finite number >= 0, got {self.sketch_prior!r}")
        need(not self.sketch_prior or getattr(condition_class(self.conditioning), "takes_sketch_prior", False),
             f"sketch_prior adds the prior of a condition image: it needs conditioning='image', not "
             f"{self.conditioning!r}")
        need(not self.learned_null or self.conditioning != "none",
             "learned_null needs a conditional model (conditioning is 'none')")
        if self.class_names is not None:
            need(self.conditioning == "class" and len(self.class_names) == self.num_classes,
                 f"class_names must name each of the num_classes={self.num_classes} classes of a "
                 f"class-conditional model, got {len(self.class_names)} names")

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.class_names is None:
            del out["class_names"]  # keeps config.json free of an empty field
        return out

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "PixelCNNConfig":
        """Parse JSON text, or read it from a file path."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))
