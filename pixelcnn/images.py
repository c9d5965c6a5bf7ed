"""Integer image tensors <-> pictures: grids of samples as PIL images."""

import torch
from PIL import Image
from torch import Tensor


def to_uint8(images: Tensor, levels: int = 256) -> Tensor:
    """Images with values in [0, levels) -> uint8 in [0, 255], same shape."""
    images = images.detach().long().cpu()
    if levels != 256:
        images = (images * 255 + (levels - 1) // 2) // (levels - 1)
    return images.clamp(0, 255).to(torch.uint8)


def image_grid(images: Tensor, nrow: int | None = None, levels: int = 256, padding: int = 2,
               scale: int = 1) -> Image.Image:
    """(N, C, H, W) integer images -> one PIL image, `nrow` images per row, `scale`x enlarged."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or max(1, int(n ** 0.5 + 0.999))
    rows = (n + nrow - 1) // nrow
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), 255, dtype=torch.uint8)
    pixels = to_uint8(images, levels)
    for k in range(n):
        r, col = divmod(k, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top:top + h, left:left + w] = pixels[k]
    array = grid.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if c == 1 else array, mode="L" if c == 1 else "RGB")
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    return picture
