"""Train a PixelCNN: one script from a laptop CPU to many GPUs.

    python -m pixelcnn.train --preset mnist-class --data_dir ../shared/data
    python -m pixelcnn.train --preset mnist-class --resume            # continue a stopped run exactly
    torchrun --nproc_per_node=4 -m pixelcnn.train --preset cifar10-class --batch_size 256

The command line, the presets and `TrainConfig` live in `pixelcnn.presets`; starting from saved
weights in `pixelcnn.surgery`; the metrics and the card in `pixelcnn.cards`.

Outputs in `out_dir` (written by rank 0 only): `checkpoint.pt` (atomic, every `ckpt_every` steps and
at the end), `metrics.jsonl`, `curves.png`, `samples/step_XXXXXXX.png`, and `model/`: the EMA
weights exported with `save_pretrained` and a model card with the measured test bits/dim.
"""

import dataclasses
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .autoencoder import conditioned_part
from .cards import (METRIC_NAMES, copy_sketch_card, export_examples, metric_of, plot_curves, run_metrics, sample_grid,
                    slice_figures, write_export)
from .config import PixelCNNConfig
from .data import DatasetError, ImageDataset, load_dataset
from .presets import TrainConfig, model_overrides, parse_args
from .runtime import (EMA, DataOrder, TimeBudget, atomic_torch_save, hardware_description, learning_rate,
                      parameter_checksum, setup_world, to_python, to_tensors)
from .surgery import (TrainingError, condition_of, fit_condition_statistics, freeze_code, initial_history,
                      learned_null_in, load_code_weights, load_initial_weights, set_average_null, statistics_fitted)
from .sketch import EmbeddingSketch, PortraitModel, posterior_sketches
from .trainables import Objective, build_trainable, drawing_sketch

CHECKPOINT = "checkpoint.pt"
__all__ = ["Trainer", "TrainConfig", "TrainingError", "build_trainable", "evaluate", "main", "parse_args", "train"]


def load_training_data(cfg: TrainConfig, config: PixelCNNConfig, encoder: bool,
                       sketch: EmbeddingSketch | None = None) -> tuple[ImageDataset, ImageDataset]:
    """The train and test splits with the conditions the model needs, checked against its config; with
    a face sketch, each photo's condition is its sketch (`posterior_sketches`). `--train_images` keeps
    the first training images, before any sketch is drawn."""
    splits = []
    for split in ("train", "test"):
        data = load_dataset(cfg.data, split, data_dir=cfg.data_dir, vector_column=cfg.vector_column)
        if cfg.vectors:
            path = Path(cfg.vectors.format(split=split))
            if not path.is_file():
                raise DatasetError(f"--vectors: {path} does not exist (one .npy file per split, '{{split}}' "
                                   f"in the name)")
            data = data.with_vectors(np.load(path))
        if split == "train" and cfg.train_images > 0:
            data = data.subset(torch.arange(min(cfg.train_images, len(data))))
        if sketch is not None:
            if data.vectors is None:
                raise DatasetError(f"--sketch_from draws each photo's sketch from its embedding, but {cfg.data} "
                                   f"({split}) has no vectors")
            data = data.with_vectors(posterior_sketches(sketch, data.images, data.vectors))
        data.check_fits(config if not encoder else config.replace(conditioning="none", learned_null=False))
        splits.append(data)
    return splits[0], splits[1]


def mirror_flips(batch_size: int, seed: int, step: int) -> torch.Tensor:
    """`--mirror`: which images of a global batch are flipped left to right, (batch_size,) bool, a random
    half fixed by (seed, step), so that a resumed run flips the same images."""
    return torch.rand(batch_size, generator=torch.Generator().manual_seed(seed * 1_000_003 + step)) < 0.5


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageDataset, limit: int, batch_size: int, device: torch.device,
             spread: bool = False) -> tuple[float, int] | tuple[float, int, dict[str, float]]:
    """Mean bits/dim (or a sketch's MSE) over the first `limit` images (0: all): (value, images), and
    with `spread`, the 5th, 50th and 95th percentiles of the images' own bits/dim (for bits/dim only).

    Never under autocast: the network runs in the model's own dtype and the likelihood is taken from
    float32 logits, so a figure does not depend on the precision training used."""
    n = len(data) if limit <= 0 else min(limit, len(data))
    per_image = metric_of(model) == "bpd"
    measure = model.bits_per_dim if per_image else getattr(model, "test_loss", model.loss)
    values = []
    for start in range(0, n, batch_size):
        batch = data.batch(torch.arange(start, min(n, start + batch_size)), model.config.levels)
        images = batch["images"].to(device)
        value = measure(images, condition_of(model, batch, device)).double().cpu()
        values.append(value if per_image else value.expand(len(images)))
    values = torch.cat(values)
    if not spread:
        return values.mean().item(), n
    quantiles = values.float().quantile(torch.tensor([0.05, 0.5, 0.95])).tolist() if per_image else []
    return values.mean().item(), n, dict(zip(("p5", "p50", "p95"), (round(q, 4) for q in quantiles)))


