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
        notices = [] if photo.mode in ("RGB", "RGBA") else [
            "a greyscale photo: its grey is used for all three colours" if photo.mode in ("L", "LA", "1", "I", "F")
            else f"a {photo.mode} photo, converted to RGB"]
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
PORTRAIT_GUIDANCE = 5.0     # the default guidance of portraits and morphs, chosen by measurement (model card)
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


LARGE_FACES_FILE = "celeba_faces32_large/data/{split}-00000-of-00001.parquet"


def _data_root(name: str, data_dir: str | Path | None, relative: str) -> Path:
    """The file `relative` under data_dir (else PIXELCNN_DATA_DIR); `DatasetError` when it is missing."""
    import os

    from .data import DatasetError

    root = data_dir or os.environ.get("PIXELCNN_DATA_DIR")
    if not root or not (Path(root) / relative).is_file():
        raise DatasetError(f"{name} needs {relative} under data_dir (or PIXELCNN_DATA_DIR); got {root!r}")
    return (Path(root) / relative).resolve()


def large_portrait_dataset(split: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None):
    """celeba_faces32_large: tight 32x32 CelebA crops (forehead to chin), each with the dlib embedding
    of its full-resolution crop. "train": 24,243 crops of 9,024 people; "test": 1,894 crops of 200
    further people. None of them is in celeba_faces64, so its held-out people stay unseen."""
    import dataclasses

    from .data import DatasetError, load_dataset

    if split not in ("train", "test"):
        raise DatasetError(f"celeba-faces32 has the splits 'train' and 'test', not {split!r}")
    path = _data_root("celeba-faces32", data_dir, LARGE_FACES_FILE.format(split=split))
    data = load_dataset(f"parquet:{path}", split, cache_dir=cache_dir, vector_column="embedding")
    return dataclasses.replace(data, source="celeba-faces32")


def mixed_portrait_dataset(split: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None):
    """celeba-faces32 with the training people of celeba-portraits (loosely framed, and mirrored)
    added to its training split; the test split is celeba-faces32's."""
    import dataclasses

    import torch

    large = large_portrait_dataset(split, data_dir, cache_dir)
    if split == "test":
        return dataclasses.replace(large, source="celeba-faces32+64")
    loose = portrait_dataset("train", data_dir, cache_dir)
    return dataclasses.replace(large, source="celeba-faces32+64",
                               images=torch.cat([large.images, loose.images]),
                               labels=torch.cat([large.labels, loose.labels]),
                               vectors=torch.cat([large.vectors, loose.vectors]))


# ------------------------------------------------------------------------------------ portraits
def portraits(model, person, n: int, *, seed: int | None = None, temperature: float = 1.0,
              embedder: FaceEmbedder | None = None, every: int | None = None, guidance: float = PORTRAIT_GUIDANCE):
    """New portraits of the person in a photo (a PIL image) or with an embedding ((128,) array).

    guidance: w of classifier-free guidance (`pixelcnn.sampling`): above 1 the portraits look more
        like the person and less like each other; the default was chosen by measurement on held-out
        people (the model card's table, `pixelcnn.experiments.portraits`).
    Returns (the `Face` found in the photo, or None for an embedding; a `stream` of n portraits).
    """
    import torch

    from .sampling import stream

    face = None
    if isinstance(person, Image.Image):
        face = (embedder or default_embedder()).embed(person)
        person = face.embedding
    h = torch.as_tensor(np.asarray(person, dtype=np.float32))
    return face, stream(model, n, h, seed=seed, temperature=temperature, every=every, guidance=guidance)


_EMBEDDER: DlibFaceEmbedder | None = None


def default_embedder() -> DlibFaceEmbedder:
    """One dlib embedder per process (loading its models takes about a second)."""
    global _EMBEDDER
    if _EMBEDDER is None:
        _EMBEDDER = DlibFaceEmbedder()
    return _EMBEDDER


if __name__ == "__main__":  # the measurements moved; the old command still works
    from .experiments.portraits import main

    raise SystemExit(main())
