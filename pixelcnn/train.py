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
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .autoencoder import (RECONSTRUCTION_GUIDANCE, ConvEncoder, DeconvDecoder, EncoderConfig, MSEAutoEncoder,
                          PixelCNNAutoEncoder, psnr)
from .conditioning import condition_class
from .config import PixelCNNConfig
from .data import DatasetError, ImageDataset, load_dataset
from .hub import METRICS_NAME, from_pretrained, read_metrics
from .images import image_grid
from .layers import ConditionBias
from .model import GatedPixelCNN, build_model
from .presets import model_preset
from .sampling import sample

CHECKPOINT = "checkpoint.pt"
METRIC_NAMES = {"bpd": "bits/dim", "mse": "MSE"}  # what a trainable's `metric` (its loss) measures


def metric_of(model: nn.Module) -> str:
    """The key of what `model.loss` measures: "bpd" for every PixelCNN, "mse" for the MSE baseline."""
    return getattr(model, "metric", "bpd")


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
    vector_column: str | None = None    # condition on this parquet column of float vectors
    vectors: str | None = None          # ...or on .npy arrays aligned with each split, e.g. emb_{split}.npy
    encoder: str = "none"               # "conv": train a ConvEncoder end to end, its code conditioning the model
    encoder_channels: int = 32
    decoder: str = "pixelcnn"           # with --encoder conv, "mse": the baseline, a deconvolution decoder on MSE
    code_from: str | None = None        # with --encoder conv: start the encoder (and a "sketch" decoder's m(h)) from this MSE auto-encoder
    freeze_code: bool = False           # keep the encoder and a sketch's m(h) as they are: only the PixelCNN learns
    cond_dropout: float = 0.0           # share of images trained on the null condition (a learned one), for guidance
    time_budget: float = 0.0            # minutes for the whole run, evaluation and export included (0: none)
    progress: bool = True               # tqdm progress bar


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "mnist-class": dict(data="mnist", out_dir="runs/mnist-class", steps=20000, batch_size=32, lr=2e-3,
                        eval_every=1000, sample_every=2000),
    "cifar10-class": dict(data="cifar10", out_dir="runs/cifar10-class", steps=20000, batch_size=32, lr=2e-3,
                          eval_every=1000, sample_every=2000),
    "faces-portrait": dict(data="celeba-faces32", out_dir="runs/faces-portrait", steps=6000, batch_size=32,
                           lr=2e-3, eval_every=250, eval_images=500, sample_every=500, cond_dropout=0.15),
    # one CUDA GPU, under 8 minutes in all: the portrait model on celeba-faces32 with a learned null
    "faces-gpu": dict(data="celeba-faces32", out_dir="runs/faces-gpu", steps=100000, batch_size=128, lr=2e-3,
                      warmup_steps=200, eval_every=1000, eval_images=1000, sample_every=0, ckpt_every=1000,
                      cond_dropout=0.15, time_budget=7.5, compile=False),
    # seconds on a CPU: for smoke tests and trying the pipeline on any small dataset
    "tiny": dict(data="mnist", out_dir="runs/tiny", steps=50, batch_size=8, lr=3e-3, warmup_steps=5,
                 eval_every=25, eval_images=32, final_eval_images=64, sample_every=25, ckpt_every=25, log_every=5),
}
MODEL_FOR_PRESET = {"faces-gpu": model_preset("faces-portrait"),
                    "tiny": PixelCNNConfig(image_channels=1, image_size=28, hidden_channels=8, n_layers=2,
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
            if f.name in ("preset", "class_names", "learned_null"):  # from the dataset; from --cond_dropout
                continue
            if f.name == "standardise_cond":  # None: the preset's choice where it applies (see below)
                group.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=None,
                                   help=f"default: {defaults[f.name]} for a condition given as vectors")
            elif f.type is bool:
                group.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=defaults[f.name])
            else:
                group.add_argument(f"--{f.name}", type=lambda s, t=f.type: _parse_value(t, s),
                                   default=defaults[f.name], metavar=f.name.upper(),
                                   help=f"default: {defaults[f.name]}")
    args = vars(parser.parse_args(argv))
    if args["standardise_cond"] is None:  # e.g. the faces preset's unconditional twin: nothing to standardise
        given_vectors = condition_class(args["conditioning"]).batch_field == "vectors" and args["encoder"] == "none"
        args["standardise_cond"] = model_defaults["standardise_cond"] and given_vectors
    if not 0 <= args["cond_dropout"] < 1:
        raise ValueError(f"--cond_dropout must lie in [0, 1), got {args['cond_dropout']}")
    if args["time_budget"] < 0:
        raise ValueError(f"--time_budget is in minutes and must be >= 0, got {args['time_budget']}")
    if args["conditioning"] == "none":  # nothing to drop, e.g. the faces preset's unconditional twin
        args["cond_dropout"] = 0.0
    args["learned_null"] = args["cond_dropout"] > 0  # the dropped images train the null condition itself
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


def learning_rate(step: int, cfg: TrainConfig, total: int | None = None) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio at the last step (`total`, else cfg.steps)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    total = total or cfg.steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
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


# ------------------------------------------------------------------------------------ what is trained
class Objective(nn.Module):
    """The trainable's own loss as a module, so DDP wraps the call that computes it; with
    `cond_dropout`, a share of the images is trained on the null condition."""

    def __init__(self, model: nn.Module, cond_dropout: float = 0.0) -> None:
        super().__init__()
        self.model, self.cond_dropout = model, cond_dropout

    def forward(self, images: torch.Tensor, cond: Any) -> torch.Tensor:
        if self.cond_dropout > 0:
            return self.model.loss(images, cond, cond_dropout=self.cond_dropout)
        return self.model.loss(images, cond)


