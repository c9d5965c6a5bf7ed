"""Faces: a pretrained face embedder, and the portrait data of the paper's section 3.3.

The paper conditions a PixelCNN on the embedding of a face-recognition network trained with a
triplet loss. The closest that runs offline is dlib's ResNet face descriptor (128 numbers, trained
with a metric loss on about 3 million faces, 99.38% on LFW), with dlib's HOG face detector and its
5-point landmarks for alignment. `DlibFaceEmbedder` wraps them behind a small interface, `embed`:
detect, align, embed, and return the crop it used, so that another embedder can replace it.

The model files come from the `face_recognition_models` package, found without importing it (its
`__init__` imports `pkg_resources`, which current setuptools no longer ships).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from .images import UploadError

EMBEDDING_DIM = 128
DETECT_MAX_SIDE = 1600      # larger photos are scaled down before detection (a face stays >= ~40 px)
CHIP_SIZE = 150             # dlib's aligned face chip, the descriptor's input


class NoFaceError(UploadError):
    """A photo in which no face was found."""


@dataclass
class Face:
    """What an embedder returns for one photo.

    embedding: (EMBEDDING_DIM,) float32. box: (left, top, right, bottom) of the face used, in the
    photo's pixels. crop: the aligned face the embedder saw. faces_found: how many faces the photo
    holds (the largest is used). notices: what was done to find it.
    """

    embedding: np.ndarray
    box: tuple[int, int, int, int]
    crop: Image.Image
    faces_found: int
    notices: list[str] = field(default_factory=list)
    photo: Image.Image | None = None  # the photo upright, as the box refers to it


class FaceEmbedder(Protocol):
    dim: int

    def embed(self, photo: Image.Image) -> Face: ...


def model_file(name: str) -> Path:
    """Path of one of face_recognition_models' files."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face models are missing: pip install face_recognition_models dlib-bin")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: reinstall face_recognition_models")
    return path


class DlibFaceEmbedder:
    """dlib's HOG detector, 5-point alignment and ResNet descriptor: photo -> `Face`."""

    dim = EMBEDDING_DIM

    def __init__(self) -> None:
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
        self.descriptor = dlib.face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat")))
        self._dlib = dlib

    def detect(self, rgb: np.ndarray, upsample: int = 1) -> list:
        """Face rectangles in an (H, W, 3) uint8 image, largest first."""
        boxes = list(self.detector(rgb, upsample))
        return sorted(boxes, key=lambda r: -r.area())

    def embed_box(self, rgb: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
        """(embedding (128,), aligned chip (150, 150, 3)) of the face in `box` (a dlib rectangle)."""
        shape = self.landmarks(rgb, box)
        chip = self._dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=0.25)
        vector = np.asarray(self.descriptor.compute_face_descriptor(chip), dtype=np.float32)
        return vector, chip

    def embed(self, photo: Image.Image) -> Face:
        """Detect, align and embed the largest face of a photo (turned upright if it lies sideways).

        Raises `NoFaceError` when no face is found at any of the four orientations.
        """
        rgb_photo = photo.convert("RGB")
        notices = [] if photo.mode in ("RGB", "RGBA") else [f"{photo.mode} photo used as RGB"]
        for turn in (0, 90, 270, 180):
            turned = rgb_photo.rotate(turn, expand=True) if turn else rgb_photo
            factor = min(1.0, DETECT_MAX_SIDE / max(turned.size))
            small = turned if factor == 1 else turned.resize((round(turned.width * factor),
                                                                round(turned.height * factor)), Image.LANCZOS)
            rgb = np.asarray(small)
            boxes = self.detect(rgb) or (self.detect(rgb, upsample=2) if max(small.size) <= 800 else [])
            if boxes:
                break
        else:
            raise NoFaceError("no face found in the photo (tried it upright and turned); use a photo where one "
                              "face is clearly visible, about 40 pixels across or more")
        if turn:
            notices.append(f"the photo lay sideways: turned by {turn} degrees to find the face")
        if len(boxes) > 1:
            notices.append(f"{len(boxes)} faces found: the largest is used")
        vector, chip = self.embed_box(rgb, boxes[0])
        b = boxes[0]
        box = tuple(int(round(v / factor)) for v in (b.left(), b.top(), b.right(), b.bottom()))
        return Face(vector, box, Image.fromarray(chip), len(boxes), notices, turned)

    def embed_crop(self, crop: np.ndarray, size: int = 160) -> tuple[np.ndarray, bool]:
        """Embedding of a face crop (H, W, 3) uint8, upscaled to `size`; (embedding, detected).

        When the detector finds no face, the whole crop is taken as the face box (the dataset's crops
        are centred faces), and `detected` is False.
        """
        rgb = np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))
        boxes = self.detect(rgb)
        box = boxes[0] if boxes else self._dlib.rectangle(0, 0, size - 1, size - 1)
        return self.embed_box(rgb, box)[0], bool(boxes)


