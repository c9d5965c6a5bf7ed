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
