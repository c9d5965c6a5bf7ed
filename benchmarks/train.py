"""Training throughput at a fixed configuration: 15 gated layers, 64 channels, batch 16; and the
training step's parts before and after it stopped waiting for the device.

    python benchmarks/train.py                 # 2 CPU threads, 1x28x28 and 3x32x32
    python benchmarks/train.py --device cuda   # on a GPU (add --bf16 --compile there)
    python benchmarks/train.py --parts         # only the step's parts: EMA, data order, input checks

Reports training images/s (forward, backward and an Adam step), the FLOPs of one step (counted by
torch.utils.flop_counter), the achieved GFLOP/s, and that as a fraction of this machine's fp32
matmul peak, measured here on 2048x2048 matrices with the same threads.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_report  # noqa: E402
from pixelcnn import GatedPixelCNN, PixelCNNConfig  # noqa: E402

# Public PyTorch Gated PixelCNN code measured on the project's 2-core machine at this configuration
# (the issue that asked for this benchmark gives these figures).
def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n matmul."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = 0.0
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(config: PixelCNNConfig, batch: int, steps: int, device: torch.device, bf16: bool, compile_model: bool):
    torch.manual_seed(0)
    model = GatedPixelCNN(config).to(device)
    net = torch.compile(model) if compile_model else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randint(0, config.levels, (batch, config.image_channels, config.height, config.width), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    for _ in range(2):  # warm-up (and compilation)
        step()
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return dict(images_per_s=batch / seconds, step_s=seconds, gflop_per_step=flops / 1e9,
                gflops=flops / seconds / 1e9, parameters=model.num_parameters)


def median_seconds(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_parts(preset: str, batch: int, repeats: int, device: torch.device) -> list[dict]:
    """The trainer's step at a shipped preset's size, and its parts before and after: the EMA update
    (torch's AveragedModel with a custom average, which reads n_averaged back twice per tensor,
    against the multi-tensor `EMA`), the data order (a permutation per batch against one per epoch,
    at MNIST's and ImageNet's sizes) and the loss with and without its per-step input checks."""
    from torch.optim.swa_utils import AveragedModel

    from pixelcnn.presets import preset_model
    from pixelcnn.runtime import EMA, DataOrder, ema_decay
    from pixelcnn.train import Objective

    def old_average(averaged, current, num_averaged):  # the trainer's EMA before: two host syncs per tensor
        d = min(0.999, (1 + num_averaged.item()) / (10 + num_averaged.item()))
        return averaged * d + current * (1 - d)

    torch.manual_seed(0)
    config = preset_model(preset)
    model = GatedPixelCNN(config).to(device)
    x = torch.randint(0, config.levels, (batch, config.image_channels, config.height, config.width), device=device)
    cond = torch.randint(0, config.num_classes, (batch,), device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    objective = Objective(model)

    def step():
        loss = objective(x, cond)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    old_ema, new_ema = AveragedModel(model, avg_fn=old_average), EMA(model, 0.999)
    for ema in (old_ema, new_ema):
        ema.update_parameters(model)  # past the first update, which copies
    step()
    rows = [dict(part="optimiser step (forward, backward, Adam)", seconds=median_seconds(step, repeats, device))]
    rows += [dict(part="EMA update: AveragedModel, custom average (before)",
                  seconds=median_seconds(lambda: old_ema.update_parameters(model), repeats, device)),
             dict(part="EMA update: multi-tensor EMA (after)",
                  seconds=median_seconds(lambda: new_ema.update_parameters(model), repeats, device))]
    with torch.no_grad():
        rows += [dict(part="loss with the per-step input checks (before)",
                      seconds=median_seconds(lambda: model.loss(x, cond), repeats, device)),
                 dict(part="loss without them, data checked at load (after)",
                      seconds=median_seconds(lambda: model.loss(x, cond, validate=False), repeats, device))]
    for n in (60_000, 1_281_167):
        order = DataOrder(n, seed=0)
        order.batch(0, 0, batch)
        rows += [dict(part=f"batch order at {n:,} images: a permutation per batch (before)",
                      seconds=median_seconds(lambda: torch.randperm(n, generator=torch.Generator().manual_seed(0))[
                          :batch], repeats, torch.device("cpu"))),
                 dict(part=f"batch order at {n:,} images: one per epoch (after)",
                      seconds=median_seconds(lambda: order.batch(0, batch, batch), repeats, torch.device("cpu")))]
    assert ema_decay(0.999, 0) == 0.1  # the warm-up both share
    return rows


def print_parts(rows: list[dict], preset: str, batch: int) -> None:
    step = rows[0]["seconds"]
    print(f"\nThe training step's parts at `{preset}`'s size, batch {batch} (median):\n")
    print("| part | ms | share of the optimiser step |\n|---|---|---|")
    for row in rows:
        row["ms"], row["share_of_step"] = 1000 * row["seconds"], row["seconds"] / step
        print(f"| {row['part']} | {row['ms']:.2f} | {100 * row['share_of_step']:.1f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration (median)")
    parser.add_argument("--layers", type=int, default=15)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train.json")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check that it runs")
    parser.add_argument("--parts", action="store_true", help="only the training step's parts, before and after")
    parser.add_argument("--preset", default="cifar10-class", help="the model size of --parts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.parts:
        rows = step_parts(args.preset, 32 if not args.smoke else 2, 2 if args.smoke else 20, device)
        print_parts(rows, args.preset, 32 if not args.smoke else 2)
        write_report(args.out.with_name("train-step.json") if not args.smoke else args.out, rows,
                     threads=args.threads, device=str(device), preset=args.preset)
        return
    if args.smoke:
        args.layers, args.channels, args.steps = 2, 6, 1
    peak = matmul_peak(device, 256 if args.smoke else 2048)
    print(f"torch {torch.__version__}, {args.threads} threads, device {device}, fp32 matmul peak {peak:.1f} GFLOP/s; "
          f"{args.layers} gated layers, {args.channels} channels, batch {args.batch}\n")
    header = "| image | images/s | GFLOP per step | GFLOP/s | of matmul peak |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    rows = []
    for channels, size in ((1, 28), (3, 32)):
        size = 6 if args.smoke else size
        config = PixelCNNConfig(image_channels=channels, image_size=size, hidden_channels=args.channels,
                                n_layers=args.layers, kernel_size=3, first_kernel_size=7,
                                head_channels=4 * args.channels)
        row = bench(config, args.batch, args.steps, device, args.bf16, args.compile)
        image = f"{channels}x{size}x{size}"
        row.update(image=image, peak_fraction=row["gflops"] / peak)
        rows.append(row)
        print(f"| {image} | {row['images_per_s']:.1f} | {row['gflop_per_step']:.1f} | "
              f"{row['gflops']:.1f} | {100 * row['peak_fraction']:.0f}% |", flush=True)
    write_report(args.out, rows, threads=args.threads, device=str(device), matmul_peak_gflops=peak,
                 layers=args.layers, channels=args.channels, batch=args.batch, bf16=args.bf16, compile=args.compile)


if __name__ == "__main__":
    main()
