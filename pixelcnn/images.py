"""Integer image tensors <-> pictures: sample grids, uploads, heat maps and receptive-field maps."""

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .config import PixelCNNConfig


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


# ------------------------------------------------------------------------------------ uploads
MAX_UPLOAD_PIXELS = 40_000_000  # larger images are refused before they are decoded


class UploadError(ValueError):
    """An uploaded file that cannot be turned into an image for the model, with the reason."""


def open_image(source: str | Path | bytes, max_pixels: int | None = MAX_UPLOAD_PIXELS
               ) -> tuple[Image.Image, list[str]]:
    """Decode an image file (a path or its bytes) into an 8-bit PIL image, plus notices.

    Rotated as its EXIF orientation says; 16-bit and float grey rescaled to 8 bits. A file that is
    not an image, is truncated, or has more than `max_pixels` raises `UploadError` with the reason.
    """
    notices = []
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            if max_pixels and img.width * img.height > max_pixels:
                raise UploadError(f"the image is {img.width}x{img.height}; images above "
                                  f"{max_pixels // 1_000_000} megapixels are refused")
            if img.getexif().get(0x0112, 1) != 1:  # the EXIF orientation tag
                notices.append("rotated as its EXIF orientation says")
            img = ImageOps.exif_transpose(img)
            img.load()
    except UploadError:
        raise
    except Image.DecompressionBombError as e:
        raise UploadError(f"the image is too large to decode safely: {e}") from e
    except (UnidentifiedImageError, SyntaxError) as e:
        raise UploadError("the file is not an image that Pillow can read (PNG, JPEG, BMP, GIF, TIFF, WebP ...)") from e
    except (OSError, ValueError) as e:
        raise UploadError(f"the image file is damaged or truncated: {e}") from e
    if img.mode == "F":
        img, note = float_to_8_bits(np.asarray(img, dtype=np.float64))
        notices.append(note)
    elif img.mode in ("I", "I;16", "I;16B", "I;16L"):
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        img = Image.fromarray(np.clip(np.round(array / top * 255), 0, 255).astype(np.uint8))
        notices.append(f"converted from {16 if top > 255 else 8}-bit integer grey to 8 bits")
    return img, notices


def float_to_8_bits(array: np.ndarray) -> tuple[Image.Image, str]:
    """A floating-point grey image, whatever its range (0 to 1, 0 to 0.77, -3 to 40 ...) -> 8 bits,
    stretched from its own range to 0-255, and the notice that says so. UploadError for NaN or inf."""
    if not np.isfinite(array).all():
        raise UploadError("the floating-point image holds NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
    picture = Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))
    return picture, (f"a floating-point grey image with values from {low:.3g} to {high:.3g}: stretched from that "
                     f"range to 0-255")


def quantise(images: Tensor, levels: int) -> Tensor:
    """8-bit values (any integer tensor in [0, 256)) -> `levels` intensity levels, long, same shape."""
    images = images.long()
    return images if levels == 256 else (images * levels) // 256


def load_upload(path: str | Path, config: PixelCNNConfig) -> tuple[Tensor, list[str]]:
    """Any image file -> (1, C, H, W) integer image for a model with this config, plus notices.

    Handles EXIF rotation, transparency (composited on white), palettes, 16-bit and float images,
    grey for a colour model and colour for a grey one, and any size (centre-cropped to the model's
    aspect ratio, then resized). Each change is reported in the notices. A file that is not an
    image, is truncated or is too large raises `UploadError`.
    """
    img, notices = open_image(path)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
        notices.append("transparency composited on white")
    want = "L" if config.image_channels == 1 else "RGB"
    grey_input = img.mode in ("L", "1", "LA")
    if img.mode != want:
        if want == "L" and not grey_input:
            notices.append("converted from colour to grey")
        elif want == "RGB" and grey_input:
            notices.append("grey image repeated on R, G and B")
        img = img.convert(want)

    height, width = config.height, config.width
    if img.size != (width, height):
        original = img.size
        target_ratio = width / height
        cropped = abs(img.width / img.height - target_ratio) > 1e-6
        if cropped:
            if img.width / img.height > target_ratio:
                new_w = round(img.height * target_ratio)
                left = (img.width - new_w) // 2
                img = img.crop((left, 0, left + new_w, img.height))
            else:
                new_h = round(img.width / target_ratio)
                top = (img.height - new_h) // 2
                img = img.crop((0, top, img.width, top + new_h))
        img = img.resize((width, height), Image.LANCZOS)
        how = "centre-cropped and resized" if cropped else "resized"
        notices.append(f"{original[0]}x{original[1]} {how} to {width}x{height}")
    array = np.asarray(img, dtype=np.int64)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    x = quantise(torch.from_numpy(array.copy())[None], config.levels)
    if config.levels != 256:
        notices.append(f"quantised to {config.levels} levels")
    return x, notices


