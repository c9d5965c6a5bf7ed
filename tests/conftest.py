import os
import tempfile

# Tests never reach the network: the Hub client answers from local files or fails fast.
# (huggingface_hub reads this once, at import.)
os.environ["HF_HUB_OFFLINE"] = "1"
# Decoded datasets are cached in a throwaway folder, not the user's ~/.cache.
os.environ["PIXELCNN_CACHE"] = tempfile.mkdtemp(prefix="pixelcnn-test-cache-")

import torch  # noqa: E402

from pixelcnn import PixelCNNConfig  # noqa: E402

torch.set_num_threads(2)


def tiny_config(channels: int = 3, size=(5, 6), kernel: int = 3, conditioning: str = "none",
                n_layers: int = 3, levels: int = 256, **overrides) -> PixelCNNConfig:
    """A model small enough to run hundreds of forward passes in a test."""
    fields = dict(image_channels=channels, image_size=size, levels=levels, hidden_channels=4 * channels,
                  n_layers=n_layers, kernel_size=kernel, first_kernel_size=kernel, head_channels=4 * channels,
                  conditioning=conditioning, num_classes=5, cond_dim=3, spatial_channels=4)
    return PixelCNNConfig(**{**fields, **overrides})


def example_condition(config: PixelCNNConfig, batch: int, seed: int = 0, dtype=torch.float64):
    """A valid condition for `batch` images of a model with this config."""
    gen = torch.Generator().manual_seed(seed)
    if config.conditioning == "class":
        return torch.randint(0, config.num_classes, (batch,), generator=gen)
    if config.conditioning in ("vector", "spatial", "sketch"):
        return torch.randn(batch, config.cond_dim, generator=gen, dtype=dtype)
    if config.conditioning == "image":
        return torch.rand(batch, config.image_channels, config.height, config.width, generator=gen, dtype=dtype)
    return None


def random_images(config: PixelCNNConfig, batch: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.levels, (batch, config.image_channels, config.height, config.width),
                         generator=gen)
