"""The models the app offers: shipped folders and Hub repositories, loaded once, and what the UI says
about each."""

from pathlib import Path
from typing import Any

import gradio as gr
import torch

from .. import ARCHITECTURES, from_pretrained
from ..config import PixelCNNConfig
from ..hub import CheckpointError, LocalModel, local_models

AUTO_CLASS = "most likely class"
# the paper's figures, shown beside ours so that a small CPU-trained model is read for what it is
PAPER_BPD = {"cifar10": "3.03 bits/dim for the paper's Gated PixelCNN (Table 1), a far larger model trained on GPUs",
             "mnist": "about 0.8 bits/dim for published PixelCNNs trained for ~150 epochs on GPUs"}
PREFERRED_FIRST = "mnist-class"  # the clearest first impression: digits that read as their class


class Explorer:
    """The models on offer, by label, loaded on first use."""

    def __init__(self, weights_dir: Path) -> None:
        self.weights_dir = Path(weights_dir)
        found = local_models(weights_dir)
        found.sort(key=lambda m: (m.name != PREFERRED_FIRST, m.name))
        self.local: dict[str, LocalModel] = {m.describe(): m for m in found}
        self.hub: dict[str, str] = {}  # label -> repo id
        self.loaded: dict[str, torch.nn.Module] = {}

    @property
    def choices(self) -> list[str]:
        """The model picker's choices: the models the Class picker and Likelihood tabs can use, single
        PixelCNNs that are class-conditional or unconditional. A face model and the auto-encoders have
        tabs of their own, which find them by themselves."""
        return [label for label, m in self.local.items() if pickable(m.architecture, m.config)] + list(self.hub)

    @property
    def first(self) -> str | None:
        return self.choices[0] if self.choices else None

    def model(self, choice: str | None):
        if not choice:
            raise gr.Error(f"no model selected; the shipped models live in {self.weights_dir}")
        if choice not in self.loaded:
            source: Any = self.local[choice].path if choice in self.local else self.hub.get(choice)
            if source is None:
                raise gr.Error(f"unknown model {choice!r}")
            try:
                self.loaded[choice] = from_pretrained(source)
            except CheckpointError as e:
                raise gr.Error(f"cannot load {choice}: {e}")
        return self.loaded[choice]

    def add_hub(self, repo_id: str, model: torch.nn.Module) -> str:
        label = f"hub: {repo_id}"
        self.hub[label] = repo_id
        self.loaded[label] = model
        return label

    def examples(self, choice: str | None) -> dict[str, str]:
        """Test images shipped with a local model (weights/<name>/examples/*.png), by name."""
        if choice not in self.local:
            return {}
        folder = self.local[choice].path / "examples"
        return {p.stem: str(p) for p in sorted(folder.glob("*.png"))} if folder.is_dir() else {}

    def describe(self, choice: str) -> str:
        """One line for the model box: size, conditioning and the measured figure beside the paper's."""
        model = self.model(choice)
        cfg = model.config
        line = (f"**{choice.split(' (')[0]}**: {model.num_parameters:,} parameters, {cfg.height}x{cfg.width}x"
                f"{cfg.image_channels}, {cfg.levels} levels, conditioning `{cfg.conditioning}`.")
        local = self.local.get(choice)
        dataset = (local.metrics or {}).get("dataset") if local else None
        if local and local.test_bpd is not None:
            line += f" Test bits/dim **{local.test_bpd:.3f}**"
            if dataset in PAPER_BPD:
                line += f" (a small model trained on a CPU; for comparison, {PAPER_BPD[dataset]})"
            line += "."
        return line


PICKABLE_CONDITIONS = ("class", "none")


def pickable(architecture: str, config: Any) -> bool:
    """Whether the page's model picker offers a model: a single PixelCNN, class-conditional or not."""
    return architecture in ARCHITECTURES and getattr(config, "conditioning", None) in PICKABLE_CONDITIONS


def class_choices(config: PixelCNNConfig, auto: bool = False) -> list[str]:
    if config.conditioning != "class":
        return []
    return ([AUTO_CLASS] if auto else []) + [config.class_name(k) for k in range(config.num_classes)]


def class_index(config: PixelCNNConfig, name: str | None) -> int:
    names = class_choices(config)
    if name not in names:
        raise gr.Error(f"pick a class from {', '.join(names)}")
    return names.index(name)


def sampling_condition(model, class_name: str | None) -> int | None:
    """The condition the class picker samples with: a class id, or None for an unconditional model."""
    cfg = model.config
    if cfg.conditioning == "class":
        return class_index(cfg, class_name)
    if cfg.conditioning == "none":
        return None
    raise gr.Error("this model is conditioned on vectors (embeddings, codes): the class picker samples "
                   "class-conditional and unconditional models")
