"""The face sketch measured alone: is the sketch drawn from an embedding recognisably that person?

    python -m pixelcnn.experiments sketches MODEL --data_dir DIR [--test_set celeba-faces32 celeba-portraits]

MODEL is a face sketch (`EmbeddingSketch`) or a portrait model, whose `sketch/` is measured. On the
held-out people of each test set, with the real photos' embeddings as each person's centre (as in
`pixelcnn.experiments.portraits`):

* the sketch of every test photo's own embedding at z = 0, and at the default sketch temperature,
  identified by dlib among the people (top-1, top-5), the share in which dlib's detector finds a
  face, and (at the temperature) the variety of two sketches of one person;
* the sketch of each person's first photo only, the input the portraits start from;
* the mean squared error of the sketches at z = 0 against their photos.

The figures go to the sketch's `metrics.json` under `sketch_identification`, one entry per test set,
and to its card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cards import card_section, rewrite_card
from ..faces import SKETCH_TEMPERATURE
from .portraits import TEST_SETS, as_images, embed_and_detect, held_out_people, ranks, variety


def identified(sketcher, vectors: torch.Tensor, truth: np.ndarray, centres: np.ndarray, z=None,
               embedder=None) -> tuple[dict[str, float], torch.Tensor]:
    """Top-1, top-5 and the face-found share of the sketches of `vectors` (N, D) at z (None: 0)."""
    images = as_images(sketcher.sketch(vectors, z).cpu(), sketcher.config.levels)
    embeddings, found = embed_and_detect(images, embedder)
    r = ranks(embeddings, centres, truth)
    return {"top1": float((r == 0).mean()), "top5": float((r < 5).mean()), "face_found": float(found.mean())}, images


def evaluate_sketches(sketcher, test, *, temperature: float = SKETCH_TEMPERATURE, seed: int = 0,
                      embedder=None) -> dict[str, Any]:
    """Every figure of the module docstring on one test set."""
    ids, first, centres, rows = held_out_people(test)
    vectors, photos = test.vectors[rows], test.images[rows]
    truth = np.array([ids.index(int(p)) for p in test.labels[rows]])
    at_zero, _ = identified(sketcher, vectors, truth, centres, embedder=embedder)
    z = sketcher.latents(len(rows), temperature, seed)
    warm, images = identified(sketcher, vectors, truth, centres, z, embedder=embedder)
    if z is not None:  # two sketches of each person's first photo, at two draws of z
        pair = sketcher.sketch(test.vectors[first].repeat_interleave(2, 0), sketcher.latents(2 * len(first),
                                                                                           temperature, seed + 1))
        warm["variety"] = variety(as_images(pair.cpu(), sketcher.config.levels), 2)
    first_only, _ = identified(sketcher, test.vectors[first], np.arange(len(first)), centres, embedder=embedder)
    with torch.no_grad():
        mse = float(sketcher.mse(photos.long().to(sketcher.device), sketcher.check_vectors(vectors)).mean())
    return {"people": len(ids), "photos": len(rows), "mse": mse, "at_zero": at_zero,
            "temperature": temperature, "at_temperature": warm, "first_photo": first_only,
            "chance": 1 / len(ids)}


@card_section("sketch_identification")
def sketch_card(entries: dict[str, Any]) -> str:
    """The sketch card's table: one row per test set."""
    if not isinstance(entries, dict) or not entries:
        return ""
    rows = "".join(
        f"| `{name}` ({e['people']} people, {e['photos']} photos) | {e['mse']:.4f} | "
        f"**{e['at_zero']['top1']:.1%}** / {e['at_zero']['top5']:.1%}, {e['at_zero']['face_found']:.0%} | "
        f"{e['at_temperature']['top1']:.1%} / {e['at_temperature']['top5']:.1%}, "
        f"{e['at_temperature']['face_found']:.0%}, {e['at_temperature'].get('variety', 0):.1f} | "
        f"{e['first_photo']['top1']:.1%} / {e['first_photo']['top5']:.1%} |\n"
        for name, e in entries.items())
    temperature = next(iter(entries.values()))["temperature"]
    return f"""
**Sketches of held-out people** (measured with `python -m pixelcnn.experiments sketches`): the sketch of
each test photo's own embedding, identified by dlib as the nearest of the people (chance
{next(iter(entries.values()))['chance']:.1%}); top-1 / top-5, then the share in which dlib's detector finds a face.

| test set | MSE at z = 0 | at z = 0 | at temperature {temperature:g}: and variety (levels) | from each person's first photo, z = 0 |
|---|---|---|---|---|
{rows}"""


def main(argv: list[str] | None = None) -> int:
    """Measure a face sketch (or a portrait model's) on held-out people; write the figures to its
    metrics.json and card."""
    from ..data import load_dataset
    from ..hub import METRICS_NAME, from_pretrained, read_metrics
    from ..sketch import PortraitModel

    parser = argparse.ArgumentParser(prog="python -m pixelcnn.experiments sketches", description=main.__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--test_set", choices=TEST_SETS, nargs="+", default=list(TEST_SETS))
    parser.add_argument("--temperature", type=float, default=SKETCH_TEMPERATURE)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = from_pretrained(args.model)
    folder, sketcher = (args.model / "sketch", model.sketch) if isinstance(model, PortraitModel) else (args.model, model)
    metrics = read_metrics(folder) or {}
    entries = dict(metrics.get("sketch_identification") or {})
    for name in args.test_set:
        result = evaluate_sketches(sketcher, load_dataset(name, "test", data_dir=args.data_dir),
                                   temperature=args.temperature)
        entries[name] = json.loads(json.dumps(result), parse_float=lambda v: round(float(v), 4))
    metrics["sketch_identification"] = entries
    (folder / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n")
    if "history" in metrics:  # a folder the trainer exported: its card is regenerated with the table
        rewrite_card(folder, sketcher)
    print(json.dumps(entries, indent=2))
    return 0