def build_trainable(cfg: TrainConfig, model_config: PixelCNNConfig) -> nn.Module:
    """The PixelCNN of the config, joined to a trainable encoder when `cfg.encoder` asks for one;
    with `--decoder mse`, the MSE auto-encoder of the same encoder (the PixelCNN's size unused)."""
    if cfg.decoder not in ("pixelcnn", "mse"):
        raise TrainingError(f"--decoder must be 'pixelcnn' or 'mse', got {cfg.decoder!r}")
    if cfg.encoder == "none":
        if cfg.decoder == "mse":
            raise TrainingError("--decoder mse is an auto-encoder: it needs --encoder conv")
        return build_model(model_config)
    if cfg.encoder != "conv":
        raise TrainingError(f"--encoder must be 'none' or 'conv', got {cfg.encoder!r}")
    if model_config.standardise_cond:
        raise TrainingError("--standardise_cond standardises given vectors with the training set's statistics; "
                            "an encoder's code is learnt, so train it with --no-standardise_cond")
    if condition_class(model_config.conditioning).batch_field != "vectors":
        raise TrainingError("--encoder conv needs a decoder conditioned on its code: --conditioning vector, "
                            "spatial or sketch, with --cond_dim the code's length")
    code = EncoderConfig(image_channels=model_config.image_channels, image_size=model_config.image_size,
                         levels=model_config.levels, code_dim=model_config.cond_dim, channels=cfg.encoder_channels)
    if cfg.decoder == "mse":
        if cfg.cond_dropout > 0:
            raise TrainingError("--cond_dropout trains a PixelCNN's null condition; an MSE auto-encoder has none")
        return MSEAutoEncoder(ConvEncoder(code), DeconvDecoder(code))
    return PixelCNNAutoEncoder(ConvEncoder(code), build_model(model_config))


def conditioned_part(model: nn.Module) -> nn.Module | None:
    """The PixelCNN whose condition holds the null: the model, or an auto-encoder's decoder (None: MSE)."""
    if isinstance(model, MSEAutoEncoder):
        return None
    return model.decoder if isinstance(model, PixelCNNAutoEncoder) else model


@torch.no_grad()
def set_average_null(model: nn.Module, data: ImageDataset, device: torch.device, limit: int = 5000) -> bool:
    """Set the null condition to the mean h over (the first `limit` of) the training images: class
    frequencies, the mean embedding, or an auto-encoder's mean code. False when there is none."""
    part = conditioned_part(model)
    if part is None or part.condition.width == 0:
        return False
    index = torch.arange(min(limit, len(data)))
    codes = []
    for chunk in index.split(500):
        batch = data.batch(chunk, part.config.levels)
        if isinstance(model, PixelCNNAutoEncoder):
            codes.append(model.encode(batch["images"].to(device)))
        else:
            codes.append(part.encode_condition(condition_of(model, batch, device), len(chunk)))
    part.condition.set_average(torch.cat(codes).double().mean(0))
    return True


def condition_of(model: nn.Module, batch: dict[str, Any], device: torch.device) -> Any:
    """The raw condition of a batch for this model: the field its condition names, or None."""
    field = model.condition_field
    return None if field is None else batch[field].to(device)


def statistics_fitted(model: nn.Module) -> bool:
    """Whether a model with `standardise_cond` holds statistics (a warm start from a model without
    them, or without conditioning, leaves them at mean 0 and std 1)."""
    if not getattr(getattr(model, "config", None), "standardise_cond", False):
        return True
    condition = model.condition
    return bool(condition.cond_mean.any() or (condition.cond_std != 1).any())


def fit_condition_statistics(model: nn.Module, data: ImageDataset) -> bool:
    """A fresh model with `standardise_cond` takes its mean and std of h from the training vectors,
    and starts with every V = 0: it starts as an unconditional model, where V's default initialisation
    would add a random bias of std ~0.6 per image to every gate."""
    if not getattr(model.config, "standardise_cond", False):
        return False
    model.condition.fit_statistics(data.vectors)
    zero_condition_weights(model)
    return True


@torch.no_grad()
def zero_condition_weights(model: nn.Module) -> None:
    """Every layer's V = 0: the model's likelihood no longer depends on its condition."""
    for module in model.modules():
        if isinstance(module, ConditionBias):
            module.proj.weight.zero_()


def load_training_data(cfg: TrainConfig, config: PixelCNNConfig, encoder: bool) -> tuple[ImageDataset, ImageDataset]:
    """The train and test splits with the conditions the model needs, checked against its config."""
    splits = []
    for split in ("train", "test"):
        data = load_dataset(cfg.data, split, data_dir=cfg.data_dir, vector_column=cfg.vector_column)
        if cfg.vectors:
            path = Path(cfg.vectors.format(split=split))
            if not path.is_file():
                raise DatasetError(f"--vectors: {path} does not exist (one .npy file per split, '{{split}}' "
                                   f"in the name)")
            data = data.with_vectors(np.load(path))
        data.check_fits(config if not encoder else config.replace(conditioning="none", learned_null=False))
        splits.append(data)
    return splits[0], splits[1]


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageDataset, limit: int, batch_size: int, device: torch.device,
             autocast: bool) -> tuple[float, int]:
    """Mean bits/dim over the first `limit` images (0: all): (bits/dim, images)."""
    n = len(data) if limit <= 0 else min(limit, len(data))
    total = 0.0
    for start in range(0, n, batch_size):
        batch = data.batch(torch.arange(start, min(n, start + batch_size)), model.config.levels)
        images = batch["images"].to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            total += model.loss(images, condition_of(model, batch, device)).item() * len(images)
    return total / n, n


def plot_curves(metrics_path: Path, out: Path, metric: str = "bpd") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    name = METRIC_NAMES[metric]
    train = [(r["step"], r[f"train_{metric}"]) for r in rows if f"train_{metric}" in r]
    test = [(r["step"], r[f"test_{metric}"]) for r in rows if f"test_{metric}" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label=f"train {name} (running)", alpha=0.8)
    if test:
        ax.plot(*zip(*test), "o-", label=f"test {name} (EMA weights)")
    ax.set_xlabel("step")
    ax.set_ylabel(name)
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


