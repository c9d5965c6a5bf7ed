"""Presets and the training config: the one home of named settings for the CLI, the app and the notebooks.

- `MODEL_PRESETS`: the model configs of the shipped weights. `weights/<name>` holds a model trained
  with exactly `MODEL_PRESETS[name]`; each trains in about two hours on a 2-core CPU (the README's
  training page), and the sampling benchmark times these sizes.
- `TrainConfig`, `TRAIN_PRESETS` and `parse_args`: how `python -m pixelcnn.train` reads its command line.
- `NOTEBOOK_SETTINGS`: each notebook's sizes at the smoke, cpu, gpu and paper presets.
"""

import argparse
import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from .conditioning import condition_class
from .config import PixelCNNConfig

TRAIN_USAGE = """Train a PixelCNN: one script from a laptop CPU to many GPUs.

    python -m pixelcnn.train --preset mnist-class --data_dir ../shared/data
    python -m pixelcnn.train --preset mnist-class --resume            # continue a stopped run exactly
    torchrun --nproc_per_node=4 -m pixelcnn.train --preset cifar10-class --batch_size 256

A preset sets the model config, the optimiser and the data together; every field of `TrainConfig`
and of `PixelCNNConfig` can be overridden as `--field value`. `batch_size` and `lr` are global:
under torchrun with N processes each process takes batch_size / N images of every step, so the same
command gives the same optimisation on 1 or N processes (and N must divide batch_size).
"""

MODEL_PRESETS: dict[str, PixelCNNConfig] = {
    # 28x28 grey digits, 256 levels, one of 10 classes; the class presets train with condition dropout,
    # so guidance works against a null condition the model learnt
    "mnist-class": PixelCNNConfig(image_channels=1, image_size=28, levels=256, hidden_channels=48, n_layers=20,
                                  kernel_size=3, first_kernel_size=7, head_channels=128,
                                  conditioning="class", num_classes=10, learned_null=True),
    # 32x32 RGB, 256 levels per channel, one of 10 classes; 48 = 3 colour groups of 16. Deepened from 8
    # layers (the auto-encoders' decoders keep 8: pass --n_layers 8 to train them)
    "cifar10-class": PixelCNNConfig(image_channels=3, image_size=32, levels=256, hidden_channels=48, n_layers=15,
                                    kernel_size=3, first_kernel_size=7, head_channels=192,
                                    conditioning="class", num_classes=10, learned_null=True),
    # 32x32 RGB portraits drawn to a face sketch: the sketch (pixelcnn.sketch) turns the 128-number
    # dlib embedding into a 32x32 face, and a small network maps it to a 32x32 map (eq. 5) in every
    # layer. It beat the same PixelCNN reading the embedding itself (docs/portraits.md); trained with
    # condition dropout, so its null condition, which guidance uses, is learnt. cond_dim: the
    # embedding's length, which the sketch reads
    "faces-portrait": PixelCNNConfig(image_channels=3, image_size=32, levels=256, hidden_channels=48, n_layers=8,
                                     kernel_size=3, first_kernel_size=7, head_channels=192,
                                     conditioning="image", cond_dim=128, standardise_cond=False,
                                     learned_null=True),
}


def model_preset(name: str) -> PixelCNNConfig:
    """The named preset's config (frozen: change a copy with `.replace(...)`)."""
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(MODEL_PRESETS)}")
    return MODEL_PRESETS[name]


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
    encoder_channels: int = 32          # width of the encoder, an MSE decoder or a face sketch (its last hidden layer)
    decoder: str = "pixelcnn"           # with --encoder conv, "mse": the baseline, a deconvolution decoder on MSE;
                                        # without an encoder, "sketch": the face sketch, embedding -> image on MSE
    sketch_loss: str = "mse"            # with --decoder sketch: "mse" (the average face) or "l1" (the median one)
    sketch_latent: int = 0              # with --decoder sketch: the length of z, a conditional VAE's latent (0: none)
    sketch_kl: float = 0.05             # with --sketch_latent: beta, the weight of z's KL per sub-pixel
    code_from: str | None = None        # with --encoder conv: start the encoder (and a "sketch" decoder's m(h)) from this MSE auto-encoder
    freeze_code: bool = False           # keep the encoder and a sketch's m(h) as they are: only the PixelCNN learns
    cond_dropout: float = 0.0           # share of images trained on the null condition (a learned one), for guidance
    mirror: bool = False                # flip half of each batch left to right (faces: a mirror keeps the person)
    sketch_from: str | None = None      # with --conditioning image: the face sketch (or portrait model) whose sketch of
                                        # each photo the PixelCNN reads; the export is a PortraitModel with it
    time_budget: float = 0.0            # minutes for the whole run, evaluation and export included (0: none)
    progress: bool = True               # tqdm progress bar


# the face sketch that the portrait presets' PixelCNN reads: the shipped portrait model's (from the repository root)
SHIPPED_SKETCH = "weights/faces-portrait"

TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # the class presets train with condition dropout, so that guidance steers against a learnt null
    # ("no class"), an input the model has seen, rather than the mix of every class, which it never has
    "mnist-class": dict(data="mnist", out_dir="runs/mnist-class", steps=20000, batch_size=32, lr=2e-3,
                        eval_every=1000, sample_every=2000, cond_dropout=0.1),
    "cifar10-class": dict(data="cifar10", out_dir="runs/cifar10-class", steps=20000, batch_size=32, lr=2e-3,
                          eval_every=1000, sample_every=2000, cond_dropout=0.1),
    # reads the shipped sketch unless --sketch_from names another (train one with --preset faces-sketch)
    "faces-portrait": dict(data="celeba-faces32", out_dir="runs/faces-portrait", steps=6000, batch_size=32,
                           lr=2e-3, eval_every=250, eval_images=500, sample_every=500, cond_dropout=0.15,
                           sketch_from=SHIPPED_SKETCH),
    # the face sketch m(h) alone (pixelcnn.sketch): embedding -> 32x32 crop on MSE, well under an hour on one core
    "faces-sketch": dict(data="celeba-faces32", out_dir="runs/faces-sketch", decoder="sketch", encoder_channels=64,
                         sketch_latent=16, sketch_kl=0.5, mirror=True,
                         steps=6000, batch_size=128, lr=2e-3, warmup_steps=100, eval_every=1000, eval_images=0,
                         sample_every=2000, ckpt_every=500),
    # one CUDA GPU, under 8 minutes in all: the portrait model on celeba-faces32 with a learned null
    "faces-gpu": dict(data="celeba-faces32", out_dir="runs/faces-gpu", steps=100000, batch_size=128, lr=2e-3,
                      warmup_steps=200, eval_every=1000, eval_images=1000, sample_every=0, ckpt_every=1000,
                      cond_dropout=0.15, time_budget=7.5, compile=False, sketch_from=SHIPPED_SKETCH),
    # seconds on a CPU: for smoke tests and trying the pipeline on any small dataset
    "tiny": dict(data="mnist", out_dir="runs/tiny", steps=50, batch_size=8, lr=3e-3, warmup_steps=5,
                 eval_every=25, eval_images=32, final_eval_images=64, sample_every=25, ckpt_every=25, log_every=5),
}


# faces-gpu trains the portrait model at 10 layers x 64 channels (1.22 M parameters, 1.8x the shipped 8 x 48):
# about the largest that still renders 8 guided portraits within 2 s on one CPU core (benchmarks/README.md).
# On a CPU budget neither more steps nor more depth moved identification, so a GPU run gets the capacity
MODEL_FOR_PRESET = {"faces-gpu": model_preset("faces-portrait").replace(n_layers=10, hidden_channels=64,
                                                                        head_channels=256),
                    # what the sketch reads and draws (its own size comes from --encoder_channels)
                    "faces-sketch": model_preset("faces-portrait").replace(conditioning="vector", standardise_cond=True,
                                                                            learned_null=False),
                    "tiny": PixelCNNConfig(image_channels=1, image_size=28, hidden_channels=8, n_layers=2,
                                           head_channels=16, conditioning="class", num_classes=10)}


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


def preset_model(preset: str) -> PixelCNNConfig:
    """The model config a training preset starts from."""
    return MODEL_FOR_PRESET.get(preset) or model_preset(preset)


def model_overrides(preset: str, config: PixelCNNConfig) -> dict[str, Any]:
    """The model fields of `config` that differ from the preset's (class names and the learned null
    follow from the data and from --cond_dropout)."""
    base = preset_model(preset).to_dict()
    return {k: v for k, v in config.to_dict().items()
            if base.get(k) != v and k not in ("class_names", "learned_null")}


