"""What every saved config shares: `SavedConfig` (to and from config.json) and `ImageShape` (the size
of the images, their check and their scaling)."""

import dataclasses
from typing import Any

import torch
from torch import Tensor


class SavedConfig:
    """`to_dict` / `from_dict` of a config dataclass saved as config.json: tuples are written as lists
    (JSON has no tuples), and keys that are not fields are ignored on the way back (older files)."""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class ImageShape:
    """`height` and `width` of a config whose `image_size` is an int or an (H, W) pair, and the
    check of an image batch against `image_channels`, the size and `levels`."""

    image_size: int | tuple[int, int]
    image_channels: int
    levels: int

    def tuple_image_size(self) -> None:
        """An (H, W) image_size read from JSON as a list becomes a tuple again (frozen dataclasses)."""
        if isinstance(self.image_size, list):
            object.__setattr__(self, "image_size", tuple(self.image_size))

    def scale(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """Integer images -> floats in [-1, 1] of `dtype`, what every network here reads."""
        return x.to(dtype) * (2.0 / (self.levels - 1)) - 1.0

    @property
    def height(self) -> int:
        return self.image_size if isinstance(self.image_size, int) else self.image_size[0]

    @property
    def width(self) -> int:
        return self.image_size if isinstance(self.image_size, int) else self.image_size[1]

    def check_images(self, x: Tensor) -> None:
        """Raise `ValueError` unless x is an integer image batch (B, C, H, W) in [0, levels)."""
        expected = (self.image_channels, self.height, self.width)
        if not isinstance(x, Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != expected:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected images of shape (B, {expected[0]}, {expected[1]}, {expected[2]}), got {shape}")
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise ValueError(f"expected integer images with values in [0, {self.levels}), got dtype {x.dtype}; "
                             f"quantise floats first, e.g. (x * {self.levels - 1}).round().long()")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.levels):
            raise ValueError(f"image values must lie in [0, {self.levels}), got {int(x.min())}..{int(x.max())}")
