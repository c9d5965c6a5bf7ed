"""The recognition experiment: do class-conditional digits read as the class asked for?

    python -m pixelcnn.experiments recognition weights/mnist-class --data_dir ../shared/data

The share of a class-conditional MNIST model's samples that a small classifier
(`pixelcnn.classifier`) recognises, against guidance: a figure for the model card beside bits/dim
(bits/dim says little about how samples look).
"""

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..cards import card_section, rewrite_card
from ..classifier import DigitClassifier, accuracy, train_classifier
from ..data import load_dataset
from ..hub import METRICS_NAME, from_pretrained, read_metrics
from ..sampling import CLASS_GUIDANCE, sample


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


def main(argv: list[str] | None = None) -> int:
    """MODEL: the share of a class-conditional MNIST model's samples that
    its classifier (MODEL/classifier, trained on --data_dir's MNIST if missing) recognises, written to
    `recognised` in MODEL/metrics.json and its card."""
    parser = argparse.ArgumentParser(prog="python -m pixelcnn.experiments recognition", description=main.__doc__)
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


@card_section("recognised")
def recognition_section(r: dict[str, Any]) -> str:
    """The card's lines on samples read as their class, with the guidance table (`main`)."""
    text = (f"\n**Samples that read as their class**: {r['rate']:.1%} of {r['samples']} class-conditional "
            f"samples (temperature {r['temperature']:g}, seed {r['seed']}) are recognised as the class "
            f"asked for by a small MNIST classifier (" + (
                f"{r['classifier_test_accuracy']:.1%} on the test split; "
                if r.get("classifier_test_accuracy") is not None else "") +
            "`classifier/`, `pixelcnn.experiments.recognition`).\n")
    if "guidance" in r:
        rows = "".join(f"| {w}{' (the app default)' if float(w) == r.get('default_guidance') else ''} | "
                       f"{rate:.1%} |\n" for w, rate in r["guidance"].items())
        text += (f"\nWith classifier-free guidance against the null condition (the same {r['samples']:,} "
                 f"draws: classes, seed and temperature):\n\n"
                 f"| guidance w | samples recognised |\n|---|---|\n{rows}")
    return text
