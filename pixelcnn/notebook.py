"""What every notebook shares: its set-up, its settings at a preset, training curves and GPU flags.

    device, SETTINGS = setup("01_cifar10_table1", preset, ROOT)
"""

import os
from pathlib import Path
from typing import Any

import torch

from .cards import curve_points
from .presets import notebook_settings


def setup(notebook: str, preset: str, root: str | Path) -> tuple[str, dict[str, Any]]:
    """Work from the repository root, pick the device and say what runs; returns (device, the
    notebook's settings at `preset`, from `pixelcnn.presets`)."""
    from . import __version__

    os.chdir(root)  # every path in the notebooks is relative to the repository root
    settings = notebook_settings(notebook, preset)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"pixelcnn {__version__}, torch {torch.__version__}, device {device}, preset {preset!r}")
    return device, settings


def curves(run_dirs: dict[str, str | Path], title: str, metric: str = "bpd") -> None:
    """Training (running) and test (EMA) curves of several runs on one plot."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, run in run_dirs.items():
        train, test = curve_points(Path(run) / "metrics.jsonl", metric)
        line, = ax.plot(*zip(*train), alpha=0.6, label=f"{label} train (running)")
        if test:
            ax.plot(*zip(*test), "o-", color=line.get_color(), label=f"{label} test (EMA)")
    ax.set_xlabel("step")
    ax.set_ylabel("bits/dim" if metric == "bpd" else metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    plt.show()


def gpu_flags(device: str | None = None) -> list[str]:
    """Extra training flags for a CUDA run: bf16 autocast is on by default there; torch.compile speeds
    up long GPU runs."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return ["--compile"] if device == "cuda" else []
