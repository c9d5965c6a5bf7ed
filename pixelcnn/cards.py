"""What a run leaves behind: `metrics.json`, the model card generated from it, curves, sample grids
and example images.

The card is generated, never parsed back. Its measurement sections register themselves
(`card_section`): the trainer's here, each experiment's in `pixelcnn.experiments`; datasets register
their terms (`data_terms`).
"""

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .autoencoder import MSEAutoEncoder, PixelCNNAutoEncoder, conditioned_part, psnr
from .sketch import EmbeddingSketch, PortraitModel
from .data import ImageDataset
from .hub import CONFIG_NAME, METRICS_NAME, read_metrics
from .images import image_grid
from .presets import TrainConfig, train_defaults
from .sampling import sample
from .surgery import condition_of


METRIC_NAMES = {"bpd": "bits/dim", "mse": "MSE"}  # what a trainable's `metric` (its loss) measures


def metric_of(model: nn.Module) -> str:
    """The key of what `model.loss` measures: "bpd" for every PixelCNN, "mse" for the MSE baseline."""
    return getattr(model, "metric", "bpd")


def curve_points(metrics_path: Path, metric: str = "bpd") -> tuple[list, list]:
    """(train, test) lists of (step, value) from a run's metrics.jsonl."""
    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    train = [(r["step"], r[f"train_{metric}"]) for r in rows if f"train_{metric}" in r]
    test = [(r["step"], r[f"test_{metric}"]) for r in rows if f"test_{metric}" in r]
    return train, test


def plot_curves(metrics_path: Path, out: Path, metric: str = "bpd") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = METRIC_NAMES[metric]
    train, test = curve_points(metrics_path, metric)
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
    if isinstance(model, (MSEAutoEncoder, EmbeddingSketch)):  # 8 test images over their reconstructions or sketches
        batch = test_data.batch(torch.arange(min(8, len(test_data))), cfg.levels)
        images = batch["images"].to(model.device)
        if isinstance(model, MSEAutoEncoder):
            drawn = model.reconstruct(images)
        else:
            drawn = (model.sketch(batch["vectors"]) * (cfg.levels - 1)).round().long()
        path.parent.mkdir(parents=True, exist_ok=True)
        image_grid(torch.cat([images, drawn]), nrow=len(images), levels=cfg.levels, scale=2).save(path)
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


SLICE_IMAGES = 8  # the fixed slice of the test split whose per-image figures the export stores


@torch.no_grad()
def slice_figures(model: nn.Module, data: ImageDataset) -> dict[str, Any]:
    """Per-image figures of the first `SLICE_IMAGES` test images, computed in float64 on the CPU and
    rounded to 6 decimals: bits/dim (given each image's condition, or its own code) or MSE.

    Stored in metrics.json at export; recomputing them from the saved weights gives the same list
    exactly (float64 leaves rounding noise far below the sixth decimal), which proves in seconds
    that the weights are the ones the card measured."""
    import copy

    exact = copy.deepcopy(model).to("cpu", torch.float64).eval()
    batch = data.batch(torch.arange(min(SLICE_IMAGES, len(data))), exact.config.levels)
    images, metric = batch["images"], metric_of(exact)
    if metric == "mse":
        values = exact.mse(images) if exact.condition_field is None else exact.mse(images, batch["vectors"].double())
    else:
        cond = condition_of(exact, batch, torch.device("cpu"))
        if isinstance(cond, torch.Tensor) and cond.is_floating_point():
            cond = cond.double()
        values = exact.bits_per_dim(images, cond)
    return {"images": len(images), "metric": metric, "per_image": [round(float(v), 6) for v in values]}


