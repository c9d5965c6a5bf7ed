"""What a training loop needs beyond the model: torchrun's process group, the learning-rate schedule,
the EMA, the data order, the time budget and atomic checkpoint files."""

import hashlib
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .presets import TrainConfig


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


def ema_decay(decay: float, updates: int) -> float:
    """The EMA's decay after `updates` updates, with warm-up: min(decay, (1 + n) / (10 + n)), so that the
    average follows the early, fast-moving weights instead of staying near the initialisation."""
    return min(decay, (1 + updates) / (10 + updates))


class EMA(torch.nn.Module):
    """An exponential moving average (Polyak) of a model's parameters, updated with multi-tensor ops.

    `module` holds the average (its buffers follow the model's); the first update copies the
    weights, each later one moves them by 1 - `ema_decay` towards the model's. The number of updates
    lives on the host as well as in the `n_averaged` buffer, so an update never waits for the device
    (torch's AveragedModel with a custom average reads it back twice per tensor). Its state dict has
    AveragedModel's keys, so checkpoints of either load into the other.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        super().__init__()
        import copy

        self.module = copy.deepcopy(model)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay, self.updates = decay, 0
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long, device=next(model.parameters()).device))

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        averaged = list(self.module.parameters())
        current = [p.detach() for p in model.parameters()]
        if self.updates == 0:
            torch._foreach_copy_(averaged, current)
        else:
            torch._foreach_lerp_(averaged, current, 1 - ema_decay(self.decay, self.updates))
        buffers = list(self.module.buffers())
        if buffers:
            torch._foreach_copy_(buffers, list(model.buffers()))
        self.n_averaged += 1
        self.updates += 1

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "n_averaged" in state_dict:
            self.updates = int(state_dict[prefix + "n_averaged"])  # once, at resume


class DataOrder:
    """The order of the training images: one permutation per epoch, fixed by the seed, made once per
    epoch (not once per batch: 137 ms at ImageNet's 1.28 M images)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.epoch, self.permutation = -1, torch.empty(0, dtype=torch.long)

    def batch(self, epoch: int, position: int, batch_size: int) -> torch.Tensor:
        """The global batch at (epoch, position)."""
        if epoch != self.epoch:
            gen = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            self.epoch, self.permutation = epoch, torch.randperm(self.n, generator=gen)
        return self.permutation[position:position + batch_size]


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


def to_tensors(state: Any) -> Any:
    """RNG states hold tuples, ints and arrays: store them as lists and tensors (weights_only-safe)."""
    if isinstance(state, tuple) or isinstance(state, list):
        return [to_tensors(s) for s in state]
    if isinstance(state, np.ndarray):
        return torch.from_numpy(state.copy())
    return state


def to_python(state: Any) -> Any:
    if isinstance(state, list):
        return tuple(to_python(s) for s in state)
    if isinstance(state, torch.Tensor):
        return state.numpy()
    return state
