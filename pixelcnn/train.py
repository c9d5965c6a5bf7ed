"""Train a PixelCNN: one script from a laptop CPU to many GPUs.

    python -m pixelcnn.train --preset mnist-class --data_dir ../shared/data
    python -m pixelcnn.train --preset mnist-class --resume            # continue a stopped run exactly
    torchrun --nproc_per_node=4 -m pixelcnn.train --preset cifar10-class --batch_size 256

A preset sets the model config, the optimiser and the data together; every field of `TrainConfig`
and of `PixelCNNConfig` can be overridden as `--field value`. `batch_size` and `lr` are global:
under torchrun with N processes each process takes batch_size / N images of every step, so the same
command gives the same optimisation on 1 or N processes (and N must divide batch_size).

Outputs in `out_dir` (written by rank 0 only): `checkpoint.pt` (atomic, every `ckpt_every` steps and
at the end), `metrics.jsonl`, `curves.png`, `samples/step_XXXXXXX.png`, and `model/`: the EMA
weights exported with `save_pretrained` and a model card with the measured test bits/dim.
"""

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel

from .config import PixelCNNConfig
from .data import DatasetError, ImageDataset, load_dataset
from .images import image_grid
from .model import GatedPixelCNN
from .presets import MODEL_PRESETS, model_preset
from .sampling import sample

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainConfig:
    """How to train; the model's shape lives in `PixelCNNConfig`."""

    preset: str = "mnist-class"
    data: str = "mnist"                 # a source for pixelcnn.data.load_dataset
    data_dir: str | None = None         # local copy of the Hub datasets (else PIXELCNN_DATA_DIR, else download)
    out_dir: str = "runs/mnist-class"
    steps: int = 20000
    batch_size: int = 32                # global, over all processes
    lr: float = 2e-3
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05          # cosine decay to lr * min_lr_ratio at the last step
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    train_images: int = 0               # use only the first N training images (0: all)
    eval_every: int = 1000
    eval_images: int = 1000             # test images for periodic evaluation (0: all)
    final_eval_images: int = 0          # test images for the model card (0: the whole test split)
    eval_batch_size: int = 100
    sample_every: int = 2000            # 0: never
    ckpt_every: int = 500
    log_every: int = 20
    seed: int = 0
    device: str = "auto"                # auto: CUDA when available
    compile: bool = False               # torch.compile the model
    bf16: bool = True                   # bf16 autocast (CUDA only)
    threads: int = 0                    # torch CPU threads per process (0: leave torch's default)
    resume: bool = False
    init_from: str | None = None        # start from these weights (a folder or Hub id) with a fresh optimiser and schedule
    progress: bool = True               # tqdm progress bar


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "mnist-class": dict(data="mnist", out_dir="runs/mnist-class", steps=20000, batch_size=32, lr=2e-3,
                        eval_every=1000, sample_every=2000),
    "cifar10-class": dict(data="cifar10", out_dir="runs/cifar10-class", steps=20000, batch_size=32, lr=2e-3,
                          eval_every=1000, sample_every=2000),
    # seconds on a CPU: for smoke tests and trying the pipeline on any small dataset
    "tiny": dict(data="mnist", out_dir="runs/tiny", steps=50, batch_size=8, lr=3e-3, warmup_steps=5,
                 eval_every=25, eval_images=32, final_eval_images=64, sample_every=25, ckpt_every=25, log_every=5),
}
MODEL_FOR_PRESET = {"tiny": PixelCNNConfig(image_channels=1, image_size=28, hidden_channels=8, n_layers=2,
                                           head_channels=16, conditioning="class", num_classes=10)}


class TrainingError(RuntimeError):
    """The run cannot go on (a NaN loss, a mismatched resume); the last checkpoint stays intact."""