def run_metrics(cfg: TrainConfig, model: nn.Module, *, steps: int, wall_time: float, cpu_time: float, hardware: str,
                test_value: float, test_images: int, train_images: int, processes: int,
                model_overrides: dict[str, Any], history: list[dict[str, Any]],
                stopped_by_budget: bool = False) -> dict[str, Any]:
    """What `metrics.json` records: the measured figures of the run and of the runs before it.
    `test_value` is what the model's loss measures on the test split, saved as `test_<metric>`.

    Each run records the structured `TrainConfig` it was given (from the CLI or from Python), the
    model fields that differ from its preset's, and its process count: never a command to re-parse.
    """
    key = f"test_{metric_of(model)}"
    stretch = {"train_config": dataclasses.asdict(cfg), "model_overrides": model_overrides,
               "processes": processes, "steps": steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
               "wall_time_s": round(wall_time, 1), "hardware": hardware,
               "core_hours": round(cpu_time / 3600, 2),  # CPU time of the training process(es) on rank 0
               "init_from": cfg.init_from, key: round(test_value, 6)}
    if cfg.cond_dropout > 0:
        stretch["cond_dropout"] = cfg.cond_dropout
    if cfg.time_budget > 0:
        stretch["time_budget_min"] = cfg.time_budget
        stretch["stopped_by_budget"] = stopped_by_budget
    return {key: round(test_value, 6), "test_images": test_images, "dataset": cfg.data,
            "train_images": train_images, "parameters": sum(p.numel() for p in model.parameters()),
            "torch": torch.__version__, "history": [*history, stretch]}


def describe_model(model: nn.Module, history: list[dict[str, Any]] = ()) -> tuple[str, str]:
    """(what the model is, in a sentence; its config as JSON) for the model card; `history` (its
    runs) tells whether a sketch auto-encoder's code was frozen."""
    if isinstance(model, PortraitModel):
        what, _ = describe_model(model.decoder, history)
        configs = json.dumps({part: getattr(model, part).config.to_dict() for part in model.parts}, indent=2)
        reads = ("the sketch of each photo (`image` conditioning)" if model.decoder.config.conditioning == "image"
                 else "the embedding")
        return (f"A portrait model (`pixelcnn.sketch.PortraitModel`): a face sketch drawn from a "
                f"{model.sketch.config.cond_dim}-number face embedding (its own card is in `sketch/`), and "
                f"{what[0].lower()}{what[1:]} that reads {reads}, held to the sketch while it samples", configs)
    if isinstance(model, EmbeddingSketch):
        cfg = model.config
        loss = {"mse": "mean squared error", "l1": "mean absolute error"}[cfg.loss]
        what = (f"the face it allows, trained alone on {loss}" if not cfg.latent_dim else
                f"a face it allows at a pose and light given by a latent z of {cfg.latent_dim} numbers (z = 0: the "
                f"typical photo), trained alone as a conditional VAE ({loss} and KL weight {cfg.kl_weight:g})")
        return (f"A face sketch (`pixelcnn.sketch`): a deconvolution network that draws, from a standardised "
                f"{cfg.cond_dim}-number embedding, {what}; portraits are held to it by the sampler's sketch prior",
                json.dumps(cfg.to_dict(), indent=2))
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
        configs_run = [run.get("train_config", {}) for run in history]
        sources = [c["code_from"] for c in configs_run if c.get("code_from")]
        source = f" (`{sources[-1]}`, whose card gives its training)" if sources else ""
        how = (f"the encoder and m(h) are an MSE auto-encoder's{source}, trained on mean squared error and then "
               f"frozen; the PixelCNN learnt on its likelihood given the sketch"
               if any(c.get("freeze_code") for c in configs_run) else
               "encoder, m(h) and PixelCNN trained end to end on the PixelCNN's likelihood")
        if sources and not configs_run[0].get("code_from"):
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
        f"| {k + 1} | `{run_command(run)}` | {run['steps']:,} x {run['batch_size']}{run_notes(run)} "
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


# metrics.json key -> its card section: the trainer's below, each experiment's in its own module
CARD_SECTIONS: dict[str, Callable[[Any], str]] = {}
# dataset name prefix -> the terms its card states; registered by the module that builds the data
DATA_TERMS: dict[str, str] = {}
# what every training run writes into metrics.json; any other key needs a registered section
RUN_KEYS = {"test_bpd", "test_mse", "test_images", "dataset", "train_images", "parameters", "torch", "history",
            "slice", "test_bpd_spread"}


def card_section(key: str):
    """Decorator: render(metrics[key]) -> markdown becomes the model card's section for `key`."""
    def register(render):
        CARD_SECTIONS[key] = render
        return render
    return register