# ------------------------------------------------------------------------------------ portrait data
PORTRAIT_FILE = "celeba_faces64/data/all-00000-of-00001.parquet"
PORTRAIT_SIZE = 32          # the paper's portraits are 32x32
HELD_OUT_PEOPLE = 30        # people never seen in training, for evaluation
MIN_PHOTOS_HELD_OUT = 10    # held-out people have enough photos to test identity


def split_people(labels: np.ndarray, held_out: int = HELD_OUT_PEOPLE, seed: int = 0) -> tuple[set, set]:
    """(training people, held-out people): held-out ones drawn, with a fixed seed, among those with
    at least MIN_PHOTOS_HELD_OUT photos."""
    ids, counts = np.unique(labels, return_counts=True)
    candidates = ids[counts >= MIN_PHOTOS_HELD_OUT]
    chosen = set(np.random.default_rng(seed).choice(candidates, size=held_out, replace=False).tolist())
    return set(ids.tolist()) - chosen, chosen


def crop_embeddings(images: np.ndarray, embedder: DlibFaceEmbedder | None = None) -> tuple[np.ndarray, float]:
    """Embeddings of face crops (N, 3, H, W) uint8 and of their mirror images: (N, 2, 128), and the
    share of crops in which the detector found the face."""
    from tqdm import tqdm

    embedder = embedder or DlibFaceEmbedder()
    out = np.zeros((len(images), 2, EMBEDDING_DIM), dtype=np.float32)
    found = 0
    for k in tqdm(range(len(images)), desc="embedding faces", unit="face", mininterval=10):
        crop = images[k].transpose(1, 2, 0)
        out[k, 0], detected = embedder.embed_crop(np.ascontiguousarray(crop))
        out[k, 1], _ = embedder.embed_crop(np.ascontiguousarray(crop[:, ::-1]))
        found += detected
    return out, found / max(1, len(images))