# ------------------------------------------------------------------------------------ CLI
def _parse_value(kind: Any, text: str) -> Any:
    kinds = [k for k in getattr(kind, "__args__", (kind,)) if k is not type(None)]
    if text.lower() in ("none", "null") and len(kinds) < len(getattr(kind, "__args__", (kind,))):
        return None
    for k in kinds:
        if k is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {text!r}")
        try:
            return k(text)
        except (TypeError, ValueError):
            continue
    raise ValueError(f"cannot read {text!r} as {kind}")


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, PixelCNNConfig]:
    """CLI -> (train config, model config): preset defaults, then `--field value` overrides."""
    presets = sorted(TRAIN_PRESETS)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="mnist-class", choices=presets)
    known, _ = pre.parse_known_args(argv)

    parser = argparse.ArgumentParser(prog="python -m pixelcnn.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mnist-class", choices=presets)
    train_defaults = {**dataclasses.asdict(TrainConfig()), **TRAIN_PRESETS[known.preset]}
    model_base = MODEL_FOR_PRESET.get(known.preset) or model_preset(known.preset)
    model_defaults = model_base.to_dict()
    groups = [("training", TrainConfig, train_defaults), ("model", PixelCNNConfig, model_defaults)]
    for title, cls, defaults in groups:
        group = parser.add_argument_group(title)
        for f in fields(cls):
            if f.name in ("preset", "class_names"):  # class names come from the dataset
                continue
            if f.type is bool:
                group.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=defaults[f.name])
            else:
                group.add_argument(f"--{f.name}", type=lambda s, t=f.type: _parse_value(t, s),
                                   default=defaults[f.name], metavar=f.name.upper(),
                                   help=f"default: {defaults[f.name]}")
    args = vars(parser.parse_args(argv))
    train = TrainConfig(**{f.name: args[f.name] for f in fields(TrainConfig)})
    model = PixelCNNConfig.from_dict({f.name: args[f.name] for f in fields(PixelCNNConfig) if f.name in args})
    return train, model


# ------------------------------------------------------------------------------------ helpers
@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_world(device_name: str) -> tuple[World, torch.device]:
    """Join torchrun's process group when launched by torchrun (gloo on CPU, NCCL on CUDA)."""
    world = World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                  int(os.environ.get("LOCAL_RANK", 0)))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    if world.size > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return world, device


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def ema_average(decay: float):
    """EMA update with warm-up: the decay is min(decay, (1 + n) / (10 + n)) after n updates, so the
    average follows the early, fast-moving weights instead of staying near the initialisation."""

    def average(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1 + num_averaged.item()) / (10 + num_averaged.item()))
        return averaged * d + current * (1 - d)

    return average


def batch_indices(epoch: int, position: int, batch_size: int, n: int, seed: int) -> torch.Tensor:
    """The global batch at (epoch, position) of a per-epoch permutation fixed by the seed."""
    gen = torch.Generator().manual_seed(seed * 100003 + epoch)
    return torch.randperm(n, generator=gen)[position:position + batch_size]


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def parameter_checksum(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def hardware_description(device: torch.device, world: World) -> str:
    if device.type == "cuda":
        return f"{world.size} x {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # no /proc/cpuinfo (macOS, Windows): platform's name stands
    return f"{world.size} process(es) x {torch.get_num_threads()} thread(s) on {cpu} ({os.cpu_count()} cores)"


@torch.no_grad()
def evaluate(model: GatedPixelCNN, data: ImageDataset, levels: int, limit: int, batch_size: int,
             device: torch.device, autocast: bool) -> tuple[float, int]:
    """Mean bits/dim over the first `limit` images (0: all): (bits/dim, images)."""
    n = len(data) if limit <= 0 else min(limit, len(data))
    total, images = 0.0, data.quantise(levels)
    conditional = model.config.conditioning == "class"
    for start in range(0, n, batch_size):
        x = images[start:start + batch_size].to(device)
        y = data.labels[start:start + batch_size].to(device) if conditional else None
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(x, y)
        total += F.cross_entropy(logits.float(), x, reduction="sum").item()
    return total / (n * model.config.num_subpixels * math.log(2)), n


def plot_curves(metrics_path: Path, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["train_bpd"]) for r in rows if "train_bpd" in r]
    test = [(r["step"], r["test_bpd"]) for r in rows if "test_bpd" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train bits/dim (running)", alpha=0.8)
    if test:
        ax.plot(*zip(*test), "o-", label="test bits/dim (EMA weights)")
    ax.set_xlabel("step")
    ax.set_ylabel("bits/dim")
    if train or test:
        values = [v for _, v in train + test]
        ax.set_ylim(min(values) * 0.97, min(max(values), min(values) * 2.0))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)