def sample_grid(model: nn.Module, test_data: ImageDataset, path: Path, seed: int = 0) -> None:
    """A PNG of samples: 8 per class, one class per row; 16 unconditional ones; or, for vector
    conditions and auto-encoders, 4 samples (one row) for each of the first 4 test images' conditions."""
    cfg = model.config
    if isinstance(model, MSEAutoEncoder):  # 8 test images over their reconstructions
        images = test_data.batch(torch.arange(min(8, len(test_data))), cfg.levels)["images"].to(model.device)
        path.parent.mkdir(parents=True, exist_ok=True)
        image_grid(torch.cat([images, model.reconstruct(images)]), nrow=len(images), levels=cfg.levels,
                   scale=2).save(path)
        return
    decoder = getattr(model, "decoder", model)
    field = model.condition_field
    if field == "labels":
        cond, nrow = torch.arange(cfg.num_classes).repeat_interleave(8), 8
    elif field is None and decoder is model:
        cond, nrow = None, 4
    else:
        batch = test_data.batch(torch.arange(min(4, len(test_data))), cfg.levels)
        raw = model.encode(batch["images"].to(model.device)) if decoder is not model else batch[field]
        cond, nrow = decoder.encode_condition(raw, len(raw)).repeat_interleave(4, dim=0), 4
    n = 16 if cond is None else len(cond)
    images = sample(decoder, n, None if cond is None else cond.to(decoder.device), seed=seed)
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


# ------------------------------------------------------------------------------------ metrics and card
def run_metrics(cfg: TrainConfig, model: nn.Module, *, steps: int, wall_time: float, cpu_time: float, hardware: str,
                test_value: float, test_images: int, train_images: int, command: str,
                history: list[dict[str, Any]], budget: "TimeBudget | None" = None) -> dict[str, Any]:
    """What `metrics.json` records: the measured figures of the run and of the runs before it.
    `test_value` is what the model's loss measures on the test split, saved as `test_<metric>`."""
    key = f"test_{metric_of(model)}"
    stretch = {"command": command, "steps": steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
               "wall_time_s": round(wall_time, 1), "hardware": hardware,
               "core_hours": round(cpu_time / 3600, 2),  # CPU time of the training process(es) on rank 0
               "init_from": cfg.init_from, key: round(test_value, 6)}
    if cfg.cond_dropout > 0:
        stretch["cond_dropout"] = cfg.cond_dropout
    if cfg.time_budget > 0:
        stretch["time_budget_min"] = cfg.time_budget
        stretch["stopped_by_budget"] = bool(budget is not None and (budget.stopped_early or steps < cfg.steps))
    return {key: round(test_value, 6), "test_images": test_images, "dataset": cfg.data,
            "train_images": train_images, "parameters": sum(p.numel() for p in model.parameters()),
            "torch": torch.__version__, "history": [*history, stretch]}


def describe_model(model: nn.Module, history: list[dict[str, Any]] = ()) -> tuple[str, str]:
    """(what the model is, in a sentence; its config as JSON) for the model card; `history` (its
    runs) tells whether a sketch auto-encoder's code was frozen."""
    if isinstance(model, (PixelCNNAutoEncoder, MSEAutoEncoder)):
        m = model.encoder.config.code_dim
        configs = json.dumps({part: getattr(model, part).config.to_dict() for part in model.parts}, indent=2)
        if isinstance(model, MSEAutoEncoder):
            return (f"An MSE auto-encoder, the baseline of the paper's section 3.4: a strided convolutional encoder to a "
                    f"code of m = {m} numbers and a deconvolution decoder, trained on mean squared error", configs)
        start = (f"A PixelCNN auto-encoder (the paper's section 3.4): a strided convolutional encoder to a code of "
                 f"m = {m} numbers, decoded by a Gated PixelCNN")
        if model.config.conditioning != "sketch":
            return (f"{start} with {model.config.conditioning} conditioning, both trained end to end on the decoder's "
                    f"likelihood", configs)
        commands = [str(run.get("command", "")).split() for run in history]
        sources = [words[k + 1] for words in commands for k, word in enumerate(words[:-1]) if word == "--code_from"]
        source = f" (`{sources[-1]}`, whose card gives its training)" if sources else ""
        how = (f"the encoder and m(h) are an MSE auto-encoder's{source}, trained on mean squared error and then "
               f"frozen; the PixelCNN learnt on its likelihood given the sketch"
               if any("--freeze_code" in words for words in commands) else
               "encoder, m(h) and PixelCNN trained end to end on the PixelCNN's likelihood")
        if sources and "--code_from" not in commands[0]:
            how += ("; the runs before the first `--code_from` trained its PixelCNN layers with an encoder and a "
                    "conditioning it no longer has")
        return (f"{start} that reads, at every location, a blurry sketch of the image drawn from the code by a "
                f"deconvolution network m(h) (`sketch` conditioning): {how}", configs)
    config = model.config
    kind = {"class": "class-conditional ", "none": "unconditional "}.get(config.conditioning, "")
    name = "Gated PixelCNN" if config.architecture == "gated" else "PixelCNN"
    return f"A {kind}{name} (van den Oord et al., 2016)", config.to_json()


def run_notes(run: dict[str, Any]) -> str:
    """What a history row says beyond its command: condition dropout, the time budget."""
    notes = []
    if run.get("cond_dropout"):
        notes.append(f"condition dropout {run['cond_dropout']:g}")
    if run.get("time_budget_min"):
        stopped = ", which set its length" if run.get("stopped_by_budget") else ""
        notes.append(f"time budget {run['time_budget_min']:g} min{stopped}")
    return f" ({'; '.join(notes)})" if notes else ""


def null_row(model: nn.Module) -> str:
    """The card's row on the null condition that guidance uses (none for an unconditional model)."""
    part = conditioned_part(model)
    if part is None or part.condition.width == 0:
        return ""
    how = ("learnt by condition dropout" if part.config.learned_null else
           "not learnt: the average condition (for a class model, the mix of its classes; else the mean "
           "embedding or code of the training data)")
    return f"\n| null condition (for guidance) | {how} |"


