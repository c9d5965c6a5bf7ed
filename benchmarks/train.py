"""Training throughput at a fixed configuration: 15 gated layers, 64 channels, batch 16.

    python benchmarks/train.py                 # 2 CPU threads, 1x28x28 and 3x32x32
    python benchmarks/train.py --device cuda   # on a GPU (add --bf16 --compile there)

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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
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