# ------------------------------------------------------------------------------------ training
class Trainer:
    """One training run: setup (or resume), the loop, checkpoints, evaluation and export.

    State that a resume restores: model, EMA, optimiser, step, (epoch, position) in the data,
    elapsed time and every RNG. The learning rate is a function of the step.
    """

    def __init__(self, cfg: TrainConfig, model_config: PixelCNNConfig) -> None:
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.world, self.device = setup_world(cfg.device)
        if cfg.batch_size % self.world.size:
            raise TrainingError(f"batch_size {cfg.batch_size} must be divisible by the {self.world.size} processes")
        self.autocast = cfg.bf16 and self.device.type == "cuda"
        self.out = Path(cfg.out_dir)
        self.ckpt_path = self.out / CHECKPOINT
        self.metrics_path = self.out / "metrics.jsonl"
        checkpoint = self._read_checkpoint(model_config)
        self.sketch = drawing_sketch(cfg, model_config)
        self.train_data, self.test_data = load_training_data(cfg, model_config, cfg.encoder != "none", self.sketch)
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
            keep_null = learned_null_in(cfg.init_from, conditioned_part(self.model).config.conditioning
                                        if conditioned_part(self.model) is not None else None)
        if cfg.code_from and checkpoint is None:
            self.say(load_code_weights(self.model, cfg.code_from))
        if cfg.freeze_code:
            self.say(f"frozen: {freeze_code(self.model):,} parameters of the encoder and m(h) do not learn")
        fresh_condition = checkpoint is None and (not cfg.init_from or not statistics_fitted(self.model))
        if fresh_condition and fit_condition_statistics(self.model, self.train_data):
            self.say("standardised h with the mean and std of the training vectors"
                     + ("" if isinstance(self.model, EmbeddingSketch) else "; V starts at 0"))
        if checkpoint is None and not keep_null and set_average_null(self.model, self.train_data, self.device):
            self.say("the null condition starts as the average condition of the training data"
                     + (" and learns from the dropped ones" if cfg.cond_dropout > 0 else ""))
        self.ema = EMA(self.model, cfg.ema_decay)
        self.order = DataOrder(len(self.train_data), cfg.seed)
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
        random.setstate(tuple(to_python(rng["python"])))
        np.random.set_state(tuple(to_python(rng["numpy"])))
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"][self.world.local_rank % len(rng["cuda"])])
        self.say(f"resumed {self.out} at step {self.step} (epoch {self.epoch}, image {self.position})")

    def save_checkpoint(self) -> None:
        if not self.world.main:
            return
        rng = {"torch": torch.get_rng_state(), "python": to_tensors(random.getstate()),
               "numpy": to_tensors(np.random.get_state())}
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
    def train_step(self) -> torch.Tensor:
        """One optimiser step on the next global batch; returns this rank's loss (bits/dim or MSE), a
        tensor on the device: nothing here waits for the device (`running_loss` reads it back)."""
        cfg, world = self.cfg, self.world
        if self.position + cfg.batch_size > len(self.train_data):
            self.epoch, self.position = self.epoch + 1, 0
        idx = self.order.batch(self.epoch, self.position, cfg.batch_size)
        per_rank = cfg.batch_size // world.size
        batch = self.train_data.batch(idx[world.rank * per_rank:(world.rank + 1) * per_rank],
                                      self.model.config.levels)
        images = batch["images"].to(self.device, non_blocking=True)
        if cfg.mirror:  # the global batch's flips, this rank's share: the same on 1 or N processes
            flip = mirror_flips(cfg.batch_size, cfg.seed, self.step)[world.rank * per_rank:(world.rank + 1) * per_rank]
            images = torch.where(flip.to(self.device)[:, None, None, None], images.flip(-1), images)
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
        self.optimizer.step()
        self.ema.update_parameters(self.model)
        self.step += 1
        self.position += cfg.batch_size
        return loss.detach()

    def running_loss(self) -> float:
        """The running average of the loss over the ranks, read back from the device (at log steps and
        before each checkpoint): a non-finite one stops the run before a checkpoint can keep it."""
        if self.running is None:  # no step yet in this process
            return float("nan")
        value = self.running.clone()
        if self.world.size > 1:
            dist.all_reduce(value)
            value /= self.world.size
        value = value.item()
        if not math.isfinite(value):
            raise TrainingError(f"the loss became {value} by step {self.step}; stopping. The last good checkpoint "
                                f"(step {self.last_ckpt_step}, {self.ckpt_path}) is intact: resume it with a lower "
                                f"--lr or a tighter --grad_clip")
        return value

    def periodic(self, progress: Any) -> None:
        """Evaluation, sample grids and checkpoints, each at its own cadence."""
        cfg, main = self.cfg, self.world.main
        if main and cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < self.budget.total_steps:
            value, n = evaluate(self.ema.module, self.test_data, cfg.eval_images, cfg.eval_batch_size, self.device)
            self.log({"step": self.step, f"test_{self.metric}": value, "test_images": n})
            if progress is not None:
                progress.write(f"step {self.step}: test {METRIC_NAMES[self.metric]} {value:.4f} on {n} images (EMA)")
            plot_curves(self.metrics_path, self.out / "curves.png", self.metric)
        if main and cfg.sample_every and self.step % cfg.sample_every == 0:
            sample_grid(self.ema.module, self.test_data, self.out / "samples" / f"step_{self.step:07d}.png")
        if self.step % cfg.ckpt_every == 0 or self.step == self.budget.total_steps:
            self.running_loss()  # never checkpoint weights that a non-finite loss has reached
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
        self.running, window_start, window_images = None, time.perf_counter(), 0
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
                self.running = value if self.running is None else 0.98 * self.running + 0.02 * value
                window_images += cfg.batch_size
                if progress is not None:
                    progress.update(1)
                if self.step % cfg.log_every == 0 or self.step == self.budget.total_steps:
                    running = self.running_loss()
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
        _, n = evaluate(self.ema.module, self.test_data, cfg.eval_batch_size, cfg.eval_batch_size, self.device)
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
        value, n, spread = evaluate(self.ema.module, self.test_data, cfg.final_eval_images, cfg.eval_batch_size,
                                    self.device, spread=True)
        self.log({"step": self.step, f"test_{self.metric}": value, "test_images": n, "final": True})
        plot_curves(self.metrics_path, self.out / "curves.png", self.metric)
        final = build_trainable(cfg, self._export_config())
        final.load_state_dict(self.ema.module.state_dict())
        if not self.model_config.learned_null:  # the average condition of the final weights (a code moves)
            set_average_null(final.to(self.device), self.train_data, self.device)
        stopped = cfg.time_budget > 0 and (self.budget.stopped_early or self.step < cfg.steps)
        metrics = run_metrics(cfg, final, steps=self.step, wall_time=wall, cpu_time=self.cpu_time,
                              hardware=hardware_description(self.device, self.world), test_value=value,
                              test_images=n, train_images=len(self.train_data), processes=self.world.size,
                              model_overrides=model_overrides(cfg.preset, self.model_config),
                              history=self.history, stopped_by_budget=stopped)
        metrics["slice"] = slice_figures(final, self.test_data)
        if spread:  # the range of the test images' own bits/dim, which the app shows beside a measured image
            metrics["test_bpd_spread"] = spread
        if self.test_data.split_info is not None:  # a source without a test split of its own: how it was held out
            metrics["split"] = self.test_data.split_info
        exported = self.out / "model"
        if self.sketch is not None:  # the PixelCNN with the sketch it reads: one portrait model
            final = PortraitModel(self.sketch.to(final.device), final)
        write_export(final, exported, metrics, f"{cfg.preset} on {cfg.data}")
        if self.sketch is not None:
            copy_sketch_card(cfg.sketch_from, exported / "sketch")
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


def train(cfg: TrainConfig, model_config: PixelCNNConfig) -> Path | None:
    """Run (or resume) training; returns the exported model folder on rank 0. The run's history
    records `cfg` as given, whether it came from the command line or from Python."""
    return Trainer(cfg, model_config).run()


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, model_config = parse_args(argv)
        train(cfg, model_config)
    except (TrainingError, DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("interrupted: resume from the last checkpoint with --resume", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
