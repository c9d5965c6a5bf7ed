"""The paper's section 3.3 measured: do portraits look like the person they were drawn for?

    python -m pixelcnn.experiments portraits MODEL --data_dir DIR [--test_set celeba-faces32] [--twin TWIN]

On held-out people (never seen in training) of a test set, with the real photos' embeddings as
each person's centre:

* likelihood: bits/dim given each photo's own embedding, another person's, the average person's
  (the mean training embedding) and the null condition; per person, whether the own embedding
  beats the average one;
* identification, at each guidance w: `per_person` portraits drawn from one photo of each of
  `PEOPLE` people, embedded by dlib and matched to the nearest centre (top-1, top-5), against
  chance and against the real 32x32 photos;
* morphs, at each w: rows from one person to the next at one seed; a row counts when its first
  image is identified as its start person and its last as its end person; and the end-to-end pixel
  change of the row against two independent seeds.

The figures go to `metrics.json` under `portraits` (one entry per test set) and the model card.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..faces import (PORTRAIT_GUIDANCE, PORTRAIT_TEMPERATURE, SKETCH_STRENGTH, SKETCH_TEMPERATURE, default_embedder,
                     morph, morph_embeddings, portrait_stream, split_portrait_model)
from ..cards import card_section, rewrite_card

PEOPLE = 30                 # people to tell apart (the celeba-portraits held-out split has 30)
TEST_SETS = ("celeba-portraits", "celeba-faces32")


def embed_images(images: torch.Tensor, embedder=None) -> np.ndarray:
    """dlib embeddings (N, 128) of integer images (N, 3, H, W)."""
    return embed_and_detect(images, embedder)[0]


def embed_and_detect(images: torch.Tensor, embedder=None) -> tuple[np.ndarray, np.ndarray]:
    """dlib embeddings (N, 128) of integer images (N, 3, H, W), and whether dlib's face detector found a
    face in each (N,) bool (`embed_crop`'s flag; real test crops: about two in three)."""
    embedder = embedder or default_embedder()
    found = [embedder.embed_crop(np.ascontiguousarray(img.permute(1, 2, 0).numpy().astype(np.uint8)))
             for img in images.cpu()]
    return np.stack([v for v, _ in found]), np.array([d for _, d in found], dtype=bool)


def as_images(sketches: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Sketches in [0, 1] -> integer images, as the app shows them."""
    return (sketches.double() * (levels - 1)).round().long().clamp(0, levels - 1)


def variety(drawn: torch.Tensor, per_person: int) -> float:
    """Mean absolute difference in levels between two portraits of one person (pairs 0-1, 2-3, ...)."""
    d = drawn.double().reshape(-1, per_person, *drawn.shape[1:])
    return float((d[:, 0:per_person - 1:2] - d[:, 1::2]).abs().mean())


def ranks(embeddings: np.ndarray, centres: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rank (0 = nearest) of each embedding's true centre among all centres: (N,)."""
    distance = np.linalg.norm(embeddings[:, None] - centres[None], axis=-1)
    return (distance < distance[np.arange(len(truth)), truth][:, None]).sum(1)


def held_out_people(test, people: int = PEOPLE) -> tuple[list[int], list[int], np.ndarray, torch.Tensor]:
    """(person ids, index of each one's first photo, centres (P, 128), index of every photo of them)."""
    ids = sorted(set(test.labels.tolist()))[:people]
    first = [int((test.labels == p).nonzero()[0, 0]) for p in ids]
    centres = np.stack([test.vectors[test.labels == p].mean(0).numpy() for p in ids])
    rows = torch.cat([(test.labels == p).nonzero()[:, 0] for p in ids])
    return ids, first, centres, rows


def _bits(model, images: torch.Tensor, cond: Any, batch_size: int = 100) -> np.ndarray:
    """bits/dim of each image (N,) given its condition (N, F) or None."""
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            c = None if cond is None else cond[s:s + batch_size]
            out.append(model.bits_per_dim(images[s:s + batch_size].long(), c).double().cpu().numpy())
    return np.concatenate(out)


def conditions(model, vectors: torch.Tensor) -> torch.Tensor:
    """What the model's PixelCNN reads for embeddings (N, D): the embeddings, or the sketches at z = 0
    for one that reads sketches ("image" conditioning)."""
    pixelcnn, sketcher = split_portrait_model(model)
    return sketcher.sketch(vectors).flatten(1).cpu() if pixelcnn.config.conditioning == "image" else vectors


def likelihoods(model, twin, test, rows: torch.Tensor, ids: list[int]) -> dict[str, Any]:
    """bits/dim of the people's photos given own / another's / the average / the null condition."""
    pixelcnn, sketcher = split_portrait_model(model)
    images, vectors, labels = test.images[rows], test.vectors[rows], test.labels[rows].numpy()
    first = {p: int((labels == p).nonzero()[0][0]) for p in ids}
    other = torch.tensor([first[ids[(ids.index(int(p)) + 1) % len(ids)]] for p in labels])
    average = getattr(sketcher if sketcher is not None else pixelcnn.condition, "cond_mean", None)
    average = (average if average is not None else test.vectors.mean(0)).float().expand(len(rows), -1)
    own, mean = _bits(pixelcnn, images, conditions(model, vectors)), _bits(pixelcnn, images, conditions(model, average))
    gain = own - mean
    return {"people": len(ids), "images": len(rows), "bpd_own": float(own.mean()),
            "bpd_mismatched": float(_bits(pixelcnn, images, conditions(model, vectors[other])).mean()),
            "bpd_average": float(mean.mean()),
            "bpd_null": float(_bits(pixelcnn, images, pixelcnn.condition.null(len(rows))).mean()),
            "identity_gain_standard_error": float(gain.std() / np.sqrt(len(gain))),
            "photos_own_below_average": float((gain < 0).mean()),
            "people_own_below_average": int(sum(gain[labels == p].mean() < 0 for p in ids)),
            "bpd_unconditional": float(_bits(twin, images, None).mean()) if twin is not None else None}


@dataclass(frozen=True)
class Setting:
    """One way of drawing portraits: guidance w, the sketch prior's strength, the sketch's temperature
    and the pixels' temperature (the last three do nothing to a model without a sketch)."""

    guidance: float = PORTRAIT_GUIDANCE
    strength: float = SKETCH_STRENGTH
    sketch_temperature: float = SKETCH_TEMPERATURE
    temperature: float = PORTRAIT_TEMPERATURE

    def key(self, sketched: bool) -> str:
        """Its key in an entry's `guidance` figures: "5" (w alone, a model without a sketch), or
        "5, prior 2.5, sketch 0.7", then ", temperature 0.8" unless the temperature is 1."""
        key = f"{self.guidance:g}"
        if sketched:
            key += f", prior {self.strength:g}, sketch {self.sketch_temperature:g}"
        return key if self.temperature == 1 else f"{key}, temperature {self.temperature:g}"

    def draw(self, model, vectors: torch.Tensor, seed: int, shared: bool = False):
        """(sketches or None, the finished images) of `portrait_stream` in this setting."""
        sketches, events = portrait_stream(model, vectors, seed=seed, temperature=self.temperature,
                                           guidance=self.guidance, strength=self.strength,
                                           sketch_temperature=self.sketch_temperature, shared=shared)
        *_, last = events
        return sketches, last.images


def identification(model, test, first: list[int], centres: np.ndarray, setting: Setting, *, per_person: int,
                   seed: int, embedder=None) -> tuple[dict[str, float], torch.Tensor]:
    """`per_person` portraits of each person from their first photo's embedding: top-1 and top-5
    identification, their variety, the share in which dlib's detector finds a face; and the same
    for the sketches they were held to."""
    vectors = test.vectors[first].repeat_interleave(per_person, 0)
    sketches, drawn = setting.draw(model, vectors, seed)
    truth = np.repeat(np.arange(len(first)), per_person)
    embeddings, detected = embed_and_detect(drawn, embedder)
    r = ranks(embeddings, centres, truth)
    out = {"top1": float((r == 0).mean()), "top5": float((r < 5).mean()), "variety": variety(drawn, per_person),
           "face_found": float(detected.mean())}
    if sketches is not None:
        images = as_images(sketches, model.config.levels)
        embeddings, detected = embed_and_detect(images, embedder)
        r = ranks(embeddings, centres, truth)
        out.update(sketch_top1=float((r == 0).mean()), sketch_top5=float((r < 5).mean()),
                   sketch_variety=variety(images, per_person), sketch_face_found=float(detected.mean()),
                   from_sketch=float((drawn.double() - sketches.double().cpu() * 255).abs().mean()))
    return out, drawn


def morphs(model, test, first: list[int], centres: np.ndarray, setting: Setting, *, steps: int = 8, seed: int,
           embedder=None) -> dict[str, float]:
    """Rows from person 2r to 2r + 1 at one seed: both ends identified, and the end-to-end change
    against two portraits of the ends at independent seeds."""
    ends, truth, shared, independent = [], [], [], []
    for r in range(len(first) // 2):
        a, b = test.vectors[first[2 * r]], test.vectors[first[2 * r + 1]]
        _, events = morph(model, a, b, steps, seed=seed + r, guidance=setting.guidance, strength=setting.strength,
                          sketch_temperature=setting.sketch_temperature, temperature=setting.temperature)
        *_, row = events
        ends += [row.images[0], row.images[-1]]
        truth += [2 * r, 2 * r + 1]
        loose = torch.cat([setting.draw(model, person[None], seed + offset + r)[1]
                           for person, offset in ((a, 1000), (b, 2000))])
        shared.append((row.images[-1].float() - row.images[0].float()).abs().mean().item())
        independent.append((loose[1].float() - loose[0].float()).abs().mean().item())
    found = ranks(embed_images(torch.stack(ends), embedder), centres, np.array(truth)) == 0
    return {"morph_rows": len(first) // 2, "morph_ends_identified": float(found.reshape(-1, 2).all(1).mean()),
            "morph_end_to_end_change": float(np.mean(shared)),
            "independent_end_to_end_change": float(np.mean(independent))}


def key_order(key: str) -> tuple[float, str]:
    """Sort key of a `Setting.key`: by w, then by the rest of the key."""
    return float(key.split(",")[0]), key


def evaluate_portraits(model, test, *, twin=None, settings=(Setting(),), per_person: int = 8, seeds=(0,),
                       embedder=None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Every figure of the module docstring on one test set, each the mean over `seeds` (top-1 also per
    seed); also the portraits drawn in each setting at the first seed, by its key."""
    pixelcnn, sketcher = split_portrait_model(model)
    ids, first, centres, rows = held_out_people(test)
    result = likelihoods(model, twin, test, rows, ids)
    real = rows[torch.cat([torch.arange(len(rows))[test.labels[rows] == p][:per_person] for p in ids])]
    real_truth = np.array([ids.index(int(p)) for p in test.labels[real]])
    real_embeddings, real_found = embed_and_detect(test.images[real], embedder)
    real_ranks = ranks(real_embeddings, centres, real_truth)
    result.update(identification_chance=1 / len(ids), identification_real_32px=float((real_ranks == 0).mean()),
                  identification_real_32px_top5=float((real_ranks < 5).mean()),
                  real_variety=variety(test.images[real].long(), 2), real_face_found=float(real_found.mean()),
                  per_person=per_person, seeds=list(seeds))
    result["guidance"], drawn = {}, {}
    for setting in settings:
        key, runs = setting.key(sketcher is not None), []
        for seed in seeds:
            ident, images = identification(model, test, first, centres, setting, per_person=per_person, seed=seed,
                                           embedder=embedder)
            drawn.setdefault(key, images)
            runs.append({**ident, **morphs(model, test, first, centres, setting, seed=seed, embedder=embedder)})
        result["guidance"][key] = {name: float(np.mean([r[name] for r in runs])) for name in runs[0]}
        result["guidance"][key]["top1_per_seed"] = [r["top1"] for r in runs]
        result["guidance"][key]["morph_rows"] = int(runs[0]["morph_rows"])
    return result, drawn


# ------------------------------------------------------------------------------------ figures
def portrait_figures(model, test, drawn: torch.Tensor, per_person: int, folder: Path, setting: Setting,
                     people: int = 6, seed: int = 0) -> None:
    """samples.png: for a few held-out people, the photo that conditions and its portraits; and
    interpolation.png: rows between pairs of people at one seed, each under its row of sketches for a
    model with one (the paper's Figures 4 and 5)."""
    from ..images import image_grid

    _, first, _, _ = held_out_people(test)
    rows = [torch.cat([test.images[first[k]][None].long(), drawn[k * per_person:(k + 1) * per_person].cpu()])
            for k in range(people)]
    image_grid(torch.cat(rows), nrow=per_person + 1, scale=3).save(folder / "samples.png")
    lines = []
    for r in range(4):
        a, b = test.vectors[first[2 * r]], test.vectors[first[2 * r + 1]]
        sketches, row = setting.draw(model, morph_embeddings(a, b, torch.linspace(0, 1, 8)), seed + r, shared=True)
        lines += ([] if sketches is None else [as_images(sketches.cpu())]) + [row.cpu()]
    image_grid(torch.cat(lines), nrow=8, scale=3).save(folder / "interpolation.png")


def held_out_examples(data_dir: str | Path, folder: Path, count: int = 8) -> None:
    """One 64x64 photo of each of `count` held-out people of celeba-portraits, as the app's example faces."""
    from PIL import Image

    from ..data import load_dataset
    from ..face_data import PORTRAIT_FILE, split_people

    raw = load_dataset(f"parquet:{(Path(data_dir) / PORTRAIT_FILE).resolve()}", "all")
    _, held_out = split_people(raw.labels.numpy())
    folder.mkdir(parents=True, exist_ok=True)
    for k, person in enumerate(sorted(held_out)[:count]):
        index = int((raw.labels == person).nonzero()[0, 0])
        Image.fromarray(raw.images[index].permute(1, 2, 0).numpy()).save(folder / f"person-{k + 1}.png")


# ------------------------------------------------------------------------------------ the card
@card_section("portraits")
def portraits_card(entries: dict[str, Any]) -> str:
    """The card's sections: one per test set measured."""
    return "".join(test_set_card(p, name) for name, p in measured_sets(entries).items())


def measured_sets(entries: Any) -> dict[str, dict[str, Any]]:
    """The entries of `portraits` in this module's form, one per test set (an older, flat entry is dropped)."""
    if not isinstance(entries, dict):
        return {}
    return {name: p for name, p in entries.items() if isinstance(p, dict) and "guidance" in p}


def setting_row(key: str, g: dict[str, Any]) -> str:
    """One row of the card's table of settings (older entries lack variety, face and sketch figures)."""
    cells = [key, f"**{g['top1']:.1%}** / {g['top5']:.1%}",
             f"{g['variety']:.1f}" if "variety" in g else "-",
             f"{g['face_found']:.0%}" if "face_found" in g else "-",
             f"{g['sketch_top1']:.1%} / {g['sketch_top5']:.1%}, {g['sketch_variety']:.1f}" if "sketch_top1" in g else "-",
             f"{g['morph_ends_identified']:.0%} of {g['morph_rows']}",
             f"{g['morph_end_to_end_change']:.1f} / {g['independent_end_to_end_change']:.1f}"]
    return "| " + " | ".join(cells) + " |\n"


def seeds_text(p: dict[str, Any]) -> str:
    """ "seed 0", or "the mean of seeds 0, 1, 2" (older entries hold one `seed`)."""
    seeds = p.get("seeds", [p.get("seed", 0)])
    return f"seed {seeds[0]}" if len(seeds) == 1 else "the mean of seeds " + ", ".join(map(str, seeds))


def test_set_card(p: dict[str, Any], name: str) -> str:
    """The model card's table for one test set's `portraits` entry."""
    rows = "".join(setting_row(key, g) for key, g in p["guidance"].items())
    unconditional = (f"| ... of an unconditional twin (same size and budget) | {p['bpd_unconditional']:.4f} |\n"
                     if p.get("bpd_unconditional") is not None else "")
    real = (f" Real photos of one of these people differ by {p['real_variety']:.1f} levels, and dlib's detector "
            f"finds a face in {p['real_face_found']:.0%} of them." if "real_variety" in p else "")
    return f"""
**{p['people']} held-out people of `{name}`** ({p['images']} photos never seen in training; measured with
`python -m pixelcnn.experiments portraits`):

| measurement | value |
|---|---|
| test bits/dim given the person's own embedding | **{p['bpd_own']:.4f}** |
| ... given another held-out person's embedding | {p['bpd_mismatched']:.4f} |
| ... given the mean embedding (an average person; the own one is {p['bpd_average'] - p['bpd_own']:.4f} ± {p['identity_gain_standard_error']:.4f} lower, for {p['people_own_below_average']} of {p['people']} people) | {p['bpd_average']:.4f} |
| ... given the null condition | {p['bpd_null']:.4f} |
{unconditional}| real 32x32 photos identified as their person (top-1 / top-5 among {p['people']}) | {p['identification_real_32px']:.1%} / {p['identification_real_32px_top5']:.1%} (chance {p['identification_chance']:.1%}) |

| w, prior strength, sketch temperature | portraits identified, top-1 / top-5 | variety (levels) | face found | their sketches: top-1 / top-5, variety | morph rows with both ends identified | morph end-to-end change, one seed / independent seeds |
|---|---|---|---|---|---|---|
{rows}
{p['per_person']} portraits of each person from one photo's embedding, {seeds_text(p)}; variety is the mean absolute
difference between two portraits of one person, in levels.{real} Morph rows of 8 images between pairs of people.

"""


# ------------------------------------------------------------------------------------ command line
def main(argv: list[str] | None = None) -> int:
    """Measure a portrait model on held-out people; write the figures to MODEL/metrics.json and its card."""
    from .. import from_pretrained
    from ..data import load_dataset
    from ..hub import METRICS_NAME, read_metrics

    parser = argparse.ArgumentParser(prog="python -m pixelcnn.experiments portraits", description=main.__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--test_set", choices=TEST_SETS, default="celeba-portraits")
    parser.add_argument("--twin", type=Path, help="an unconditional model of the same size and budget")
    parser.add_argument("--guidance", type=float, nargs="+", default=[PORTRAIT_GUIDANCE])
    parser.add_argument("--strength", type=float, nargs="+", default=[SKETCH_STRENGTH],
                        help="strengths of the sketch prior (a model with a sketch)")
    parser.add_argument("--sketch_temperature", type=float, nargs="+", default=[SKETCH_TEMPERATURE],
                        help="temperatures of the sketch's z (a model with a latent sketch)")
    parser.add_argument("--per_person", type=int, default=8)
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="seeds; each figure is their mean")
    parser.add_argument("--temperature", type=float, default=PORTRAIT_TEMPERATURE,
                        help="sampling temperature of the portraits and morphs (recorded beside w unless 1)")
    parser.add_argument("--figures", action="store_true", help="also redraw samples.png, interpolation.png, examples/")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = from_pretrained(args.model)
    twin = from_pretrained(args.twin) if args.twin else None
    test = load_dataset(args.test_set, "test", data_dir=args.data_dir)
    settings = [Setting(w, k, tau, args.temperature) for w in args.guidance for k in args.strength
                for tau in args.sketch_temperature]
    result, drawn = evaluate_portraits(model, test, twin=twin, settings=settings, per_person=args.per_person,
                                       seeds=args.seed)
    metrics = read_metrics(args.model) or {}
    rounded = json.loads(json.dumps(result), parse_float=lambda v: round(float(v), 4))
    entries = measured_sets(metrics.get("portraits"))
    earlier = entries.get(args.test_set, {}).get("guidance", {})  # other guidance values measured before stay
    rounded["guidance"] = dict(sorted({**earlier, **rounded["guidance"]}.items(), key=lambda item: key_order(item[0])))
    metrics["portraits"] = {**entries, args.test_set: rounded}
    (args.model / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n")
    rewrite_card(args.model, model)
    if args.figures:  # at the defaults when they were measured, else at the last setting
        sketched = split_portrait_model(model)[1] is not None
        setting = next((s for s in settings if s == Setting(temperature=args.temperature)), settings[-1])
        held_out_examples(args.data_dir, args.model / "examples")
        portrait_figures(model, test, drawn[setting.key(sketched)], args.per_person, args.model, setting)
    print(json.dumps(rounded, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


@card_section("conditioning_comparison")
def comparison_section(c: dict[str, Any]) -> str:
    """The card's table of forms of conditioning compared at equal steps (recorded by hand from runs)."""
    rows = "".join(f"| {name} | " + ", ".join(f"{bpd:.3f} at {step}" for step, bpd in curve.items()) + " |\n"
                   for name, curve in c.items() if isinstance(curve, dict))
    return (f"\n**Forms of conditioning compared** ({c.get('note', 'test bits/dim at equal steps')}):\n\n"
            f"| conditioning | test bits/dim at step |\n|---|---|\n{rows}")