def model_card(metrics: dict[str, Any], model: nn.Module, title: str) -> str:
    """The model card (README.md), generated from `metrics.json`: never parsed back."""
    runs = metrics["history"]
    metric = metric_of(model)
    key, name = f"test_{metric}", METRIC_NAMES[metric]
    what, config_json = describe_model(model, runs)
    rows = "\n".join(
        f"| {k + 1} | `{run['command']}` | {run['steps']:,} x {run['batch_size']}{run_notes(run)} "
        f"| {run['wall_time_s'] / 60:.1f} min"
        f" | {run['core_hours'] if run.get('core_hours') is not None else '-'} | {run['hardware']} | "
        f"{run[key]:.4f} |" for k, run in enumerate(runs))
    core_hours = sum(run.get("core_hours") or 0 for run in runs)
    return f"""---
library_name: pixelcnn
tags:
- pixelcnn
- gated-pixelcnn
- image-generation
datasets:
- {metrics['dataset']}
metrics:
- {"bits_per_dim" if metric == "bpd" else "mse"}
---

# {title}

{what}. Trained with `python -m pixelcnn.train`; load it with
`pixelcnn.from_pretrained("<this folder or repo id>")`; the weights are the EMA (Polyak) average.

| | |
|---|---|
| dataset | `{metrics['dataset']}`: {metrics['train_images']:,} training images |
| test {name} | **{metrics[key]:.4f}** on {metrics['test_images']:,} images of the test split (EMA weights) |
| training | {sum(run['steps'] for run in runs):,} steps in {len(runs)} run(s), {core_hours:.2f} CPU core-hours |
| parameters | {metrics['parameters']:,} |{null_row(model)}
| torch | {metrics['torch']} |

The figures come from `metrics.json` beside the weights, written by the training run.
{card_extras(metrics)}
## History

Each run continued from the weights of the one before (`--init_from`) with a fresh optimiser and
learning-rate schedule; steps count that run only.

| run | command | steps x batch | wall time | core-hours | hardware | test {name} after |
|---|---|---|---|---|---|---|
{rows}

Model config:

```json
{config_json}
```
"""


# metrics.json key -> its card section; an experiment registers its own (`card_section`)
CARD_SECTIONS: dict[str, Any] = {}


def card_section(key: str):
    """Decorator: render(metrics[key]) -> markdown becomes the model card's section for `key`."""
    def register(render):
        CARD_SECTIONS[key] = render
        return render
    return register