def sample_grid(model: GatedPixelCNN, class_names: list[str], path: Path, seed: int = 0) -> None:
    """8 samples per class (or 16 unconditional samples) as one PNG, one class per row."""
    cfg = model.config
    if cfg.conditioning == "class":
        classes = torch.arange(cfg.num_classes).repeat_interleave(8)
        images = sample(model, len(classes), classes.to(next(model.parameters()).device), seed=seed)
        nrow = 8
    elif cfg.conditioning == "none":
        images, nrow = sample(model, 16, seed=seed), 4
    else:
        return  # vector conditions need real embeddings: the notebooks sample those
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, nrow=nrow, levels=cfg.levels, scale=2).save(path)


def export_examples(data: ImageDataset, folder: Path) -> None:
    """The first test image of each class as examples/<class name>.png, for the app's likelihood tab."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(data.class_names):
        hits = (data.labels == k).nonzero()
        if len(hits):
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
            image_grid(data.images[hits[0, 0]][None], nrow=1, padding=0).save(folder / f"{safe}.png")


def write_model_card(path: Path, *, train: TrainConfig, model_config: PixelCNNConfig, steps: int,
                     wall_time: float, hardware: str, test_bpd: float, test_images: int, train_images: int,
                     parameters: int, command: str) -> None:
    minutes = wall_time / 60
    card = f"""---
library_name: pixelcnn
tags:
- pixelcnn
- gated-pixelcnn
- image-generation
datasets:
- {train.data}
metrics:
- bits_per_dim
---

# Gated PixelCNN: {train.preset} on {train.data}

A {'class-conditional ' if model_config.conditioning == 'class' else ''}Gated PixelCNN (van den Oord et al., 2016)
trained with `python -m pixelcnn.train`. Load it with
`pixelcnn.from_pretrained("<this folder or repo id>")`; the weights are the EMA (Polyak) average.

| | |
|---|---|
| dataset | `{train.data}`: {train_images:,} training images |
| test bits/dim | **{test_bpd:.4f}** on {test_images:,} images of the test split (EMA weights) |
| training steps | {steps:,} at global batch {train.batch_size} ({steps * train.batch_size / max(1, train_images):.2f} epochs) |
| optimiser | Adam, lr {train.lr:g} (warm-up {train.warmup_steps}, cosine to {train.min_lr_ratio:g} x lr), grad clip {train.grad_clip:g}, EMA {train.ema_decay:g} |
| wall time | {minutes:.1f} min |
| hardware | {hardware} |
| parameters | {parameters:,} |
| torch | {torch.__version__} |

Command:

```bash
{command}
```

Model config:

