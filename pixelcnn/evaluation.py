"""Judging samples: do class-conditional digits read as the class asked for?

A small convolutional MNIST classifier, trained in about a minute on a CPU, recognises the samples of
a class-conditional model; the share it recognises is a figure for the model card beside bits/dim
(bits/dim says little about how samples look).
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import ImageDataset
from .hub import PretrainedMixin
from .sampling import CLASS_GUIDANCE, sample


@dataclass(frozen=True)
class ClassifierConfig:
    image_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    levels: int = 256

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClassifierConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class DigitClassifier(nn.Module, PretrainedMixin):
    """Two conv-pool blocks and two linear layers: integer images (B, C, H, W) -> logits (B, classes)."""

    architecture = "digit-classifier"
    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv2d(config.image_channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        side = config.image_size // 4
        self.hidden = nn.Linear(64 * side * side, 128)
        self.out = nn.Linear(128, config.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = x.float() / (self.config.levels - 1) * 2 - 1
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.out(F.relu(self.hidden(x.flatten(1))))


def train_classifier(train: ImageDataset, test: ImageDataset, epochs: int = 1, batch_size: int = 128,
                     lr: float = 2e-3, seed: int = 0) -> tuple[DigitClassifier, float]:
    """Train on `train` with Adam; returns the classifier and its accuracy on `test`."""
    torch.manual_seed(seed)
    model = DigitClassifier(ClassifierConfig(train.channels, train.image_size[0], len(train.class_names)))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=gen)
        for start in range(0, len(train), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(train.images[idx]), train.labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), accuracy(model, test.images, test.labels)


@torch.no_grad()
def accuracy(classifier: DigitClassifier, images: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    """Share of images (N, C, H, W) in [0, 256) whose predicted class is the label."""
    right = sum((classifier(images[s:s + batch_size]).argmax(1) == labels[s:s + batch_size]).sum().item()
                for s in range(0, len(images), batch_size))
    return right / max(1, len(images))


def recognition_rate(model, classifier: DigitClassifier, per_class: int = 5, seed: int = 0,
                     temperature: float = 1.0, guidance: float = 1.0) -> tuple[float, Tensor, Tensor]:
    """Draw `per_class` samples of every class (with classifier-free `guidance`) and classify them.

    Returns (share recognised as the class asked for, samples (N, C, H, W), classes asked (N,)).
    """
    cfg = model.config
    classes = torch.arange(cfg.num_classes).repeat_interleave(per_class)
    images = sample(model, len(classes), classes, seed=seed, temperature=temperature, guidance=guidance)
    pixels = images if cfg.levels == 256 else (images * 255) // (cfg.levels - 1)
    return accuracy(classifier, pixels.cpu(), classes), images, classes


@torch.no_grad()
def marginal_bits_per_dim(model: nn.Module, images: Tensor, batch_size: int = 50) -> float:
    """Bits/dim of a class-conditional model with its class summed out, p(x) = (1/K) sum_k p(x | k):
    the unconditional model it contains, on integer images (N, C, H, W)."""
    import math

    k = model.config.num_classes
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(model.device)
        per_class = torch.stack([model.log_prob(x, torch.full((len(x),), c, device=x.device)) for c in range(k)], 1)
        total += -(torch.logsumexp(per_class, 1) - math.log(k)).sum().item()
    return total / (len(images) * model.config.num_subpixels * math.log(2))


def main(argv: list[str] | None = None) -> int:
    """python -m pixelcnn.evaluation MODEL: the share of a class-conditional MNIST model's samples that
    its classifier (MODEL/classifier, trained on --data_dir's MNIST if missing) recognises, written to
    `recognised` in MODEL/metrics.json and its card."""
    import argparse
    import json
    from pathlib import Path

    from .data import load_dataset
    from .hub import METRICS_NAME, from_pretrained, read_metrics
    from .train import rewrite_card

    parser = argparse.ArgumentParser(prog="python -m pixelcnn.evaluation", description=main.__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--data_dir", help="MNIST, to train the classifier or measure its test accuracy")
    parser.add_argument("--per_class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, CLASS_GUIDANCE, 5.0],
                        help="guidance values to measure (the default, sampling.CLASS_GUIDANCE, among them)")
    args = parser.parse_args(argv)
    model, folder = from_pretrained(args.model), args.model / "classifier"
    test = load_dataset("mnist", "test", data_dir=args.data_dir) if args.data_dir else None
    if (folder / "config.json").is_file():
        classifier = DigitClassifier.from_pretrained(folder)
    elif test is None:
        parser.error(f"{folder} holds no classifier: pass --data_dir to train one")
    else:
        classifier, _ = train_classifier(load_dataset("mnist", "train", data_dir=args.data_dir), test)
        classifier.save_pretrained(folder)
    rates = {}
    for w in sorted(set(args.guidance) | {1.0}):
        rates[f"{w:g}"], _, classes = recognition_rate(model, classifier, args.per_class, args.seed, args.temperature, w)
        print(f"guidance {w:g}: {rates[f'{w:g}']:.1%} recognised", flush=True)
    metrics = read_metrics(args.model) or {}
    previous = metrics.get("recognised", {})
    metrics["recognised"] = {"rate": rates["1"], "samples": len(classes), "temperature": args.temperature,
                             "seed": args.seed, "guidance": rates, "default_guidance": CLASS_GUIDANCE,
                             "classifier_test_accuracy": accuracy(classifier, test.images, test.labels)
                             if test is not None else previous.get("classifier_test_accuracy")}
    (args.model / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n")
    rewrite_card(args.model, model)
    print(json.dumps(metrics["recognised"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