def data_terms(prefix: str, text: str) -> None:
    """The cards of models trained on data whose name starts with `prefix` state `text`."""
    DATA_TERMS[prefix] = text


@card_section("split")
def split_section(split: dict[str, Any]) -> str:
    """How the test split was made, for data without one of its own (`data.held_out_split`)."""
    unit = "people" if split["held_out"] == "person" else "files"
    return (f"\n**Test split.** The data have no test split of their own: {split['fraction']:.0%} of their {unit} "
            f"({split['test_images']:,} images), drawn with seed {split['seed']}, were held out and never trained on; "
            f"the test figures are measured on them, and training used the other {split['train_images']:,}.\n")


@card_section("test_mse")
def mse_section(mse: float) -> str:
    return (f"\n**Reconstruction error** on the test split: MSE {mse:.5f} with pixels scaled "
            f"to [0, 1], a PSNR of **{psnr(mse):.2f} dB** (of the mean MSE).\n")


def card_extras(metrics: dict[str, Any]) -> str:
    """The registered sections of the measurements in metrics.json, then the data's terms.

    Raises `KeyError` for a measurement whose section is not registered (import the module that
    measures it, e.g. `pixelcnn.experiments`), so that no card silently drops one."""
    unknown = set(metrics) - RUN_KEYS - set(CARD_SECTIONS)
    if unknown:
        raise KeyError(f"metrics.json holds {sorted(unknown)} but no card section is registered for them: "
                       f"import pixelcnn.experiments first")
    parts = [render(metrics[key]) for key, render in CARD_SECTIONS.items() if key in metrics]
    dataset = str(metrics.get("dataset", ""))
    parts += [text for prefix, text in DATA_TERMS.items() if dataset.startswith(prefix)]
    return "".join(parts)


def run_command(run: dict[str, Any]) -> str:
    """The command a history row amounts to: the one recorded by older runs, else the launcher and
    the training fields that differ from the preset's defaults, then the model overrides."""
    if "command" in run:
        return run["command"]
    config = run["train_config"]
    defaults = train_defaults(config["preset"])
    changed = {k: v for k, v in config.items() if k != "preset" and defaults.get(k) != v}
    launcher = (f"torchrun --nproc_per_node={run['processes']} -m pixelcnn.train" if run.get("processes", 1) > 1
                else "python -m pixelcnn.train")
    words = [launcher, f"--preset {config['preset']}"]
    for key, value in [*changed.items(), *run.get("model_overrides", {}).items()]:
        words.append(f"--{key}" if value is True else f"--no-{key}" if value is False else f"--{key} {value}")
    return " ".join(words)


def rewrite_card(folder: Path, model: nn.Module) -> None:
    """Regenerate a folder's model card from its metrics.json, keeping the card's title: for the
    measurements that run after training (`pixelcnn.experiments`)."""
    folder = Path(folder)
    card = folder / "README.md"
    titles = [line[2:] for line in card.read_text().splitlines() if line.startswith("# ")] if card.is_file() else []
    card.write_text(model_card(read_metrics(folder), model, titles[0] if titles else folder.name))


def copy_sketch_card(source: str | Path, folder: Path) -> bool:
    """Copy the face sketch's own card and metrics.json (from its folder, or a portrait model's
    `sketch/`) into a portrait model's `sketch/` folder; False when the source has none (a Hub id)."""
    import shutil

    source = Path(source)
    for where in (source / "sketch", source):
        if (where / METRICS_NAME).is_file() and (where / CONFIG_NAME).is_file():
            for name in (METRICS_NAME, "README.md", "samples.png", "curves.png"):
                if (where / name).is_file() and (where / name).resolve() != (folder / name).resolve():
                    shutil.copyfile(where / name, folder / name)
            return True
    return False


def write_export(model: nn.Module, folder: Path, metrics: dict[str, Any], title: str) -> None:
    """save_pretrained, then metrics.json and the model card generated from it."""
    model.save_pretrained(folder)
    (folder / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n")
    (folder / "README.md").write_text(model_card(metrics, model, title))
