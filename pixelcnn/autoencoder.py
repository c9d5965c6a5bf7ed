"""The PixelCNN auto-encoder of the paper's section 3.4: an encoder compresses an image into a code h
of m numbers, and a conditional PixelCNN decodes it. In the paper both are trained end to end on the
decoder's negative log-likelihood.

`ConvEncoder` is a small strided convolutional network; `PixelCNNAutoEncoder` joins it to a
`GatedPixelCNN` conditioned on h ("vector", "spatial" or "sketch") and saves as a composite, one
sub-folder per part, that `pixelcnn.from_pretrained` loads as one object. With "sketch" the decoder
reads an MSE decoder's blurry reconstruction at every location; the shipped ones take encoder and
sketch from the MSE baseline, frozen, so that their decodings keep the image's layout (README).

`MSEAutoEncoder` is the paper's comparison: the same encoder and a deconvolution decoder
(`DeconvDecoder`) trained on mean squared error. It returns one reconstruction per code, the
average of every image the code allows, where the PixelCNN decoder samples many sharp ones.
"""

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ImageShape
from .hub import CompositeMixin, PretrainedMixin
from .images import image_grid
from .model import _PixelCNNBase
from .sampling import SampleProgress, sample, stream


@dataclass(frozen=True)
class EncoderConfig(ImageShape):
    """image_channels, image_size (int or (H, W)), levels: the images it reads; code_dim: m, the
    length of the code; channels: width of the first convolution (doubled at each stride).

    `DeconvDecoder`, the encoder's mirror image, takes the same config."""

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


def code_network_shape(config: EncoderConfig) -> tuple[list[int], tuple[int, int]]:
    """(widths of the stride-2 convolutions, (h, w) of the smallest grid): halve the image until
    it is at most 4 on its short side, doubling `channels` at each stride."""
    widths, size, grid = [], min(config.height, config.width), (config.height, config.width)
    while size > 4:
        widths.append(config.channels * 2 ** len(widths))
        size, grid = size // 2, (grid[0] // 2, grid[1] // 2)
    return widths, grid


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
        widths, grid = code_network_shape(config)
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)
                                   for c_in, c_out in zip([config.image_channels, *widths[:-1]], widths))
        self.to_code = nn.Linear(widths[-1] * grid[0] * grid[1], config.code_dim)

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

    def loss(self, x: Tensor, cond: Any = None, *, cond_dropout: float = 0.0) -> Tensor:
        return self.decoder.loss(x, self.encode(x) if cond is None else cond, cond_dropout=cond_dropout)

    def bits_per_dim(self, x: Tensor, cond: Any = None) -> Tensor:
        return self.decoder.bits_per_dim(x, self.encode(x) if cond is None else cond)