def portrait_dataset(split: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None):
    """CelebA face crops at 32x32, each with its face embedding, split by person.

    "train": the training people's crops and their mirror images, each with its own embedding;
    "test": the held-out people's crops. Labels are CelebA person ids. Embeddings are computed
    once (about 10 minutes on one core) and cached atomically.
    """
    import os

    import torch

    from .data import DatasetError, _cache_key, _default_cache_dir, cached_array, load_dataset

    if split not in ("train", "test"):
        raise DatasetError(f"celeba-portraits has the splits 'train' and 'test', not {split!r}")
    root = data_dir or os.environ.get("PIXELCNN_DATA_DIR")
    if not root or not (Path(root) / PORTRAIT_FILE).is_file():
        raise DatasetError(f"celeba-portraits needs {PORTRAIT_FILE} under data_dir (or PIXELCNN_DATA_DIR); "
                           f"got {root!r}")
    path = (Path(root) / PORTRAIT_FILE).resolve()  # the cache is keyed on its contents
    raw = load_dataset(f"parquet:{path}", "all", cache_dir=cache_dir)
    cache = Path(cache_dir).expanduser() if cache_dir else _default_cache_dir()
    key = _cache_key("celeba-portraits|dlib-resnet-v1|160", "all", [path])
    embeddings = cached_array(cache / f"{key}.faces.npy", lambda: crop_embeddings(raw.images.numpy())[0])
    _, held_out = split_people(raw.labels.numpy())
    keep = torch.tensor([(int(label) in held_out) == (split == "test") for label in raw.labels])
    images = torch.nn.functional.avg_pool2d(raw.images[keep].float(), 64 // PORTRAIT_SIZE).round().to(torch.uint8)
    vectors, labels = torch.from_numpy(embeddings)[keep], raw.labels[keep]
    if split == "train":  # mirror images, each with its own embedding
        images = torch.cat([images, images.flip(-1)])
        vectors, labels = torch.cat([vectors[:, 0], vectors[:, 1]]), torch.cat([labels, labels])
    else:
        vectors = vectors[:, 0]
    names = [str(k) for k in range(int(raw.labels.max()) + 1)]
    data = type(raw)(images, labels, names, "celeba-portraits", split)
    return data.with_vectors(vectors.numpy())


# ------------------------------------------------------------------------------------ portraits
def portraits(model, person, n: int, *, seed: int | None = None, temperature: float = 1.0,
              embedder: FaceEmbedder | None = None, every: int | None = None):
    """New portraits of the person in a photo (a PIL image) or with an embedding ((128,) array).

    Returns (the `Face` found in the photo, or None for an embedding; a `stream` of n portraits).
    """
    import torch

    from .sampling import stream

    face = None
    if isinstance(person, Image.Image):
        face = (embedder or default_embedder()).embed(person)
        person = face.embedding
    h = torch.as_tensor(np.asarray(person, dtype=np.float32))
    return face, stream(model, n, h, seed=seed, temperature=temperature, every=every)


_EMBEDDER: DlibFaceEmbedder | None = None


def default_embedder() -> DlibFaceEmbedder:
    """One dlib embedder per process (loading its models takes about a second)."""
    global _EMBEDDER
    if _EMBEDDER is None:
        _EMBEDDER = DlibFaceEmbedder()
    return _EMBEDDER


# ------------------------------------------------------------------------------------ measurements
def _bits_per_image(model, images, cond, batch_size: int = 100) -> np.ndarray:
    """bits/dim of each image (N,) given its condition (N, ...) or None."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            c = None if cond is None else cond[s:s + batch_size]
            out.append(model.bits_per_dim(images[s:s + batch_size].long(), c).double().cpu().numpy())
    return np.concatenate(out)


def identify(embeddings: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (N,) for each embedding (N, D) among centres (P, D)."""
    return np.linalg.norm(embeddings[:, None] - centres[None], axis=-1).argmin(1)


def evaluate_portraits(model, twin, test, *, per_person: int = 8, seed: int = 0, embedder=None) -> dict:
    """The paper's section 3.3, measured on held-out people (`test`: images, labels, vectors).

    bits/dim given each image's own embedding, given another held-out person's (mismatched), given
    the mean embedding (an average person: what the condition adds without identity, e.g. where a
    spatial condition's map tells the layers they are), and of the unconditional twin, with the
    paired gain of the own embedding over the average one; top-1 identification of `per_person`
    portraits drawn from one photo of each person, against chance and against real photos at the
    same size; and the mean pixel change between neighbours of an interpolation row at one seed,
    against independent seeds.
    """
    import torch

    from .sampling import interpolate, sample

    embedder = embedder or default_embedder()
    people = sorted(set(test.labels.tolist()))
    first = {p: int((test.labels == p).nonzero()[0, 0]) for p in people}
    other = torch.tensor([first[people[(people.index(int(p)) + 1) % len(people)]] for p in test.labels])
    # an average person: the training mean (stored by a standardised condition), else the held-out mean
    mean_h = getattr(model.condition, "cond_mean", None)
    mean_h = (mean_h if mean_h is not None else test.vectors.mean(0)).float().expand(len(test), -1)
    own, average = _bits_per_image(model, test.images, test.vectors), _bits_per_image(model, test.images, mean_h)
    gain = own - average  # what identity itself is worth, photo by photo
    labels = test.labels.numpy()
    result = {"people": len(people), "images": len(test), "bpd_own": float(own.mean()),
              "bpd_mismatched": float(_bits_per_image(model, test.images, test.vectors[other]).mean()),
              "bpd_average": float(average.mean()),
              "identity_gain_standard_error": float(gain.std() / np.sqrt(len(gain))),
              "photos_own_below_average": float((gain < 0).mean()),
              "people_own_below_average": int(sum(gain[labels == p].mean() < 0 for p in people)),
              "bpd_unconditional": float(_bits_per_image(twin, test.images, None).mean()) if twin is not None else None}
    centres = np.stack([test.vectors[test.labels == p].mean(0).numpy() for p in people])
    truth = np.repeat(np.arange(len(people)), per_person)
    drawn = [sample(model, per_person, test.vectors[first[p]], seed=seed + k) for k, p in enumerate(people)]
    drawn = torch.cat(drawn)
    sample_vectors = np.stack([embedder.embed_crop(img.permute(1, 2, 0).numpy().astype(np.uint8))[0]
                               for img in drawn])
    real_vectors = np.stack([embedder.embed_crop(img.permute(1, 2, 0).numpy().astype(np.uint8))[0]
                             for img in test.images])
    real_truth = np.array([people.index(int(p)) for p in test.labels])
    result.update(identification_top1=float((identify(sample_vectors, centres) == truth).mean()),
                  identification_chance=1 / len(people),
                  identification_real_32px=float((identify(real_vectors, centres) == real_truth).mean()))
    steps, rows, shared, independent = 8, min(10, len(people) // 2), [], []
    for r in range(rows):
        a, b = test.vectors[first[people[2 * r]]], test.vectors[first[people[2 * r + 1]]]
        *_, row = interpolate(model, a, b, steps, seed=seed + r)
        alphas = torch.linspace(0, 1, steps)[:, None]
        loose = torch.cat([sample(model, 1, (1 - t) * a + t * b, seed=seed + 1000 * r + k)
                           for k, t in enumerate(alphas)])
        for images, out in ((row.images, shared), (loose, independent)):
            out.append((images[1:].float() - images[:-1].float()).abs().mean().item())
    result.update(interpolation_neighbour_change=float(np.mean(shared)),
                  independent_neighbour_change=float(np.mean(independent)), interpolation_rows=rows)
    return result, drawn


# ------------------------------------------------------------------------------------ command line
def held_out_examples(data_dir: str | Path, folder: Path, count: int = 8) -> None:
    """One 64x64 photo of each of `count` held-out people, as the app's example faces."""
    from .data import load_dataset

    raw = load_dataset(f"parquet:{(Path(data_dir) / PORTRAIT_FILE).resolve()}", "all")
    _, held_out = split_people(raw.labels.numpy())
    folder.mkdir(parents=True, exist_ok=True)
    for k, person in enumerate(sorted(held_out)[:count]):
        index = int((raw.labels == person).nonzero()[0, 0])
        Image.fromarray(raw.images[index].permute(1, 2, 0).numpy()).save(folder / f"person-{k + 1}.png")


def portrait_figures(model, test, drawn, per_person: int, folder: Path, people: int = 6, seed: int = 0) -> None:
    """samples.png: for a few held-out people, the photo that conditions and 8 portraits; and
    interpolation.png: rows between pairs of people at one seed (the paper's Figures 4 and 5)."""
    import torch

    from .images import image_grid
    from .sampling import interpolate

    ids = sorted(set(test.labels.tolist()))
    rows = []
    for k, person in enumerate(ids[:people]):
        photo = test.images[int((test.labels == person).nonzero()[0, 0])][None].long()
        rows.append(torch.cat([photo, drawn[k * per_person:(k + 1) * per_person].cpu()]))
    image_grid(torch.cat(rows), nrow=per_person + 1, scale=3).save(folder / "samples.png")
    lines = []
    for r in range(4):
        a = test.vectors[int((test.labels == ids[2 * r]).nonzero()[0, 0])]
        b = test.vectors[int((test.labels == ids[2 * r + 1]).nonzero()[0, 0])]
        *_, row = interpolate(model, a, b, 8, seed=seed + r)
        lines.append(row.images.cpu())
    image_grid(torch.cat(lines), nrow=8, scale=3).save(folder / "interpolation.png")


def main(argv: list[str] | None = None) -> int:
    """python -m pixelcnn.faces MODEL TWIN --data_dir DIR: measure a portrait model on held-out people,
    write the figures to `portraits` in MODEL/metrics.json and its card, and the example faces and pictures."""
    import argparse
    import json

    import torch

    from . import from_pretrained
    from .hub import METRICS_NAME, read_metrics
    from .train import rewrite_card

    parser = argparse.ArgumentParser(prog="python -m pixelcnn.faces", description=main.__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("twin", type=Path, help="the unconditional twin of the same size and budget")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--per_person", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, twin = from_pretrained(args.model), from_pretrained(args.twin)
    test = portrait_dataset("test", args.data_dir)
    result, drawn = evaluate_portraits(model, twin, test, per_person=args.per_person)
    metrics = read_metrics(args.model) or {}
    metrics["portraits"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
    (args.model / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n")
    rewrite_card(args.model, model)
    held_out_examples(args.data_dir, args.model / "examples")
    portrait_figures(model, test, drawn, args.per_person, args.model)
    print(json.dumps(metrics["portraits"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