# ------------------------------------------------------------------------------------ pictures
def heat_map(values: Tensor, scale: int = 8, cmap: str = "magma") -> Image.Image:
    """(H, W) non-negative values -> a colour-mapped picture, `scale`x enlarged."""
    from matplotlib import colormaps

    v = values.detach().float().cpu()
    top = float(v.max()) if v.numel() and float(v.max()) > 0 else 1.0
    rgba = colormaps[cmap]((v / top).clamp(0, 1).numpy())
    picture = Image.fromarray((rgba[..., :3] * 255).astype(np.uint8))
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


FIELD_COLOURS = {"future": (225, 225, 225), "seen": (52, 120, 246), "blind": (255, 140, 0),
                 "out_of_reach": (255, 228, 160), "target": (220, 38, 38)}


def receptive_field_picture(seen: Tensor, blind: Tensor, target: tuple[int, int], scale: int = 16,
                            out_of_reach: Tensor | None = None) -> Image.Image:
    """(H, W) bool maps -> a picture, `scale`x enlarged with grid lines.

    Target red, seen blue, blind spot orange (earlier, never reachable), out of reach pale yellow
    (earlier, reachable by a deeper network), later pixels grey.
    """
    h, w = seen.shape
    canvas = np.empty((h, w, 3), dtype=np.uint8)
    canvas[:] = FIELD_COLOURS["future"]
    if out_of_reach is not None:
        canvas[out_of_reach.cpu().numpy()] = FIELD_COLOURS["out_of_reach"]
    canvas[blind.cpu().numpy()] = FIELD_COLOURS["blind"]
    canvas[seen.cpu().numpy()] = FIELD_COLOURS["seen"]
    canvas[target[0], target[1]] = FIELD_COLOURS["target"]
    picture = Image.fromarray(canvas).resize((w * scale, h * scale), Image.NEAREST)
    grid = np.asarray(picture).copy()
    grid[::scale, :] = (255, 255, 255)
    grid[:, ::scale] = (255, 255, 255)
    return Image.fromarray(grid)


