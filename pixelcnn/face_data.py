"""The face datasets (the paper's section 3.3), built from CelebA crops and registered as data sources.

- "celeba-portraits": `celeba_faces64` at 32x32, split by person (30 held out), each crop with the
  dlib embedding computed here (once, cached).
- "celeba-faces32": `celeba_faces32_large`, tight crops of 9,224 other people with stored embeddings.
- "celeba-faces32+64": the two training sets together.

Each registers itself with `data.derived_dataset`, and the cards of models trained on them state
CelebA's terms (`cards.data_terms`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from .cards import data_terms
from .data import DatasetError, cache_key, cached_array, default_cache_dir, derived_dataset, load_dataset
from .faces import EMBEDDING_DIM, DlibFaceEmbedder

data_terms("celeba-", "\n**Data terms.** Trained on face crops from CelebA (Liu et al., 2015), whose terms allow "
                      "non-commercial research use only; these weights inherit them. Embeddings come from dlib's "
                      "ResNet face descriptor (`pixelcnn.faces`). The example faces are photos of held-out "
                      "people, never seen in training.\n")


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


@derived_dataset("celeba-portraits")
def portrait_dataset(split: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None):
    """CelebA face crops at 32x32, each with its face embedding, split by person.

    "train": the training people's crops and their mirror images, each with its own embedding;
    "test": the held-out people's crops. Labels are CelebA person ids. Embeddings are computed
    once (about 10 minutes on one core) and cached atomically.
    """
    if split not in ("train", "test"):
        raise DatasetError(f"celeba-portraits has the splits 'train' and 'test', not {split!r}")
    root = data_dir or os.environ.get("PIXELCNN_DATA_DIR")
    if not root or not (Path(root) / PORTRAIT_FILE).is_file():
        raise DatasetError(f"celeba-portraits needs {PORTRAIT_FILE} under data_dir (or PIXELCNN_DATA_DIR); "
                           f"got {root!r}")
    path = (Path(root) / PORTRAIT_FILE).resolve()  # the cache is keyed on its contents
    raw = load_dataset(f"parquet:{path}", "all", cache_dir=cache_dir)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    key = cache_key("celeba-portraits|dlib-resnet-v1|160", "all", [path])
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


LARGE_FACES_FILE = "celeba_faces32_large/data/{split}-00000-of-00001.parquet"


def _data_root(name: str, data_dir: str | Path | None, relative: str) -> Path:
    """The file `relative` under data_dir (else PIXELCNN_DATA_DIR); `DatasetError` when it is missing."""
    root = data_dir or os.environ.get("PIXELCNN_DATA_DIR")
    if not root or not (Path(root) / relative).is_file():
        raise DatasetError(f"{name} needs {relative} under data_dir (or PIXELCNN_DATA_DIR); got {root!r}")
    return (Path(root) / relative).resolve()


@derived_dataset("celeba-faces32")
def large_portrait_dataset(split: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None):
    """celeba_faces32_large: tight 32x32 CelebA crops (forehead to chin), each with the dlib embedding
    of its full-resolution crop. "train": 24,243 crops of 9,024 people; "test": 1,894 crops of 200
    further people. None of them is in celeba_faces64, so its held-out people stay unseen."""
    if split not in ("train", "test"):
        raise DatasetError(f"celeba-faces32 has the splits 'train' and 'test', not {split!r}")
    path = _data_root("celeba-faces32", data_dir, LARGE_FACES_FILE.format(split=split))
    data = load_dataset(f"parquet:{path}", "all", cache_dir=cache_dir, vector_column="embedding")  # a file per split
    return dataclasses.replace(data, source="celeba-faces32", split=split)


@derived_dataset("celeba-faces32+64")
def mixed_portrait_dataset(split: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None):
    """celeba-faces32 with the training people of celeba-portraits (loosely framed, and mirrored)
    added to its training split; the test split is celeba-faces32's."""
    large = large_portrait_dataset(split, data_dir, cache_dir)
    if split == "test":
        return dataclasses.replace(large, source="celeba-faces32+64")
    loose = portrait_dataset("train", data_dir, cache_dir)
    return dataclasses.replace(large, source="celeba-faces32+64",
                               images=torch.cat([large.images, loose.images]),
                               labels=torch.cat([large.labels, loose.labels]),
                               vectors=torch.cat([large.vectors, loose.vectors]))