class DeconvDecoder(nn.Module, PretrainedMixin):
    """Codes h (B, code_dim) -> images scaled to [0, 1] (B, C, H, W): `ConvEncoder` in reverse.

    A linear map to the encoder's smallest grid, then stride-2 4x4 transposed convolutions; sizes
    that do not halve evenly (28 -> 3 -> 24) are resized to H x W at the end.
    """

    architecture = "deconv-decoder"
    config_class = EncoderConfig

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        widths, self.grid = code_network_shape(config)
        self.from_code = nn.Linear(config.code_dim, widths[-1] * self.grid[0] * self.grid[1])
        outs = [*reversed(widths[:-1]), config.image_channels]
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
                                     for c_in, c_out in zip(reversed(widths), outs))

    def forward(self, h: Tensor) -> Tensor:
        x = self.from_code(h).view(h.shape[0], -1, *self.grid)
        for k, deconv in enumerate(self.deconvs):
            x = deconv(F.leaky_relu(x, 0.2) if k else x)
        if x.shape[-2:] != (self.config.height, self.config.width):
            x = F.interpolate(x, size=(self.config.height, self.config.width), mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


class MSEAutoEncoder(nn.Module, CompositeMixin):
    """The paper's baseline: `ConvEncoder` and `DeconvDecoder` trained on mean squared error.

    `loss(x)` is the MSE of the reconstruction, pixels scaled to [0, 1]; `reconstruct(x)` gives
    integer images, the decoder's one answer for each code.
    """

    architecture = "mse-autoencoder"
    parts = ("encoder", "decoder")
    condition_field = None
    metric = "mse"

    def __init__(self, encoder: ConvEncoder, decoder: DeconvDecoder) -> None:
        super().__init__()
        if encoder.config != decoder.config:
            raise ValueError(f"the encoder ({encoder.config}) and decoder ({decoder.config}) must share one config")
        self.encoder, self.decoder = encoder, decoder

    @property
    def config(self) -> EncoderConfig:
        return self.decoder.config

    @property
    def device(self) -> torch.device:
        return self.decoder.from_code.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.from_code.weight.dtype

    def encode(self, x: Tensor) -> Tensor:
        """Integer images (B, C, H, W) -> codes h (B, m)."""
        self.config.check_images(x)
        return self.encoder(x)

    def decode(self, h: Tensor) -> Tensor:
        """Codes (B, m) -> reconstructions in [0, 1] (B, C, H, W)."""
        return self.decoder(h)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Integer images (B, C, H, W) -> their reconstructions as integer images of the same levels."""
        top = self.config.levels - 1
        return (self.decode(self.encode(x)) * top).round().long().clamp(0, top)

    def mse(self, x: Tensor) -> Tensor:
        """Mean squared error per image (B,), pixels scaled to [0, 1]."""
        target = x.to(self.dtype) / (self.config.levels - 1)
        return (self.decode(self.encode(x)) - target).pow(2).flatten(1).mean(1)

    def loss(self, x: Tensor, cond: Any = None) -> Tensor:
        if cond is not None:
            raise ValueError("an MSE auto-encoder takes no condition: its code comes from the image")
        return self.mse(x).mean()


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error on pixels scaled to [0, 1]."""
    return 10 * math.log10(1 / mse) if mse > 0 else math.inf


# ------------------------------------------------------------------------------------ using them
AutoEncoder = PixelCNNAutoEncoder | MSEAutoEncoder


# the default guidance of `reconstructions` (and the app's Auto-encoder tab), chosen by measurement:
# content_kept against w on the shipped decoders (their model cards)
RECONSTRUCTION_GUIDANCE = 1.5

def _as_batch(images: Tensor) -> Tensor:
    """One image (C, H, W) or a batch (B, C, H, W) -> a batch."""
    images = torch.as_tensor(images)
    return images[None] if images.dim() == 3 else images


@torch.no_grad()
def encode(model: AutoEncoder, images: Tensor) -> Tensor:
    """The codes of integer images, one (C, H, W) or a batch (B, C, H, W): (B, m)."""
    x = _as_batch(images)
    return model.encode(x.to(model.device))


def reconstructions(model: PixelCNNAutoEncoder, image: Tensor, n: int, *, seed: int | None = None,
                    temperature: float = 1.0, method: str = "cached", every: int | None = None,
                    guidance: float = RECONSTRUCTION_GUIDANCE) -> Iterator[SampleProgress]:
    """n PixelCNN decodings of one image's code, streamed like `pixelcnn.stream`.

    guidance: w of classifier-free guidance against the decoder's null code (its average code):
        above 1 the decodings hold closer to the code; the default was chosen by measurement.

    image: integer (C, H, W) or (1, C, H, W). The code is computed once from the whole image; the
    decoder then samples n images given it, pixel by pixel, each with its own noise from `seed`.
    """
    if not isinstance(model, PixelCNNAutoEncoder):
        raise TypeError(f"reconstructions samples a PixelCNNAutoEncoder's decoder, got {type(model).__name__}; "
                        f"an MSEAutoEncoder has one answer per code: use mse_reconstruction")
    x = _as_batch(image)
    if len(x) != 1:
        raise ValueError(f"reconstructions decodes one image at a time, got a batch of {len(x)}")
    code = encode(model, x)[0]
    return stream(model.decoder, n, code, seed=seed, temperature=temperature, method=method, every=every,
                  guidance=guidance)


@torch.no_grad()
def mse_reconstruction(model: MSEAutoEncoder, images: Tensor) -> Tensor:
    """The MSE auto-encoder's reconstruction of integer images, (C, H, W) or (B, C, H, W): (B, C, H, W)."""
    if not isinstance(model, MSEAutoEncoder):
        raise TypeError(f"mse_reconstruction needs an MSEAutoEncoder, got {type(model).__name__}")
    return model.reconstruct(_as_batch(images).to(model.device))


# ------------------------------------------------------------------------------------ measurements
@torch.no_grad()
def evaluate_autoencoder(model: AutoEncoder, images: Tensor, batch_size: int = 100) -> dict[str, float]:
    """The section 3.4 figures of one auto-encoder on integer test images (N, C, H, W).

    PixelCNN: `bpd_own`, bits/dim given each image's own code, and `bpd_shuffled`, given the code
    of another test image (the next one): what the code itself is worth. MSE: `mse` (pixels in
    [0, 1]) and `psnr` of that mean, in dB.
    """
    model.eval()
    starts = range(0, len(images), batch_size)
    if isinstance(model, MSEAutoEncoder):
        mse = sum(model.mse(images[s:s + batch_size].to(model.device)).sum().item() for s in starts) / len(images)
        return {"mse": mse, "psnr": psnr(mse)}
    codes = torch.cat([encode(model, images[s:s + batch_size]) for s in starts])
    shuffled = codes.roll(1, dims=0)
    own = other = 0.0
    for s in starts:
        x = images[s:s + batch_size].to(model.device)
        own += model.decoder.bits_per_dim(x, codes[s:s + batch_size]).sum().item()
        other += model.decoder.bits_per_dim(x, shuffled[s:s + batch_size]).sum().item()
    return {"bpd_own": own / len(images), "bpd_shuffled": other / len(images)}


def coarse_layout(images: Tensor, levels: int, pool: int) -> Tensor:
    """Integer images (N, C, H, W) -> means of pool x pool blocks in [0, 1], flattened: (N, C * H/pool * W/pool).

    Where the colours and the shapes are, without the details a decoder is free to invent."""
    return F.avg_pool2d(images.float() / (levels - 1), pool, ceil_mode=True).flatten(1)


def closest_to_own(decodings: Tensor, owners: Tensor, images: Tensor, *, candidates: int = 10, pool: int = 4,
                   levels: int = 256) -> Tensor:
    """Whether each decoding (M, C, H, W) of images[owners[k]] has a coarse layout closer to that image's
    than to each of the `candidates - 1` images after it in `images` (N, C, H, W), cyclically: bool (M,).

    A decoding that ignores its code is closest to its own image once in `candidates`, by chance."""
    if not 2 <= candidates <= len(images):
        raise ValueError(f"candidates must be between 2 and the {len(images)} images, got {candidates}")
    layouts = coarse_layout(images.cpu(), levels, pool)
    rivals = (owners.cpu()[:, None] + torch.arange(candidates)) % len(images)  # (M, candidates), own first
    distance = (coarse_layout(decodings.cpu(), levels, pool)[:, None] - layouts[rivals]).pow(2).mean(-1)
    return (distance[:, 1:] > distance[:, :1]).all(1)


@torch.no_grad()
def content_kept(model: AutoEncoder, images: Tensor, *, samples: int = 4, candidates: int = 10, pool: int = 4,
                 seed: int = 0, temperature: float = 1.0, guidance: float = 1.0) -> dict[str, float]:
    """How much of each integer test image (N, C, H, W) its decodings keep, judged on the coarse layout.

    `recognised`: the share of decodings closer to their own image than to any of the next
    `candidates - 1` (see `closest_to_own`; chance is 1 / candidates). `coarse_mse`: their layout's
    mean squared error against their own image. A PixelCNN auto-encoder draws `samples` decodings
    of each code (seed, temperature, guidance); an MSE auto-encoder has its one reconstruction.
    """
    model.eval()
    levels = model.config.levels
    if isinstance(model, MSEAutoEncoder):
        owners = torch.arange(len(images))
        decodings = torch.cat([mse_reconstruction(model, chunk).cpu() for chunk in images.split(100)])
    else:
        owners = torch.arange(len(images)).repeat_interleave(samples)
        codes = torch.cat([encode(model, chunk) for chunk in images.split(100)])
        decodings = sample(model.decoder, len(owners), codes[owners.to(codes.device)], seed=seed,
                           temperature=temperature, guidance=guidance).cpu()
    own = closest_to_own(decodings, owners, images, candidates=candidates, pool=pool, levels=levels)
    error = (coarse_layout(decodings, levels, pool) - coarse_layout(images.cpu()[owners], levels, pool)).pow(2)
    return {"recognised": own.float().mean().item(), "coarse_mse": error.mean().item()}


def decodings_figure(images: Tensor, models: dict[int, tuple[PixelCNNAutoEncoder, MSEAutoEncoder | None]], *,
                     samples: int = 4, seed: int = 0, temperature: float = 1.0):
    """The paper's Figure 6 as a matplotlib figure: one row per image (N, C, H, W); for each code
    length m, the MSE reconstruction, then `samples` PixelCNN decodings of the image's code."""
    import matplotlib.pyplot as plt

    levels = next(iter(models.values()))[0].config.levels
    fig, axes = plt.subplots(len(images), 1 + len(models), squeeze=False,
                             figsize=(1.2 + (1 + samples) * 1.05 * len(models), 1.15 * len(images)),
                             gridspec_kw={"width_ratios": [1] + [1 + samples] * len(models)})
    for row, image in enumerate(images):
        axes[row, 0].imshow(image_grid(image[None], nrow=1, levels=levels, padding=0), cmap="gray")
        for col, (m, (ae, mse)) in enumerate(models.items(), start=1):
            decoded = sample(ae.decoder, samples, encode(ae, image)[0], seed=seed + row, temperature=temperature)
            blur = mse_reconstruction(mse, image) if mse is not None else torch.full_like(image[None], levels - 1)
            strip = torch.cat([blur.cpu(), decoded.cpu()])
            axes[row, col].imshow(image_grid(strip, nrow=len(strip), levels=levels, padding=1), cmap="gray")
            if row == 0:
                axes[row, col].set_title(f"m = {m}: MSE, then {samples} PixelCNN decodings", fontsize=9)
        if row == 0:
            axes[row, 0].set_title("original", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    """python -m pixelcnn.autoencoder AE [AE ...] --mse MSE [MSE ...] --reference MODEL --data_dir DIR:
    measure PixelCNN auto-encoders beside their MSE baselines (matched by m) and a class-conditional
    model with its class summed out, all on the same test images; write the figures to
    `autoencoder` in each AE's metrics.json and its card, Figure 6 and example images beside it."""
    import argparse
    import json
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")

    from .data import load_dataset
    from .evaluation import marginal_bits_per_dim
    from .hub import METRICS_NAME, from_pretrained, read_metrics
    from .train import export_examples, model_card

    parser = argparse.ArgumentParser(prog="python -m pixelcnn.autoencoder", description=main.__doc__)
    parser.add_argument("autoencoders", type=Path, nargs="+")
    parser.add_argument("--mse", type=Path, nargs="+", required=True)
    parser.add_argument("--reference", type=Path, help="a class-conditional PixelCNN of the same data")
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--data_dir")
    parser.add_argument("--images", type=int, default=2000, help="test images measured (0: all)")
    parser.add_argument("--content_images", type=int, default=100,
                        help="test images whose decodings are compared with them (`content_kept`; 0: skip)")
    parser.add_argument("--guidance", type=float, nargs="*", default=[2.0, 3.0],
                        help="guidance values at which content_kept is measured too (w = 1 always)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    test = load_dataset(args.data, "test", data_dir=args.data_dir)
    images = test.images[: args.images or len(test)]
    baselines = {m.encoder.config.code_dim: (path, m) for path, m in ((p, from_pretrained(p)) for p in args.mse)}
    reference = marginal_bits_per_dim(from_pretrained(args.reference), images) if args.reference else None
    models = {}
    for path in args.autoencoders:
        model = from_pretrained(path)
        m = model.encoder.config.code_dim
        mse_path, mse = baselines.get(m, (None, None))
        result = {"code_dim": m, "test_images": len(images), **evaluate_autoencoder(model, images),
                  "reference_bpd": reference, "reference": str(args.reference) if args.reference else None}
        content, rivals = images[: args.content_images], min(10, len(images[: args.content_images]))
        if args.content_images:
            result.update(content_images=len(content), content_samples=4, content_candidates=rivals,
                          **{f"content_{k}": v for k, v in content_kept(model, content, candidates=rivals).items()})
            result["content_guidance"] = {f"{w:g}": content_kept(model, content, candidates=rivals, guidance=w)
                                          for w in sorted(set(args.guidance) | {1.0, RECONSTRUCTION_GUIDANCE})}
        if mse is not None:
            result.update({f"mse_{k}": v for k, v in evaluate_autoencoder(mse, images).items()})
            if args.content_images:
                result.update({f"mse_content_{k}": v
                               for k, v in content_kept(mse, content, candidates=rivals).items()})
            result["mse_model"] = str(mse_path)
        metrics = read_metrics(path) or {}
        metrics["autoencoder"] = json.loads(json.dumps(result), parse_float=lambda v: round(float(v), 5))
        (path / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n")
        (path / "README.md").write_text(model_card(metrics, model, f"PixelCNN auto-encoder, m = {m}, on {args.data}"))
        export_examples(test, path / "examples")
        models[m] = (model, mse)
        print(json.dumps(metrics["autoencoder"], indent=2), flush=True)
    firsts = torch.tensor([int((test.labels == k).nonzero()[0, 0]) for k in range(min(5, len(test.class_names)))])
    figure = decodings_figure(test.images[firsts], dict(sorted(models.items())), samples=4, seed=0)
    for path in args.autoencoders:
        figure.savefig(path / "figure6.png", dpi=110)
    return 0


if __name__ == "__main__":  # run the library's copy of this module, whose classes the library checks against
    from pixelcnn.autoencoder import main as library_main

    raise SystemExit(library_main())
