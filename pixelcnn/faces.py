"""Faces: a pretrained face embedder, and portraits of a person (the paper's section 3.3).

The paper conditions a PixelCNN on the embedding of a face-recognition network trained with a
triplet loss. The closest that runs offline is dlib's ResNet face descriptor (128 numbers, trained
with a metric loss on about 3 million faces, 99.38% on LFW), with dlib's HOG face detector (its unsure boxes
checked by dlib's CNN detector) and its 5-point landmarks for alignment. `DlibFaceEmbedder` wraps them behind a small interface, `embed`:
detect, align, embed, and return the crop it used, so that another embedder can replace it.
`portraits` draws new portraits of the person in a photo.

The face datasets live in `pixelcnn.face_data`, the measurements in `pixelcnn.experiments.portraits`.

The model files come from the `face_recognition_models` package, found without importing it (its
`__init__` imports `pkg_resources`, which current setuptools no longer ships).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from .images import UploadError

EMBEDDING_DIM = 128
CHIP_SIZE = 150             # dlib's aligned face chip, the descriptor's input
DETECT_MAX_PIXELS = 12_000_000   # larger photos are scaled down to this before detection
# photos up to this size are searched at twice their size too, so that faces from about 40 px are found
# (HOG's window is 80 px): 2.6 s of HOG on one core at 12 megapixels, on the grey photo
UPSAMPLE_MAX_PIXELS = 12_000_000
SMALLEST_FACE_PX = 40
TURN_MAX_SIDE = 1600             # a photo searched turned is scaled to this side first (a sideways face is big)
CONFIDENT_SCORE = 0.5       # HOG scores from here up are faces as they stand
CANDIDATE_SCORE = -0.5      # HOG scores from here to CONFIDENT_SCORE are faces only if the CNN detector agrees
MAX_CHECKS = 3              # unsure boxes checked by the CNN per photo, best first (about 0.15 s each)
VERIFY_SIDE = 170           # an unsure box is checked on a crop of twice its size, scaled to this side


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
        self.cnn = dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))
        self.landmarks = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
        self.descriptor = dlib.face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat")))
        self._dlib = dlib

    def detect(self, rgb: np.ndarray, upsample: int | None = None, checks: list[int] | None = None) -> list:
        """Face rectangles in an (H, W, 3) uint8 image, largest first.

        HOG proposes boxes with a score; a confident one (>= CONFIDENT_SCORE) is a face, an unsure one
        is a face only if dlib's CNN face detector (MMOD) finds one there too. HOG alone calls a
        suit's folds a face (score 0.1) and misses a man behind a camera (score -0.1); the CNN is
        right on both, but takes seconds on a whole photo, so it only checks HOG's few unsure boxes.

        upsample: HOG at twice the size (None: when the image has at most UPSAMPLE_MAX_PIXELS).
        checks: a one-item list holding how many CNN checks are left, shared by a photo's searches.
        """
        if upsample is None:
            upsample = 1 if rgb.shape[0] * rgb.shape[1] <= UPSAMPLE_MAX_PIXELS else 0
        checks = [MAX_CHECKS] if checks is None else checks
        # HOG on the grey photo: the same faces as on its three colours, in 70% of the time
        grey = np.asarray(Image.fromarray(rgb).convert("L"))
        boxes, scores, _ = self.detector.run(grey, upsample, CANDIDATE_SCORE)
        faces = []
        for box, score in sorted(zip(boxes, scores), key=lambda pair: -pair[1]):
            if score >= CONFIDENT_SCORE:
                faces.append(box)
            elif checks[0] > 0:
                checks[0] -= 1
                if self.confirmed(rgb, box):
                    faces.append(box)
        return sorted(faces, key=lambda r: -r.area())

    def confirmed(self, rgb: np.ndarray, box) -> bool:
        """Whether the CNN face detector finds a face around `box` (on a crop of twice its size)."""
        height, width = rgb.shape[:2]
        half = max(box.width(), box.height())
        cx, cy = (box.left() + box.right()) // 2, (box.top() + box.bottom()) // 2
        left, top = max(0, cx - half), max(0, cy - half)
        crop = Image.fromarray(rgb[top:min(height, cy + half), left:min(width, cx + half)])
        factor = VERIFY_SIDE / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * factor)), max(1, round(crop.height * factor))), Image.BILINEAR)
        x, y = (cx - left) * factor, (cy - top) * factor  # the box's centre in the crop
        return any(d.rect.left() <= x <= d.rect.right() and d.rect.top() <= y <= d.rect.bottom()
                   for d in self.cnn(np.asarray(crop), 0))

    def embed_box(self, rgb: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
        """(embedding (128,), aligned chip (150, 150, 3)) of the face in `box` (a dlib rectangle)."""
        shape = self.landmarks(rgb, box)
        chip = self._dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=0.25)
        vector = np.asarray(self.descriptor.compute_face_descriptor(chip), dtype=np.float32)
        return vector, chip

    def embed(self, photo: Image.Image) -> Face:
        """Detect, align and embed the largest face of a photo, turning it only when no upright face
        is found (a photo that lies sideways). Raises `NoFaceError` when no orientation has a face."""
        rgb_photo = photo.convert("RGB")
        notices = [] if photo.mode in ("RGB", "RGBA") else [
            "a greyscale photo: its grey is used for all three colours" if photo.mode in ("L", "LA", "1", "I", "F")
            else f"a {photo.mode} photo, converted to RGB"]
        checks = [MAX_CHECKS]
        for turn in (0, 90, 270, 180):
            turned = rgb_photo.rotate(turn, expand=True) if turn else rgb_photo
            factor = min(1.0, (DETECT_MAX_PIXELS / (turned.width * turned.height)) ** 0.5)
            if turn:
                factor = min(factor, TURN_MAX_SIDE / max(turned.size))
            small = turned if factor == 1 else turned.resize((round(turned.width * factor),
                                                                round(turned.height * factor)), Image.BILINEAR)
            rgb = np.asarray(small)
            faces = self.detect(rgb, upsample=0 if turn else None, checks=checks)  # a sideways face is big
            if faces:
                break
        else:
            raise NoFaceError(f"no face found in the photo (tried it upright and turned); use a photo where one "
                              f"face is clearly visible, about {SMALLEST_FACE_PX} pixels across or more (in photos up "
                              f"to {DETECT_MAX_PIXELS // 1_000_000} megapixels; larger ones are scaled down first)")
        if turn:
            notices.append(f"no face upright, so the photo was turned by {turn} degrees to find one")
        if len(faces) > 1:
            notices.append(f"{len(faces)} faces found: the largest is used")
        vector, chip = self.embed_box(rgb, faces[0])
        b = faces[0]
        box = tuple(int(round(v / factor)) for v in (b.left(), b.top(), b.right(), b.bottom()))
        return Face(vector, box, Image.fromarray(chip), len(faces), notices, turned)

    def embed_crop(self, crop: np.ndarray, size: int = 160) -> tuple[np.ndarray, bool]:
        """Embedding of a face crop (H, W, 3) uint8, upscaled to `size`; (embedding, detected).

        When the detector finds no face, the whole crop is taken as the face box (the dataset's crops
        are centred faces), and `detected` is False.
        """
        rgb = np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))
        boxes = sorted(self.detector(rgb, 1), key=lambda r: -r.area())  # HOG alone, as the cached embeddings
        box = boxes[0] if boxes else self._dlib.rectangle(0, 0, size - 1, size - 1)
        return self.embed_box(rgb, box)[0], bool(boxes)


# ------------------------------------------------------------------------------------ portraits
# The defaults of portraits and morphs, chosen by measurement on held-out people (docs/portraits.md,
# the model card, `pixelcnn.experiments.portraits`): w of classifier-free guidance, the strength of the
# sketch prior, the temperature of the sketch's z (how far its pose and light stray from the typical
# photo) and the pixels' sampling temperature
PORTRAIT_GUIDANCE = 2.0
SKETCH_STRENGTH = 20.0
SKETCH_TEMPERATURE = 0.6
PORTRAIT_TEMPERATURE = 0.8
# guidance above this was measured to make portraits less like the person, and they lose the face
PORTRAIT_GUIDANCE_MOST = 5.0


@dataclass
class Portraits:
    """What `portraits` returns: the face found in the photo (None for an embedding), the sketches the
    portraits are held to ((n, C, H, W) in [0, 1], one per portrait; None for a model without a
    sketch), and the stream of `SampleProgress` events of the portraits."""

    face: Face | None
    sketches: Any
    events: Iterator[Any]


def split_portrait_model(model) -> tuple[Any, Any]:
    """(the PixelCNN that draws, the face sketch or None) of a `PortraitModel` or a plain PixelCNN."""
    from .sketch import PortraitModel

    return (model.decoder, model.sketch) if isinstance(model, PortraitModel) else (model, None)


def as_embeddings(vectors) -> Any:
    """One embedding (D,) or a batch (B, D), as a float32 tensor (B, D)."""
    import torch

    vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    return vectors[None] if vectors.dim() == 1 else vectors


def portrait_stream(model, vectors, *, seed: int | None = None, temperature: float = PORTRAIT_TEMPERATURE,
                    every: int | None = None, guidance: float = PORTRAIT_GUIDANCE, strength: float = SKETCH_STRENGTH,
                    sketch_temperature: float = SKETCH_TEMPERATURE, shared: bool = False):
    """Portraits of embeddings (n, D), one per row: (their sketches (n, C, H, W) in [0, 1] or None,
    the stream). Each portrait's sketch is drawn at its own z (from `seed`), and the PixelCNN reads the
    embedding, or the sketch when it was trained on sketches ("image" conditioning), held to the
    sketch by the sampler's prior at `strength`. shared: every row takes the z and the pixel noise of
    row 0, so that only the embedding changes along a row (a morph)."""
    from .sampling import SketchPrior, check_seed, stream

    pixelcnn, sketcher = split_portrait_model(model)
    vectors, seed = as_embeddings(vectors), check_seed(seed)
    n = len(vectors)
    sketches = None
    if sketcher is not None:
        z = sketcher.latents(1 if shared else n, sketch_temperature, seed)
        sketches = sketcher.sketch(vectors, None if z is None else z.expand(n, -1))
    cond = sketches if pixelcnn.config.conditioning == "image" else vectors
    if cond is None:
        raise ValueError("this PixelCNN draws from a sketch: sample it through its PortraitModel")
    prior = SketchPrior(sketches, strength) if sketches is not None and strength else None
    return sketches, stream(pixelcnn, n, cond, seed=seed, temperature=temperature, every=every, guidance=guidance,
                            prior=prior, shared_noise=shared)


def portraits(model, person, n: int, *, seed: int | None = None, temperature: float = PORTRAIT_TEMPERATURE,
              embedder: FaceEmbedder | None = None, every: int | None = None, guidance: float = PORTRAIT_GUIDANCE,
              strength: float = SKETCH_STRENGTH, sketch_temperature: float = SKETCH_TEMPERATURE) -> Portraits:
    """New portraits of the person in a photo (a PIL image) or with an embedding ((128,) array).

    model: a `PortraitModel` (a face sketch and a PixelCNN) or a PixelCNN conditioned on embeddings.
    guidance: w of classifier-free guidance (`pixelcnn.sampling`): above 1 the portraits look more
        like the person and less like each other.
    strength: how closely the portraits hold to their sketches (`SketchPrior`); 0 draws from the
        PixelCNN alone. sketch_temperature: how far each sketch's pose and light stray from the typical
        photo of the person (0: one sketch for all). Both are ignored by a model without a sketch.
    The defaults were chosen by measurement on held-out people (the model card's tables).
    """
    face = None
    if isinstance(person, Image.Image):
        face = (embedder or default_embedder()).embed(person)
        person = face.embedding
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    vectors = as_embeddings(person).expand(n, -1)
    sketches, events = portrait_stream(model, vectors, seed=seed, temperature=temperature, every=every,
                                       guidance=guidance, strength=strength, sketch_temperature=sketch_temperature)
    return Portraits(face, sketches, events)


def morph_embeddings(start, end, alphas) -> Any:
    """The embeddings at each alpha of the line from `start` to `end`: (len(alphas), D)."""
    import torch

    a, b = as_embeddings(start)[0], as_embeddings(end)[0]
    alpha = torch.as_tensor(alphas, dtype=torch.float32).reshape(-1, 1)
    return (1 - alpha) * a + alpha * b


def morph(model, start, end, steps: int, *, seed: int | None = None, temperature: float = PORTRAIT_TEMPERATURE,
          every: int | None = None, guidance: float = PORTRAIT_GUIDANCE, strength: float = SKETCH_STRENGTH,
          sketch_temperature: float = SKETCH_TEMPERATURE):
    """A row of `steps` portraits from one embedding to another at one seed: one z and one noise for the
    whole row, each portrait held to the sketch of its own interpolated embedding, so that the sketch
    morphs and the portraits follow it. Returns (the row's sketches (steps, C, H, W) or None, the stream)."""
    import torch

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2 (both ends included), got {steps!r}")
    return portrait_stream(model, morph_embeddings(start, end, torch.linspace(0, 1, steps)), seed=seed,
                           temperature=temperature, every=every, guidance=guidance, strength=strength,
                           sketch_temperature=sketch_temperature, shared=True)


def portrait_between(model, start, end, alpha: float, *, seed: int | None = None,
                     temperature: float = PORTRAIT_TEMPERATURE, guidance: float = PORTRAIT_GUIDANCE,
                     strength: float = SKETCH_STRENGTH, sketch_temperature: float = SKETCH_TEMPERATURE):
    """The portrait at `alpha` (0: start, 1: end) of a `morph` with the same seed, and its sketch:
    ((1, C, H, W) integer image, (1, C, H, W) sketch in [0, 1] or None)."""
    sketches, events = portrait_stream(model, morph_embeddings(start, end, [alpha]), seed=seed,
                                       temperature=temperature, guidance=guidance, strength=strength,
                                       sketch_temperature=sketch_temperature, shared=True)
    *_, last = events
    return last.images, sketches


_EMBEDDER: DlibFaceEmbedder | None = None


def default_embedder() -> DlibFaceEmbedder:
    """One dlib embedder per process (loading its models takes about a second)."""
    global _EMBEDDER
    if _EMBEDDER is None:
        _EMBEDDER = DlibFaceEmbedder()
    return _EMBEDDER