def card_extras(metrics: dict[str, Any]) -> str:
    """Sections for measurements added to metrics.json after training (sample recognition, portraits)."""
    parts = []
    if "test_mse" in metrics:
        parts.append(f"\n**Reconstruction error** on the test split: MSE {metrics['test_mse']:.5f} with pixels scaled "
                     f"to [0, 1], a PSNR of **{psnr(metrics['test_mse']):.2f} dB** (of the mean MSE).\n")
    if "autoencoder" in metrics:
        a = metrics["autoencoder"]
        parts.append(f"""
**What the code is worth**, on the first {a['test_images']:,} test images (`python -m pixelcnn.autoencoder`):

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
    if "recognised" in metrics:
        r = metrics["recognised"]
        parts.append(f"\n**Samples that read as their class**: {r['rate']:.1%} of {r['samples']} class-conditional "
                     f"samples (temperature {r['temperature']:g}, seed {r['seed']}) are recognised as the class "
                     f"asked for by a small MNIST classifier (" + (
                         f"{r['classifier_test_accuracy']:.1%} on the test split; "
                         if r.get("classifier_test_accuracy") is not None else "") +
                     "`classifier/`, `pixelcnn.evaluation`).\n")
        if "guidance" in r:
            rows = "".join(f"| {w}{' (the app default)' if float(w) == r.get('default_guidance') else ''} | "
                           f"{rate:.1%} |\n" for w, rate in r["guidance"].items())
            parts.append(f"\nWith classifier-free guidance against the null condition (the same {r['samples']:,} "
                         f"draws: classes, seed and temperature):\n\n"
                         f"| guidance w | samples recognised |\n|---|---|\n{rows}")
    for key, render in CARD_SECTIONS.items():
        if key in metrics:
            parts.append(render(metrics[key]))
    if "conditioning_comparison" in metrics:
        c = metrics["conditioning_comparison"]
        rows = "".join(f"| {name} | " + ", ".join(f"{bpd:.3f} at {step}" for step, bpd in curve.items()) + " |\n"
                       for name, curve in c.items() if isinstance(curve, dict))
        parts.append(f"\n**Forms of conditioning compared** ({c.get('note', 'test bits/dim at equal steps')}):\n\n"
                     f"| conditioning | test bits/dim at step |\n|---|---|\n{rows}")
    if str(metrics.get("dataset", "")).startswith("celeba-"):
        parts.append("\n**Data terms.** Trained on face crops from CelebA (Liu et al., 2015), whose terms allow "
                     "non-commercial research use only; these weights inherit them. Embeddings come from dlib's "
                     "ResNet face descriptor (`pixelcnn.faces`). The example faces are photos of held-out "
                     "people, never seen in training.\n")
    return "".join(parts)


def rewrite_card(folder: Path, model: nn.Module) -> None:
    """Regenerate a folder's model card from its metrics.json, keeping the card's title: for the
    measurements that run after training (`pixelcnn.faces`, `pixelcnn.evaluation`)."""
    folder = Path(folder)
    card = folder / "README.md"
    titles = [line[2:] for line in card.read_text().splitlines() if line.startswith("# ")] if card.is_file() else []
    card.write_text(model_card(read_metrics(folder), model, titles[0] if titles else folder.name))


def write_export(model: nn.Module, folder: Path, metrics: dict[str, Any], title: str) -> None:
    """save_pretrained, then metrics.json and the model card generated from it."""
    model.save_pretrained(folder)
    (folder / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n")
    (folder / "README.md").write_text(model_card(metrics, model, title))


# ------------------------------------------------------------------------------------ training
class TimeBudget:
    """`--time_budget`: how many steps fit, planned from the measured speed, so that the learning-rate
    schedule still ends at the last step and evaluation and export finish in time.

    The first plan comes after CALIBRATION_STEPS steps of this process; it is revised every
    REPLAN_EVERY steps from the speed since the last plan, evaluations included (a machine that
    was busy at the start frees up, or the reverse). total_steps: the planned last step (cfg.steps
    without a budget), checkpointed with the plan. reserve: seconds kept for evaluation and export.
    """

    CALIBRATION_STEPS = 20  # steps of this process timed before the first plan
    REPLAN_EVERY = 100
    EXPORT_SECONDS = 20.0   # weights, card and plots, beyond the final evaluation

    def __init__(self, cfg: TrainConfig) -> None:
        self.seconds = cfg.time_budget * 60
        self.total_steps, self.reserve, self.planned, self.stopped_early = cfg.steps, 0.0, False, False
        self.last_plan: tuple[int, float] | None = None  # (step, elapsed) of the last plan in this process

    def calibrating(self, steps_here: int) -> bool:
        return self.seconds > 0 and steps_here >= self.CALIBRATION_STEPS and (
            steps_here == self.CALIBRATION_STEPS or steps_here % self.REPLAN_EVERY == 0)

    def out_of_time(self, elapsed: float) -> bool:
        return self.seconds > 0 and elapsed + self.reserve > self.seconds

    def plan(self, *, step: int, elapsed: float, per_step: float, eval_per_step: float, final_eval: float,
             max_steps: int) -> None:
        """Fix the reserve and the number of steps that fit in what is left."""
        self.reserve = 1.5 * final_eval + self.EXPORT_SECONDS
        if self.last_plan is not None and step > self.last_plan[0]:  # measured speed, evaluations included
            per_step, eval_per_step = (elapsed - self.last_plan[1]) / (step - self.last_plan[0]), 0.0
        left = self.seconds - elapsed - self.reserve
        self.total_steps = min(max_steps, step + max(1, int(0.97 * left / (per_step + eval_per_step))))
        self.planned, self.last_plan = True, (step, elapsed)


class Trainer:
    """One training run: setup (or resume), the loop, checkpoints, evaluation and export.

    State that a resume restores: model, EMA, optimiser, step, (epoch, position) in the data,
    elapsed time and every RNG. The learning rate is a function of the step.
    """

    def __init__(self, cfg: TrainConfig, model_config: PixelCNNConfig, argv: list[str] | None) -> None:
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.argv = cfg, argv
        self.world, self.device = setup_world(cfg.device)
        if cfg.batch_size % self.world.size:
            raise TrainingError(f"batch_size {cfg.batch_size} must be divisible by the {self.world.size} processes")
        self.autocast = cfg.bf16 and self.device.type == "cuda"
        self.out = Path(cfg.out_dir)
        self.ckpt_path = self.out / CHECKPOINT
        self.metrics_path = self.out / "metrics.jsonl"
        checkpoint = self._read_checkpoint(model_config)
        self.train_data, self.test_data = load_training_data(cfg, model_config, cfg.encoder != "none")
        if cfg.train_images > 0:
            self.train_data = self.train_data.subset(torch.arange(min(cfg.train_images, len(self.train_data))))
        if len(self.train_data) < cfg.batch_size:
            raise TrainingError(f"{len(self.train_data)} training images cannot fill one batch of {cfg.batch_size}")
        torch.manual_seed(cfg.seed)
        self.model_config = model_config
        self.model = build_trainable(cfg, model_config).to(self.device)
        self.metric = metric_of(self.model)
        keep_null = False
        if cfg.init_from and checkpoint is None:
            self.history = load_initial_weights(self.model, cfg.init_from)
            self.say(f"initialised from {cfg.init_from} (fresh optimiser and schedule)")
            keep_null = learned_null_in(cfg.init_from)
        if cfg.code_from and checkpoint is None:
            self.say(load_code_weights(self.model, cfg.code_from))
        if cfg.freeze_code:
            self.say(f"frozen: {freeze_code(self.model):,} parameters of the encoder and m(h) do not learn")
        fresh_condition = checkpoint is None and (not cfg.init_from or not statistics_fitted(self.model))
        if fresh_condition and fit_condition_statistics(self.model, self.train_data):
            self.say("standardised h with the mean and std of the training vectors; V starts at 0")
        if checkpoint is None and not keep_null and set_average_null(self.model, self.train_data, self.device):
            self.say("the null condition starts as the average condition of the training data"
                     + (" and learns from the dropped ones" if cfg.cond_dropout > 0 else ""))
        self.ema = AveragedModel(self.model, avg_fn=ema_average(cfg.ema_decay))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step, self.epoch, self.position, self.elapsed_before, self.cpu_before = 0, 0, 0, 0.0, 0.0
        self.budget = TimeBudget(cfg)
        if checkpoint is not None:
            self._restore(checkpoint)
        self.net = Objective(self.model, cfg.cond_dropout)
        if self.world.size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self._prepare_outputs(fresh=checkpoint is None)

    def say(self, text: str) -> None:
        if self.world.main:
            print(text, flush=True)

    # ---------------------------------------------------------------- checkpoints
    def _read_checkpoint(self, model_config: PixelCNNConfig) -> dict[str, Any] | None:
        """The checkpoint to resume, or None; sets the history of earlier runs this one continues."""
        self.history: list[dict[str, Any]] = []
        if not self.ckpt_path.exists():
            if self.cfg.resume:
                self.say(f"--resume: no checkpoint in {self.out} yet, starting a new run")
            return None
        if not self.cfg.resume:
            raise TrainingError(f"{self.out} already holds a run ({CHECKPOINT}); pass --resume to continue it, "
                                f"or choose another --out_dir")
        checkpoint = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        saved = PixelCNNConfig.from_dict(checkpoint["model_config"])
        if saved != model_config:
            raise TrainingError(f"--resume: the model config differs from the checkpoint's ({saved.to_json()})")
        # a run started with --init_from before histories were checkpointed takes its start's history
        self.history = checkpoint.get("history") or initial_history(self.cfg.init_from)
        return checkpoint

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.ema.load_state_dict(checkpoint["ema"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.step, self.epoch, self.position = checkpoint["step"], checkpoint["epoch"], checkpoint["position"]
        self.elapsed_before = checkpoint["elapsed"]
        if self.cfg.time_budget > 0 and checkpoint.get("budget_planned"):  # keep the plan, and so the schedule
            self.budget.total_steps = min(checkpoint["total_steps"], self.cfg.steps)
            self.budget.planned = True
        self.cpu_before = checkpoint.get("cpu_time", 0.0)
        rng = checkpoint["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(tuple(_to_python(rng["python"])))
        np.random.set_state(tuple(_to_python(rng["numpy"])))
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"][self.world.local_rank % len(rng["cuda"])])
        self.say(f"resumed {self.out} at step {self.step} (epoch {self.epoch}, image {self.position})")

    def save_checkpoint(self) -> None:
        if not self.world.main:
            return
        rng = {"torch": torch.get_rng_state(), "python": _to_tensors(random.getstate()),
               "numpy": _to_tensors(np.random.get_state())}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        atomic_torch_save({"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                           "optimizer": self.optimizer.state_dict(),
                           "step": self.step, "epoch": self.epoch, "position": self.position,
                           "total_steps": self.budget.total_steps, "budget_planned": self.budget.planned,
                           "elapsed": self.elapsed, "cpu_time": self.cpu_time, "rng": rng, "history": self.history,
                           "train_config": dataclasses.asdict(self.cfg),
                           "model_config": self.model_config.to_dict()}, self.ckpt_path)
        self.last_ckpt_step = self.step

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start_time

    @property
    def cpu_time(self) -> float:
        """CPU seconds this run has used, over all its resumes (core-hours x 3600)."""
        return self.cpu_before + time.process_time() - self.cpu_start

    def _prepare_outputs(self, fresh: bool) -> None:
        if not self.world.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps({"train": dataclasses.asdict(self.cfg),
                                                          "model": self.model_config.to_dict()}, indent=2) + "\n")
        if fresh:
            self.metrics_path.write_text("")
        else:  # drop log lines written after the checkpoint, which the resumed run repeats
            kept = [line for line in self.metrics_path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= self.step]
            self.metrics_path.write_text("".join(line + "\n" for line in kept))

    def log(self, record: dict[str, Any]) -> None:
        if self.world.main:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    # ---------------------------------------------------------------- the loop
    def train_step(self) -> float:
        """One optimiser step on the next global batch; returns its loss (bits/dim or MSE) averaged over ranks."""
        cfg, world = self.cfg, self.world
        if self.position + cfg.batch_size > len(self.train_data):
            self.epoch, self.position = self.epoch + 1, 0
        idx = batch_indices(self.epoch, self.position, cfg.batch_size, len(self.train_data), cfg.seed)
        per_rank = cfg.batch_size // world.size
        batch = self.train_data.batch(idx[world.rank * per_rank:(world.rank + 1) * per_rank],
                                      self.model.config.levels)
        images = batch["images"].to(self.device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            loss = self.net(images, condition_of(self.model, batch, self.device))  # bits/dim (or MSE)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # the schedule is a function of the step (and the planned total, checkpointed): nothing to restore
        lr = learning_rate(self.step, cfg, self.budget.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        value = loss.detach()
        if world.size > 1:
            dist.all_reduce(value)
            value /= world.size
        value = value.item()
        if not math.isfinite(value):
            raise TrainingError(f"the loss became {value} at step {self.step + 1}; stopping. The last good checkpoint "
                                f"(step {self.last_ckpt_step}, {self.ckpt_path}) is intact: resume it with a lower "
                                f"--lr or a tighter --grad_clip")
        self.optimizer.step()
        self.ema.update_parameters(self.model)
        self.step += 1
        self.position += cfg.batch_size
        return value

    def periodic(self, progress: Any) -> None:
        """Evaluation, sample grids and checkpoints, each at its own cadence."""
        cfg, main = self.cfg, self.world.main
        if main and cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < self.budget.total_steps:
            value, n = evaluate(self.ema.module, self.test_data, cfg.eval_images, cfg.eval_batch_size,
                                self.device, self.autocast)
            self.log({"step": self.step, f"test_{self.metric}": value, "test_images": n})
            if progress is not None:
                progress.write(f"step {self.step}: test {METRIC_NAMES[self.metric]} {value:.4f} on {n} images (EMA)")
            plot_curves(self.metrics_path, self.out / "curves.png", self.metric)
        if main and cfg.sample_every and self.step % cfg.sample_every == 0:
            sample_grid(self.ema.module, self.test_data, self.out / "samples" / f"step_{self.step:07d}.png")
        if self.step % cfg.ckpt_every == 0 or self.step == self.budget.total_steps:
            self.save_checkpoint()

    def run(self) -> Path | None:
        """Train to `cfg.steps` (or as many as `cfg.time_budget` allows), then evaluate and export on
        rank 0; returns the exported folder."""
        cfg = self.cfg
        progress = None
        if self.world.main and cfg.progress:
            from tqdm.auto import tqdm  # a notebook bar in Jupyter, a text bar in a terminal
            progress = tqdm(total=self.budget.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                            file=sys.stdout)
        self.start_time, self.cpu_start = time.perf_counter(), time.process_time()
        self.last_ckpt_step = self.step
        running, window_start, window_images = None, time.perf_counter(), 0
        loop_start, first_step = time.perf_counter(), self.step
        try:
            while self.step < self.budget.total_steps:
                if self.budget.out_of_time(self.elapsed):
                    self.say(f"--time_budget: stopping at step {self.step} to leave time for evaluation and export")
                    self.budget.total_steps, self.budget.stopped_early = self.step, True
                    self.save_checkpoint()
                    break
                value = self.train_step()
                if self.budget.calibrating(self.step - first_step):
                    self.plan_budget((time.perf_counter() - loop_start) / (self.step - first_step), progress)
                running = value if running is None else 0.98 * running + 0.02 * value
                window_images += cfg.batch_size
                if progress is not None:
                    progress.update(1)
                if self.step % cfg.log_every == 0 or self.step == self.budget.total_steps:
                    now = time.perf_counter()
                    rate = window_images / (now - window_start)
                    window_start, window_images = now, 0
                    self.log({"step": self.step, f"train_{self.metric}": running,
                              "lr": learning_rate(self.step - 1, cfg, self.budget.total_steps),
                              "images_per_s": rate, "elapsed": self.elapsed})
                    if progress is not None:
                        progress.set_postfix({self.metric: f"{running:.4f}", "img_s": f"{rate:.1f}"})
                self.periodic(progress)
        finally:
            if progress is not None:
                progress.close()
        print(f"rank {self.world.rank} parameter checksum {parameter_checksum(self.model)}", flush=True)
        exported = self.export() if self.world.main else None
        if self.world.size > 1:
            dist.barrier()
            dist.destroy_process_group()
        return exported

    def plan_budget(self, per_step: float, progress: Any) -> None:
        """Time one evaluation batch, then plan the steps that fit in `--time_budget` (`TimeBudget`)."""
        cfg = self.cfg
        started = time.perf_counter()
        _, n = evaluate(self.ema.module, self.test_data, cfg.eval_batch_size, cfg.eval_batch_size, self.device,
                        self.autocast)
        per_image = (time.perf_counter() - started) / n
        periodic = min(cfg.eval_images or len(self.test_data), len(self.test_data)) / cfg.eval_every if cfg.eval_every else 0
        final = cfg.final_eval_images if cfg.final_eval_images > 0 else len(self.test_data)
        was_planned = self.budget.last_plan is not None
        self.budget.plan(step=self.step, elapsed=self.elapsed, per_step=per_step, eval_per_step=per_image * periodic,
                         final_eval=per_image * min(final, len(self.test_data)), max_steps=cfg.steps)
        if not was_planned:
            self.say(f"--time_budget {cfg.time_budget:g} min: {per_step:.2f} s/step, so {self.budget.total_steps} steps "
                     f"(of {cfg.steps}); {self.budget.reserve:.0f} s kept for evaluation and export")
        self.log({"step": self.step, "planned_steps": self.budget.total_steps})
        if progress is not None:
            progress.total = self.budget.total_steps
            progress.refresh()

    def export(self) -> Path:
        """Evaluate the EMA weights on the test split; save them with metrics.json and the model card."""
        cfg, wall = self.cfg, self.elapsed
        value, n = evaluate(self.ema.module, self.test_data, cfg.final_eval_images, cfg.eval_batch_size,
                            self.device, self.autocast)
        self.log({"step": self.step, f"test_{self.metric}": value, "test_images": n, "final": True})
        plot_curves(self.metrics_path, self.out / "curves.png", self.metric)
        final = build_trainable(cfg, self._export_config())
        final.load_state_dict(self.ema.module.state_dict())
        if not self.model_config.learned_null:  # the average condition of the final weights (a code moves)
            set_average_null(final.to(self.device), self.train_data, self.device)
        args = " ".join(self.argv if self.argv is not None else sys.argv[1:])
        launcher = (f"torchrun --nproc_per_node={self.world.size} -m pixelcnn.train" if self.world.size > 1
                    else "python -m pixelcnn.train")
        metrics = run_metrics(cfg, final, steps=self.step, wall_time=wall, cpu_time=self.cpu_time,
                              hardware=hardware_description(self.device, self.world), test_value=value,
                              test_images=n, train_images=len(self.train_data), command=f"{launcher} {args}",
                              history=self.history, budget=self.budget)
        exported = self.out / "model"
        write_export(final, exported, metrics, f"{cfg.preset} on {cfg.data}")
        if self.model.condition_field == "labels":
            export_examples(self.test_data, exported / "examples")
        print(f"test {METRIC_NAMES[self.metric]} {value:.4f} on {n} images; exported {exported}", flush=True)
        return exported

    def _export_config(self) -> PixelCNNConfig:
        """The model config, with the dataset's class names when they name the model's classes."""
        config = self.model_config
        names = self.train_data.class_names
        if self.model.condition_field == "labels" and len(names) == config.num_classes:
            return config.replace(class_names=names)
        return config


def train(cfg: TrainConfig, model_config: PixelCNNConfig, argv: list[str] | None = None) -> Path | None:
    """Run (or resume) training; returns the exported model folder on rank 0."""
    return Trainer(cfg, model_config, argv).run()


def initial_history(source: str | None) -> list[dict[str, Any]]:
    """The runs recorded in the metrics.json of a local model folder (empty for none or a Hub id)."""
    if not source or not Path(source).is_dir():
        return []
    return list((read_metrics(source) or {}).get("history", []))


CONDITION_FIELDS = ("conditioning", "cond_dim", "num_classes", "class_names", "spatial_channels", "standardise_cond",
                    "learned_null")


def load_initial_weights(model: nn.Module, source: str) -> list[dict[str, Any]]:
    """Copy the weights of a saved model into `model`; returns the history in its metrics.json.

    A model of the same shape is copied whole (class names may differ); a shallower gated model is
    deepened (`deepen`). A plain PixelCNN that differs from `model`'s PixelCNN (or auto-encoder
    decoder) only in its conditioning is a warm start (`warm_start`).
    """
    start = from_pretrained(source)
    names = ("class_names", "learned_null")
    if type(start) is type(model) and _config_without(start, names) == _config_without(model, names):
        model.load_state_dict(start.state_dict())
        return initial_history(source)
    if type(start) is type(model) and is_deeper_twin(model, start):
        copied, total = deepen(model, start), len(model.state_dict())
        print(f"--init_from {source}: copied {copied} of {total} tensors into the first {start.config.n_layers} "
              f"of {model.config.n_layers} layers; the new layers start with their output at 0", flush=True)
        return initial_history(source)
    target = model.decoder if isinstance(model, PixelCNNAutoEncoder) else model
    if isinstance(start, PixelCNNAutoEncoder) and isinstance(model, PixelCNNAutoEncoder):
        start = start.decoder  # an auto-encoder of another conditioning: its decoder's layers, not its encoder
    if (isinstance(start, PixelCNNAutoEncoder) or type(start) is not type(target)
            or _config_without(start, CONDITION_FIELDS) != _config_without(target, CONDITION_FIELDS)):
        raise TrainingError(f"--init_from {source}: it holds a {type(start).__name__} whose config differs from "
                            f"this run's model ({start.config.to_json()}), beyond its conditioning")
    copied, total = warm_start(target, start), len(target.state_dict())
    print(f"--init_from {source}: copied {copied} of {total} tensors; the other {total - copied}, the "
          f"conditioning's, start fresh (V = 0)", flush=True)
    return initial_history(source)


def learned_null_in(source: str) -> bool:
    """Whether the saved model at `source` (or its decoder) learnt its null condition."""
    start = from_pretrained(source)
    part = conditioned_part(start)
    return part is not None and part.config.learned_null


def load_code_weights(model: nn.Module, source: str) -> str:
    """Start a PixelCNN auto-encoder's encoder, and a "sketch" decoder's m(h), from a saved MSE
    auto-encoder of the same code (`--code_from`): its code already holds the image's layout and
    its decoder already draws it. Returns what was copied, in words."""
    start = from_pretrained(source)
    if not isinstance(model, PixelCNNAutoEncoder) or not isinstance(start, MSEAutoEncoder):
        raise TrainingError(f"--code_from {source}: it starts a PixelCNN auto-encoder (--encoder conv) from an "
                            f"MSE auto-encoder, got a {type(start).__name__} for a {type(model).__name__}")
    if start.encoder.config != model.encoder.config:
        raise TrainingError(f"--code_from {source}: its encoder ({start.encoder.config}) differs from this run's "
                            f"({model.encoder.config}); match --cond_dim and --encoder_channels")
    model.encoder.load_state_dict(start.encoder.state_dict())
    if model.config.conditioning != "sketch":
        return f"encoder copied from {source}"
    sketch = model.decoder.condition.spatial_net.decoder
    if sketch.config != start.decoder.config:
        raise TrainingError(f"--code_from {source}: its decoder ({start.decoder.config}) cannot be this run's sketch "
                            f"({sketch.config}); set --spatial_channels to its {start.decoder.config.channels}")
    sketch.load_state_dict(start.decoder.state_dict())
    return f"encoder and m(h), the sketch, copied from {source}"


def freeze_code(model: nn.Module) -> int:
    """Stop an auto-encoder's encoder and its decoder's m(h) from learning (`--freeze_code`): the
    code and the sketch stay the MSE auto-encoder's, which keep the image's layout, and the PixelCNN
    learns to draw what they leave open. Returns how many parameters were frozen."""
    if not isinstance(model, PixelCNNAutoEncoder):
        raise TrainingError("--freeze_code freezes a PixelCNN auto-encoder's encoder: it needs --encoder conv")
    # a learned null condition (--cond_dropout) still learns: it is no part of the code
    frozen = [*model.encoder.parameters(),
              *(p for name, p in model.decoder.condition.named_parameters() if name != "null_h")]
    for parameter in frozen:
        parameter.requires_grad_(False)
    return sum(parameter.numel() for parameter in frozen)


def _config_without(model: nn.Module, names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in model.config.to_dict().items() if k not in names}


def is_deeper_twin(model: nn.Module, start: nn.Module) -> bool:
    """Whether `model` is a gated PixelCNN like `start` but with more layers (see `deepen`)."""
    names = ("class_names", "n_layers", "learned_null")
    return (isinstance(model, GatedPixelCNN) and isinstance(start, GatedPixelCNN)
            and model.config.n_layers > start.config.n_layers
            and _config_without(start, names) == _config_without(model, names))


def copy_matching_tensors(target: nn.Module, start: nn.Module, skip: tuple[str, ...] = (),
                          extra: dict[str, torch.Tensor] | None = None) -> int:
    """Load every tensor of `start` that `target` has under the same name and shape (except names
    starting with `skip`), then `extra`; returns how many were loaded."""
    state = target.state_dict()
    shared = {k: v for k, v in start.state_dict().items()
              if k in state and state[k].shape == v.shape and not k.startswith(skip)}
    shared.update(extra or {})
    target.load_state_dict(shared, strict=False)
    return len(shared)


@torch.no_grad()
def deepen(target: nn.Module, start: nn.Module) -> int:
    """Copy a gated PixelCNN into `target`, the same model with more layers; returns how many tensors
    were copied. The new layers sit on top of the copied ones with their horizontal output at 0, so
    the residual stream passes through them unchanged: `target` starts with exactly `start`'s
    likelihood, and the receptive field grows (paper's lever: depth) as the new layers learn."""
    copied = copy_matching_tensors(target, start)
    for layer in target.layers[start.config.n_layers:]:
        layer.horizontal_out.weight.zero_()
        layer.horizontal_out.bias.zero_()
    return copied


def warm_start(target: nn.Module, start: nn.Module) -> int:
    """Copy `start`'s layers into a PixelCNN that differs only in its conditioning; returns how
    many tensors were copied. The conditioning weights, which have no counterpart, start fresh;
    a class model's class biases are folded in (`folded_class_biases`) and every V is zeroed, so
    training starts from `start`'s likelihood with its condition averaged out."""
    conditioning = tuple(f"{name}." for name, module in target.named_modules()
                         if isinstance(module, ConditionBias) or name == "condition")
    copied = copy_matching_tensors(target, start, skip=conditioning, extra=folded_class_biases(start))
    zero_condition_weights(target)
    return copied


def folded_class_biases(model: nn.Module) -> dict[str, torch.Tensor]:
    """A class-conditional gated model's gate biases with its class biases V h folded in, for h the
    mean one-hot (every class at once): the model without its condition, as close as it gets.

    The vertical class bias is added after the vertical-to-horizontal link, the convolution's own
    bias before it: the link's bias takes the difference back out (exact below the first row)."""
    if model.config.conditioning != "class" or model.config.architecture != "gated":
        return {}
    state, out = model.state_dict(), {}
    for name, weight in state.items():
        if not name.endswith(".proj.weight") or ".cond_" not in name:
            continue
        layer, stack = name.split(".cond_")[0], name.split(".cond_")[1].split(".")[0]  # vertical / horizontal
        mean_bias = weight.mean(dim=1)  # (2p,) = V h for h the mean one-hot
        out[f"{layer}.{stack}.bias"] = state[f"{layer}.{stack}.bias"] + mean_bias
        if stack == "vertical":
            link = state[f"{layer}.vertical_to_horizontal.weight"][:, :, 0, 0]
            out[f"{layer}.vertical_to_horizontal.bias"] = (state[f"{layer}.vertical_to_horizontal.bias"]
                                                           - link @ mean_bias)
    return out


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
