"""Sampling speed: naive (a full forward pass per sub-pixel) against the cached engine.

    python benchmarks/sampling.py                      # the shipped model sizes, batches 1 and 16, 2 threads
    python benchmarks/sampling.py --device cuda        # on a GPU

For each preset and batch size it prints seconds per batch for both methods, the speed-up,
sub-pixels per second, cached time over one full forward pass of the batch (the floor that
caching can approach), and the cached time with classifier-free guidance (w = 3: the conditional and
null logits of 2n rows in one pass) over the plain cached time, and the guided time with the sketch
prior on top (strength 2.5) over the guided time. Naive runs are timed over --naive-steps sub-pixels and extrapolated to the
whole image, as the table says. Results also go to a JSON file.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_report  # noqa: E402
from pixelcnn import GatedPixelCNN, PixelCNNConfig  # noqa: E402
from pixelcnn.presets import MODEL_PRESETS, preset_model  # noqa: E402
from pixelcnn.sampling import SketchPrior, sample, stream  # noqa: E402

SMOKE_PRESETS = {"smoke-grey": PixelCNNConfig(image_channels=1, image_size=6, hidden_channels=8, n_layers=2,
                                              head_channels=8, conditioning="class", num_classes=3),
                 "smoke-rgb": PixelCNNConfig(image_channels=3, image_size=5, hidden_channels=9, n_layers=2,
                                             head_channels=9, conditioning="class", num_classes=3)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def some_condition(model: GatedPixelCNN, n: int, device: torch.device):
    """A valid condition for n images of any kind: class 0, or a vector of zeros (None: unconditional)."""
    kind = model.config.conditioning
    if kind == "none":
        return None
    if kind == "class":
        return torch.zeros(n, dtype=torch.long, device=device)
    return torch.zeros(n, model.config.cond_features, device=device)  # a vector, or a flattened image


def time_forward(model: GatedPixelCNN, n: int, device: torch.device, repeats: int = 3) -> float:
    cfg = model.config
    x = torch.randint(0, cfg.levels, (n, cfg.image_channels, cfg.height, cfg.width), device=device)
    cond = some_condition(model, n, device)
    times = []
    with torch.no_grad():
        model(x, cond)  # warm-up
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            model(x, cond)
            synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_naive(model: GatedPixelCNN, n: int, steps: int) -> float:
    """Seconds per sub-pixel step of naive sampling, from the first `steps` steps."""
    gen = stream(model, n, some_condition(model, n, model.device), seed=0, method="naive", every=steps)
    event = next(gen)
    gen.close()
    return event.elapsed / event.done


def time_cached(model: GatedPixelCNN, n: int, device: torch.device, repeats: int, guidance: float = 1.0,
                strength: float = 0.0) -> float:
    """Median seconds of cached sampling, guided at `guidance` and held to a sketch at `strength`."""
    cond = some_condition(model, n, device)
    cfg = model.config
    sketch = torch.rand(n, cfg.image_channels, cfg.height, cfg.width, generator=torch.Generator().manual_seed(0))
    prior = SketchPrior(sketch, strength) if strength else None
    warm = stream(model, n, cond, seed=0, method="cached", guidance=guidance, prior=prior)
    next(warm)  # one row: allocations and kernels warmed up
    warm.close()
    times = []
    for seed in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        sample(model, n, cond, seed=seed, method="cached", guidance=guidance, prior=prior)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(MODEL_PRESETS),
                        help="model presets (or training presets, e.g. faces-gpu) to time")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--naive-steps", type=int, default=24, help="naive sub-pixels timed, then extrapolated")
    parser.add_argument("--repeats", type=int, default=1, help="cached runs per row (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sampling.json")
    parser.add_argument("--smoke", action="store_true", help="tiny models, for a quick check that it runs")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    presets = SMOKE_PRESETS if args.smoke else {name: preset_model(name) for name in args.presets}
    rows = []
    header = ("| preset | image | batch | forward (s) | naive (s, extrapolated) | cached (s) | speed-up "
              "| sub-pixels/s (cached) | cached / forward | guided w = 3 (s) | guided / cached "
              "| guided and held to a sketch (s) | held / guided |")
    print(f"torch {torch.__version__}, {args.threads} threads, device {device}; naive timed over "
          f"{args.naive_steps} sub-pixels and extrapolated\n")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for name, config in presets.items():
        torch.manual_seed(0)
        model = GatedPixelCNN(config).to(device).eval()
        total = config.num_subpixels
        for n in args.batches:
            forward = time_forward(model, n, device)
            naive = time_naive(model, n, min(args.naive_steps, total)) * total
            cached = time_cached(model, n, device, args.repeats)
            guided = time_cached(model, n, device, args.repeats, guidance=3.0)
            held = time_cached(model, n, device, args.repeats, guidance=3.0, strength=2.5)
            row = dict(preset=name, image=f"{config.height}x{config.width}x{config.image_channels}", batch=n,
                       parameters=model.num_parameters, forward_s=forward, naive_s=naive, cached_s=cached,
                       speedup=naive / cached, subpixels_per_s=n * total / cached,
                       cached_over_forward=cached / forward, guided_s=guided, guided_over_cached=guided / cached,
                       guided_prior_s=held, prior_over_guided=held / guided)
            rows.append(row)
            print(f"| {name} | {row['image']} | {n} | {forward:.3f} | {naive:.1f} | {cached:.2f} | "
                  f"{row['speedup']:.0f}x | {row['subpixels_per_s']:,.0f} | {row['cached_over_forward']:.1f} | "
                  f"{guided:.2f} | {row['guided_over_cached']:.2f} | {held:.2f} | {row['prior_over_guided']:.2f} |",
                  flush=True)
    write_report(args.out, rows, threads=args.threads, device=str(device), naive_steps=args.naive_steps)


if __name__ == "__main__":
    main()