def distribution_figure(probs: Tensor, actual: Tensor | None = None, channel_names: list[str] | None = None,
                        title: str | None = None):
    """(C, levels) predictive distributions -> a matplotlib figure, one panel per channel.

    The title sits above the panels and the legend beside them, so neither covers any mass.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channels, levels = probs.shape
    names = channel_names or (["grey"] if channels == 1 else ["R", "G", "B"])
    colours = ["0.3"] if channels == 1 else ["#d62728", "#2ca02c", "#1f77b4"]
    fig, axes = plt.subplots(channels, 1, figsize=(7.5, 1.7 * channels + 0.9), squeeze=False, sharex=True)
    margin = max(2.0, 0.02 * levels)  # the bars at 0 and at the top level stand clear of the axes
    for c in range(channels):
        ax = axes[c, 0]
        p = probs[c].detach().float().cpu().numpy()
        # an edge as wide as a bar: a bar one level wide is two pixels, and would hide in a thin line
        ax.bar(range(levels), p, width=1.0, color=colours[c], edgecolor=colours[c], linewidth=1.5, label="p(value)",
               zorder=2)
        best = int(p.argmax())
        ax.plot([best], [p[best]], marker="v", color=colours[c], markersize=7, zorder=3,
                transform=ax.transData + matplotlib.transforms.ScaledTranslation(0, 6 / 72, fig.dpi_scale_trans))
        left = best < levels / 2
        ax.annotate(f"most likely: {best} (p = {p[best]:.2f})", (best, p[best]), xytext=(8 if left else -8, 4),
                    textcoords="offset points", ha="left" if left else "right", va="bottom", fontsize=8)
        if actual is not None:
            ax.axvline(int(actual[c]), color="k", linestyle="--", linewidth=1, label="actual value", zorder=1)
        ax.set_ylabel(f"p({names[c]})")
        ax.set_xlim(-margin, levels - 1 + margin)
        ax.set_ylim(0, max(float(p.max()) * 1.35, 1e-3))
    if actual is not None:
        axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("value")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94 if title else 1))
    return fig


def display_scale(width: int, columns: int = 1, target: int = 512, padding: int = 2) -> int:
    """Whole-pixel enlargement that makes a grid of `columns` images of `width` about `target` pixels wide."""
    return max(1, target // (columns * (width + padding) + padding))


def outline_pixel(picture: Image.Image, row: int, col: int, *, scale: int, image_size: tuple[int, int],
                  nrow: int = 1, count: int = 1, padding: int = 2, colour=(230, 30, 30)) -> Image.Image:
    """Draw a square around pixel (row, col) of every image of a grid made by `image_grid`."""
    from PIL import ImageDraw

    out = picture.convert("RGB")
    draw = ImageDraw.Draw(out)
    h, w = image_size
    for k in range(count):
        r, c = divmod(k, nrow)
        top = (padding + r * (h + padding) + row) * scale
        left = (padding + c * (w + padding) + col) * scale
        draw.rectangle([left - 1, top - 1, left + scale, top + scale], outline=colour, width=max(1, scale // 6))
    return out


def heat_map_with_bar(values: Tensor, scale: int, label: str = "bits", marker: tuple[int, int] | None = None,
                      cmap: str = "magma") -> Image.Image:
    """`heat_map` with a colour bar on the right (0 to the maximum, labelled) and an optional
    outlined (row, col) marker."""
    from matplotlib import colormaps
    from PIL import ImageDraw, ImageFont

    picture = heat_map(values, scale=scale, cmap=cmap)
    if marker is not None:
        picture = outline_pixel(picture, *marker, scale=scale, image_size=tuple(values.shape), padding=0,
                                colour=(40, 200, 255))
    top = float(values.max()) if values.numel() else 0.0
    font = ImageFont.load_default(size=max(14, picture.height // 18))
    labels = (f"{top:.1f} {label}", f"0 {label}")
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(measure.textbbox((0, 0), text, font=font)[2] for text in labels) + 8
    text_h = max(measure.textbbox((0, 0), text, font=font)[3] for text in labels)
    bar_w, gap, pad = max(10, picture.height // 20), 6, text_h // 2 + 2  # pad: room for half a label
    canvas = Image.new("RGB", (picture.width + gap + bar_w + text_w, picture.height + 2 * pad), (255, 255, 255))
    canvas.paste(picture, (0, pad))
    ramp = colormaps[cmap](np.linspace(1, 0, picture.height))[:, :3]
    bar = (np.repeat(ramp[:, None, :], bar_w, axis=1) * 255).astype(np.uint8)
    canvas.paste(Image.fromarray(bar), (picture.width + gap, pad))
    draw = ImageDraw.Draw(canvas)
    x = picture.width + gap + bar_w + 4
    draw.text((x, pad), labels[0], fill=(0, 0, 0), font=font, anchor="lm")  # beside the bar's top and bottom
    draw.text((x, pad + picture.height - 1), labels[1], fill=(0, 0, 0), font=font, anchor="lm")
    return canvas


def completion_picture(original: Tensor, completed: Tensor, kept_rows: int, levels: int, scale: int) -> Image.Image:
    """The original and its completion side by side, a line under the kept rows of both: (1, C, H, W) each."""
    from PIL import ImageDraw

    pair = torch.cat([original, completed]).cpu()
    picture = image_grid(pair, nrow=2, levels=levels, padding=2, scale=scale).convert("RGB")
    draw = ImageDraw.Draw(picture)
    y = (2 + kept_rows) * scale
    draw.line([(0, y), (picture.width, y)], fill=(40, 200, 255), width=max(1, scale // 4))
    return picture