def train_defaults(preset: str) -> dict[str, Any]:
    """Every `TrainConfig` field as the named preset sets it."""
    return {**dataclasses.asdict(TrainConfig()), **TRAIN_PRESETS[preset], "preset": preset}


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, PixelCNNConfig]:
    """CLI -> (train config, model config): preset defaults, then `--field value` overrides."""
    presets = sorted(TRAIN_PRESETS)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="mnist-class", choices=presets)
    known, _ = pre.parse_known_args(argv)

    parser = argparse.ArgumentParser(prog="python -m pixelcnn.train", description=TRAIN_USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mnist-class", choices=presets)
    model_base = preset_model(known.preset)
    model_defaults = model_base.to_dict()
    groups = [("training", TrainConfig, train_defaults(known.preset)), ("model", PixelCNNConfig, model_defaults)]
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
        given_vectors = (condition_class(args["conditioning"]).batch_field == "vectors" and args["encoder"] == "none"
                         and args["conditioning"] != "image")  # an image is read as it is
        # the portrait presets read a sketch (an image, as it is); told to read the embedding itself
        # (--conditioning vector or spatial), they standardise it as the sketch does
        embeddings = model_defaults["standardise_cond"] or model_defaults["conditioning"] == "image"
        args["standardise_cond"] = embeddings and given_vectors
    if not 0 <= args["cond_dropout"] < 1:
        raise ValueError(f"--cond_dropout must lie in [0, 1), got {args['cond_dropout']}")
    if args["time_budget"] < 0:
        raise ValueError(f"--time_budget is in minutes and must be >= 0, got {args['time_budget']}")
    preset = train_defaults(known.preset)  # a preset's value, left as it is, applies only where it means something
    if args["conditioning"] == "none" or (args["decoder"] in ("mse", "sketch")
                                          and args["cond_dropout"] == preset["cond_dropout"]):
        args["cond_dropout"] = 0.0  # nothing to drop (an unconditional twin), or no null to learn (no PixelCNN)
    if args["conditioning"] != "image" and args["sketch_from"] == preset["sketch_from"]:
        args["sketch_from"] = None  # the preset's sketch serves a PixelCNN that reads one, not e.g. its twin
    args["learned_null"] = args["cond_dropout"] > 0  # the dropped images train the null condition itself
    train = TrainConfig(**{f.name: args[f.name] for f in fields(TrainConfig)})
    model = PixelCNNConfig.from_dict({f.name: args[f.name] for f in fields(PixelCNNConfig) if f.name in args})
    return train, model


# each notebook's sizes at its presets: smoke (seconds, for tests), cpu, gpu and paper
NOTEBOOK_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "00_blind_spot": {
        "smoke": dict(size=8, depths=[1, 2, 4], kernels=[3]),
        "cpu": dict(size=16, depths=[1, 2, 4, 8, 12], kernels=[3, 5]),
        "gpu": dict(size=24, depths=[1, 2, 4, 8, 16, 24], kernels=[3, 5, 7]),
        "paper": dict(size=32, depths=[1, 2, 4, 8, 16, 32], kernels=[3, 5, 7])},
    "01_cifar10_table1": {
        "smoke": dict(steps=20, batch=8, layers=2, channels=12, head=24, train_images=256, eval_images=64),
        "cpu": dict(steps=600, batch=16, layers=6, channels=24, head=96, train_images=0, eval_images=1000),
        "gpu": dict(steps=3000, batch=64, layers=12, channels=96, head=384, train_images=0, eval_images=0),
        "paper": dict(steps=100000, batch=256, layers=15, channels=384, head=1024, train_images=0, eval_images=0)},
    "02_imagenet_table2": {
        "smoke": dict(steps=20, batch=8, layers=2, channels=12, head=24, kernel=3, train_images=256, eval_images=64),
        "cpu": dict(steps=600, batch=16, layers=6, channels=24, head=96, kernel=3, train_images=0, eval_images=1000),
        "gpu": dict(steps=3000, batch=64, layers=12, channels=96, head=384, kernel=5, train_images=0, eval_images=0),
        "paper": dict(steps=300000, batch=256, layers=20, channels=384, head=1024, kernel=5, train_images=0,
                      eval_images=0)},
    "03_class_conditional": {
        "smoke": dict(test_images=20, per_class=1), "cpu": dict(test_images=1000, per_class=8),
        "gpu": dict(test_images=10000, per_class=8), "paper": dict(test_images=10000, per_class=8)},
    "04_portraits": {
        "smoke": dict(train_steps=0, people=2, portraits=2, steps=3),
        "cpu": dict(train_steps=0, people=6, portraits=8, steps=8),
        "gpu": dict(sketch_steps=6000, train_steps=100000, minutes=7.5, batch=128, people=6, portraits=8, steps=8),
        "paper": dict(sketch_steps=20000, train_steps=100000, minutes=600, batch=128, layers=20, channels=384,
                      head=1024, people=6, portraits=8, steps=8)},
    "05_autoencoder": {  # train_steps 0: use the shipped weights in weights_dir
        "smoke": dict(train_steps=20, batch=8, layers=2, channels=12, head=24, train_images=256, test_images=20,
                      figure_images=2, codes=(10, 100)),
        "cpu": dict(train_steps=0, test_images=1000, figure_images=5, codes=(10, 100)),
        "gpu": dict(train_steps=5000, batch=64, layers=12, channels=96, head=384, train_images=0, test_images=10000,
                    figure_images=5, codes=(10, 100)),
        "paper": dict(train_steps=100000, batch=256, layers=20, channels=384, head=1024, train_images=0,
                      test_images=10000, figure_images=5, codes=(10, 100))},
    "06_fast_sampling": {
        "smoke": dict(batches=[1, 4], naive_steps=6, equal_size=4, threads=1),
        "cpu": dict(batches=[1, 16, 64], naive_steps=24, equal_size=8, threads=2),
        "gpu": dict(batches=[1, 16, 64, 256], naive_steps=48, equal_size=8, threads=None),
        "paper": dict(batches=[1, 16, 64, 256], naive_steps=96, equal_size=12, threads=None)},
}


def notebook_settings(notebook: str, preset: str) -> dict[str, Any]:
    """One notebook's settings at a preset (smoke, cpu, gpu or paper)."""
    if notebook not in NOTEBOOK_SETTINGS:
        raise ValueError(f"unknown notebook {notebook!r}; one of {sorted(NOTEBOOK_SETTINGS)}")
    presets = NOTEBOOK_SETTINGS[notebook]
    if preset not in presets:
        raise ValueError(f"preset must be one of {list(presets)}, got {preset!r}")
    return dict(presets[preset])