```json
{model_config.to_json()}
```
"""
    path.write_text(card)


# ------------------------------------------------------------------------------------ training
def train(cfg: TrainConfig, model_config: PixelCNNConfig, argv: list[str] | None = None) -> Path | None:
    """Run (or resume) training; returns the exported model folder on rank 0."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    world, device = setup_world(cfg.device)
    if cfg.batch_size % world.size:
        raise TrainingError(f"batch_size {cfg.batch_size} must be divisible by the {world.size} processes")
    autocast = cfg.bf16 and device.type == "cuda"
    out = Path(cfg.out_dir)
    ckpt_path = out / CHECKPOINT
    checkpoint = None
    if ckpt_path.exists():
        if not cfg.resume:
            raise TrainingError(f"{out} already holds a run ({CHECKPOINT}); pass --resume to continue it, "
                                f"or choose another --out_dir")
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        saved = PixelCNNConfig.from_dict(checkpoint["model_config"])
        if saved != model_config:
            raise TrainingError(f"--resume: the model config differs from the checkpoint's ({saved.to_json()})")
    elif cfg.resume and world.main:
        print(f"--resume: no checkpoint in {out} yet, starting a new run", flush=True)

    # ---- data
    train_data = load_dataset(cfg.data, "train", data_dir=cfg.data_dir)
    test_data = load_dataset(cfg.data, "test", data_dir=cfg.data_dir)
    for data in (train_data, test_data):
        data.check_fits(model_config)
    train_images = train_data.quantise(model_config.levels)
    train_labels = train_data.labels
    if cfg.train_images > 0:
        train_images, train_labels = train_images[:cfg.train_images], train_labels[:cfg.train_images]
    n_train = len(train_images)
    if n_train < cfg.batch_size:
        raise TrainingError(f"{n_train} training images cannot fill one batch of {cfg.batch_size}")
    conditional = model_config.conditioning == "class"
    if model_config.conditioning in ("vector", "spatial"):
        raise TrainingError("this entry point trains unconditional and class-conditional models; vector and "
                            "spatial conditions come from the notebooks' encoders")

    # ---- model, optimiser, EMA
    torch.manual_seed(cfg.seed)
    model = GatedPixelCNN(model_config).to(device)
    if cfg.init_from and checkpoint is None:
        load_initial_weights(model, cfg.init_from)
        if world.main:
            print(f"initialised from {cfg.init_from} (fresh optimiser and schedule)", flush=True)
    ema = AveragedModel(model, avg_fn=ema_average(cfg.ema_decay))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, epoch, position, elapsed_before = 0, 0, 0, 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        ema.load_state_dict(checkpoint["ema"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step, epoch, position = checkpoint["step"], checkpoint["epoch"], checkpoint["position"]
        elapsed_before = checkpoint["elapsed"]
        torch.set_rng_state(checkpoint["rng"]["torch"])
        random.setstate(tuple(_to_python(checkpoint["rng"]["python"])))
        np.random.set_state(tuple(_to_python(checkpoint["rng"]["numpy"])))
        if device.type == "cuda" and "cuda" in checkpoint["rng"]:
            torch.cuda.set_rng_state(checkpoint["rng"]["cuda"][world.local_rank % len(checkpoint["rng"]["cuda"])])
        if world.main:
            print(f"resumed {out} at step {step} (epoch {epoch}, image {position})", flush=True)
    net = model
    if world.size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)

    metrics_path = out / "metrics.jsonl"
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"train": dataclasses.asdict(cfg),
                                                     "model": model_config.to_dict()}, indent=2) + "\n")
        if checkpoint is None:
            metrics_path.write_text("")
        else:  # drop log lines written after the checkpoint, which the resumed run repeats
            kept = [line for line in metrics_path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= step]
            metrics_path.write_text("".join(line + "\n" for line in kept))

    def log(record: dict) -> None:
        if world.main:
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def save_checkpoint() -> None:
        if not world.main:
            return
        rng = {"torch": torch.get_rng_state(), "python": _to_tensors(random.getstate()),
               "numpy": _to_tensors(np.random.get_state())}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        atomic_torch_save({"model": model.state_dict(), "ema": ema.state_dict(),
                           "optimizer": optimizer.state_dict(),
                           "step": step, "epoch": epoch, "position": position,
                           "elapsed": elapsed_before + time.perf_counter() - start_time, "rng": rng,
                           "train_config": dataclasses.asdict(cfg), "model_config": model_config.to_dict()},
                          ckpt_path)

    progress = None
    if world.main and cfg.progress:
        from tqdm import tqdm
        progress = tqdm(total=cfg.steps, initial=step, unit="step", dynamic_ncols=True, file=sys.stdout)
    start_time = time.perf_counter()
    running, window_start, window_images = None, time.perf_counter(), 0
    per_rank = cfg.batch_size // world.size
    last_ckpt_step = step
    try:
        while step < cfg.steps:
            if position + cfg.batch_size > n_train:
                epoch, position = epoch + 1, 0
            idx = batch_indices(epoch, position, cfg.batch_size, n_train, cfg.seed)
            idx = idx[world.rank * per_rank:(world.rank + 1) * per_rank]
            x = train_images[idx].to(device, non_blocking=True)
            y = train_labels[idx].to(device) if conditional else None
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                logits = net(x, y)
            loss = F.cross_entropy(logits.float(), x) / math.log(2)  # bits per dimension
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr = learning_rate(step, cfg)  # the schedule is a function of the step: nothing to restore
            for group in optimizer.param_groups:
                group["lr"] = lr
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            bpd = loss.detach()
            if world.size > 1:
                dist.all_reduce(bpd)
                bpd /= world.size
            bpd = bpd.item()
            if not math.isfinite(bpd):
                raise TrainingError(f"the loss became {bpd} at step {step + 1}; stopping. The last good checkpoint "
                                    f"(step {last_ckpt_step}, {ckpt_path}) is intact: resume it with a lower --lr "
                                    f"or a tighter --grad_clip")
            optimizer.step()
            ema.update_parameters(model)
            step += 1
            position += cfg.batch_size
            running = bpd if running is None else 0.98 * running + 0.02 * bpd
            window_images += cfg.batch_size
            if progress is not None:
                progress.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                rate = window_images / (now - window_start)
                window_start, window_images = now, 0
                log({"step": step, "train_bpd": running, "lr": lr, "images_per_s": rate,
                     "elapsed": elapsed_before + now - start_time})
                if progress is not None:
                    progress.set_postfix(bpd=f"{running:.3f}", img_s=f"{rate:.1f}")
            if world.main and cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                test_bpd, n = evaluate(ema.module, test_data, model_config.levels, cfg.eval_images,
                                       cfg.eval_batch_size, device, autocast)
                log({"step": step, "test_bpd": test_bpd, "test_images": n})
                if progress is not None:
                    progress.write(f"step {step}: test bits/dim {test_bpd:.4f} on {n} images (EMA)")
                plot_curves(metrics_path, out / "curves.png")
            if world.main and cfg.sample_every and step % cfg.sample_every == 0:
                sample_grid(ema.module, train_data.class_names, out / "samples" / f"step_{step:07d}.png")
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                save_checkpoint()
                last_ckpt_step = step
    finally:
        if progress is not None:
            progress.close()

    print(f"rank {world.rank} parameter checksum {parameter_checksum(model)}", flush=True)
    exported = None
    if world.main:
        wall = elapsed_before + time.perf_counter() - start_time
        test_bpd, n = evaluate(ema.module, test_data, model_config.levels, cfg.final_eval_images,
                               cfg.eval_batch_size, device, autocast)
        log({"step": step, "test_bpd": test_bpd, "test_images": n, "final": True})
        plot_curves(metrics_path, out / "curves.png")
        exported = out / "model"
        names = train_data.class_names if conditional and len(train_data.class_names) == model_config.num_classes else None
        final_model = GatedPixelCNN(dataclasses.replace(model_config, class_names=names))
        final_model.load_state_dict(ema.module.state_dict())
        final_model.save_pretrained(exported)
        export_examples(test_data, exported / "examples")
        command = "python -m pixelcnn.train " + " ".join(argv if argv is not None else sys.argv[1:])
        if world.size > 1:
            command = f"torchrun --nproc_per_node={world.size} -m pixelcnn.train " + " ".join(
                argv if argv is not None else sys.argv[1:])
        write_model_card(exported / "README.md", train=cfg, model_config=final_model.config, steps=step, wall_time=wall,
                         hardware=hardware_description(device, world), test_bpd=test_bpd, test_images=n,
                         train_images=n_train, parameters=final_model.num_parameters, command=command)
        print(f"test bits/dim {test_bpd:.4f} on {n} images; exported {exported}", flush=True)
    if world.size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return exported


def load_initial_weights(model: torch.nn.Module, source: str) -> None:
    """Copy the weights of a saved model of the same shape into `model` (class names may differ)."""
    from .hub import from_pretrained

    start = from_pretrained(source)
    same = dataclasses.replace(start.config, class_names=None) == dataclasses.replace(model.config, class_names=None)
    if not same:
        raise TrainingError(f"--init_from {source}: its config differs from this run's model config "
                            f"({start.config.to_json()})")
    model.load_state_dict(start.state_dict())


def _to_tensors(state: Any) -> Any:
    """RNG states hold tuples, ints and arrays: store them as lists and tensors (weights_only-safe)."""
    if isinstance(state, tuple) or isinstance(state, list):
        return [_to_tensors(s) for s in state]
    if isinstance(state, np.ndarray):
        return torch.from_numpy(state.copy())
    return state


def _to_python(state: Any) -> Any:
    if isinstance(state, list):
        return tuple(_to_python(s) for s in state)
    if isinstance(state, torch.Tensor):
        return state.numpy()
    return state


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, model_config = parse_args(argv)
        train(cfg, model_config, argv)
    except (TrainingError, DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("interrupted: resume from the last checkpoint with --resume", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
