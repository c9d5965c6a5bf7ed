"""The auto-encoder experiment (the paper's section 3.4): what the code is worth, how much of the image
its decodings keep, and Figure 6.

    python -m pixelcnn.experiments autoencoder AE [AE ...] --mse MSE [MSE ...] --reference MODEL --data_dir DIR

writes the figures to `autoencoder` in each auto-encoder's metrics.json, its model card section
(registered below), Figure 6 and example images beside it.
"""

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..autoencoder import (RECONSTRUCTION_GUIDANCE, AutoEncoder, MSEAutoEncoder, PixelCNNAutoEncoder, encode,
                           mse_reconstruction, psnr)
from ..cards import card_section, export_examples, model_card
from ..data import load_dataset
from ..hub import METRICS_NAME, from_pretrained, read_metrics
from ..images import image_grid
from ..sampling import sample


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


@torch.no_grad()
def marginal_bits_per_dim(model: nn.Module, images: Tensor, batch_size: int = 50) -> float:
    """Bits/dim of a class-conditional model with its class summed out, p(x) = (1/K) sum_k p(x | k):
    the unconditional model it contains, on integer images (N, C, H, W)."""
    k = model.config.num_classes
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(model.device)
        per_class = torch.stack([model.log_prob(x, torch.full((len(x),), c, device=x.device)) for c in range(k)], 1)
        total += -(torch.logsumexp(per_class, 1) - math.log(k)).sum().item()
    return total / (len(images) * model.config.num_subpixels * math.log(2))


def measure_one(model: PixelCNNAutoEncoder, images: Tensor, content: Tensor, mse: tuple[Path | None, Any],
                guidance: list[float], reference: dict[str, Any]) -> dict[str, Any]:
    """The `autoencoder` metrics of one PixelCNN auto-encoder beside its MSE baseline (path, model)."""
    result = {"code_dim": model.encoder.config.code_dim, "test_images": len(images),
              **evaluate_autoencoder(model, images), **reference}
    rivals = min(10, len(content))
    if len(content):
        result.update(content_images=len(content), content_samples=4, content_candidates=rivals,
                      **{f"content_{k}": v for k, v in content_kept(model, content, candidates=rivals).items()})
        result["content_guidance"] = {f"{w:g}": content_kept(model, content, candidates=rivals, guidance=w)
                                      for w in sorted(set(guidance) | {1.0, RECONSTRUCTION_GUIDANCE})}
    mse_path, baseline = mse
    if baseline is not None:
        result.update({f"mse_{k}": v for k, v in evaluate_autoencoder(baseline, images).items()})
        if len(content):
            result.update({f"mse_content_{k}": v for k, v in content_kept(baseline, content, candidates=rivals).items()})
        result["mse_model"] = str(mse_path)
    return json.loads(json.dumps(result), parse_float=lambda v: round(float(v), 5))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pixelcnn.experiments autoencoder", description=main.__doc__)
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """AE [AE ...] --mse MSE [MSE ...] --reference MODEL --data_dir DIR: measure PixelCNN auto-encoders
    beside their MSE baselines (matched by m) and a class-conditional model with its class summed out,
    all on the same test images; write the figures to `autoencoder` in each AE's metrics.json and its
    card, Figure 6 and example images beside it."""
    import matplotlib

    matplotlib.use("Agg")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    test = load_dataset(args.data, "test", data_dir=args.data_dir)
    images = test.images[: args.images or len(test)]
    baselines = {m.encoder.config.code_dim: (path, m) for path, m in ((p, from_pretrained(p)) for p in args.mse)}
    reference = {"reference_bpd": marginal_bits_per_dim(from_pretrained(args.reference), images)
                 if args.reference else None, "reference": str(args.reference) if args.reference else None}
    models = {}
    for path in args.autoencoders:
        model = from_pretrained(path)
        m = model.encoder.config.code_dim
        metrics = read_metrics(path) or {}
        metrics["autoencoder"] = measure_one(model, images, images[: args.content_images],
                                             baselines.get(m, (None, None)), args.guidance, reference)
        (path / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n")
        (path / "README.md").write_text(model_card(metrics, model, f"PixelCNN auto-encoder, m = {m}, on {args.data}"))
        export_examples(test, path / "examples")
        models[m] = (model, baselines.get(m, (None, None))[1])
        print(json.dumps(metrics["autoencoder"], indent=2), flush=True)
    firsts = torch.tensor([int((test.labels == k).nonzero()[0, 0]) for k in range(min(5, len(test.class_names)))])
    figure = decodings_figure(test.images[firsts], dict(sorted(models.items())), samples=4, seed=0)
    for path in args.autoencoders:
        figure.savefig(path / "figure6.png", dpi=110)
    return 0


@card_section("autoencoder")
def autoencoder_section(a: dict[str, Any]) -> str:
    """The card's table of what the code is worth (`main`)."""
    return (f"""
**What the code is worth**, on the first {a['test_images']:,} test images (`python -m pixelcnn.experiments autoencoder`):

| measurement | value |
|---|---|
| bits/dim given each image's own code (m = {a['code_dim']}) | **{a['bpd_own']:.4f}** |
| ... given another image's code | {a['bpd_shuffled']:.4f} |
""" + (f"| the unconditional reference (`{a['reference']}`, its class summed out) | {a['reference_bpd']:.4f} |\n"
       if a.get("reference_bpd") is not None else "")
        + (f"| the MSE baseline of the same m: MSE, PSNR | {a['mse_mse']:.5f}, {a['mse_psnr']:.2f} dB |\n"
           if "mse_mse" in a else "")
        + (f"| decodings closer in coarse layout (4x4 block means) to their own image than to any of the "
           f"next {a['content_candidates'] - 1} test images ({a['content_images']} images x "
           f"{a['content_samples']} decodings, temperature 1, seed 0; chance {1 / a['content_candidates']:.0%}) "
           f"| **{a['content_recognised']:.0%}** |\n" if "content_recognised" in a else "")
        + (f"| ... the MSE reconstructions, the same way | {a['mse_content_recognised']:.0%} |\n"
           if "mse_content_recognised" in a else "")
        + "".join(f"| ... PixelCNN decodings with guidance w = {w} against the decoder's average code"
                  f"{' (the app default)' if float(w) == RECONSTRUCTION_GUIDANCE else ''} | {g['recognised']:.0%} |\n"
                  for w, g in a.get("content_guidance", {}).items() if float(w) != 1)
        + "\n![Figure 6](figure6.png)\n\nEach row of `figure6.png`: a test image; for each m, the MSE decoder's "
          "reconstruction, then four PixelCNN decodings of the same code.\n")
