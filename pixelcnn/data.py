"""Image datasets as uint8 tensors (N, C, H, W), labels (N,) and class names.

Sources (`load_dataset(source, split)`):
  * "mnist", "fashion_mnist", "cifar10": their Hugging Face Hub datasets (parquet files);
  * "hf:owner/name": any Hub dataset whose parquet files have an image column and a label column;
  * "folder:PATH": one sub-folder per class (PATH/<split>/<class>/ is used when it exists);
  * "parquet:FILE" (or any path ending in .parquet): one parquet file in the Hub's image schema.

With `data_dir=` (or the environment variable PIXELCNN_DATA_DIR) the Hub datasets are read from a
local copy laid out like their repositories, `<data_dir>/<name>/<path in repo>`, and nothing is
downloaded. Decoded arrays are cached as .npy files (PIXELCNN_CACHE, default ~/.cache/pixelcnn),
written to a temporary name and renamed, so a killed run never leaves half a cache file.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .conditioning import condition_class
from .config import PixelCNNConfig
from .images import UploadError, open_image, quantise

# name -> (Hub repository, local folder name, parquet path inside the repo with {split})
HUB_DATASETS = {
    "mnist": ("ylecun/mnist", "mnist", "mnist/{split}-00000-of-00001.parquet"),
    "fashion_mnist": ("zalando-datasets/fashion_mnist", "fashion_mnist",
                      "fashion_mnist/{split}-00000-of-00001.parquet"),
    "cifar10": ("uoft-cs/cifar10", "cifar10", "plain_text/{split}-00000-of-00001.parquet"),
}
# datasets built by the library from others, with conditions: name -> function(split, data_dir, cache_dir);
# filled by `derived_dataset` where each is defined (`pixelcnn.face_data`)
DERIVED_DATASETS: dict[str, Callable[..., "ImageDataset"]] = {}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
GREY_MODES = {"1", "L", "LA"}


def derived_dataset(name: str):
    """Decorator: `load_dataset(name, split, data_dir=..., cache_dir=...)` calls the function."""
    def register(build: Callable[..., "ImageDataset"]) -> Callable[..., "ImageDataset"]:
        DERIVED_DATASETS[name] = build
        return build
    return register


class DatasetError(ValueError):
    """A dataset that cannot be found, fetched or decoded, with the reason."""


@dataclass
class ImageDataset:
    """images: (N, C, H, W) uint8; labels: (N,) int64; class_names[k] names label k;
    vectors: (N, D) float32 conditions aligned with the images (an embedding per image), or None."""

    images: Tensor
    labels: Tensor
    class_names: list[str]
    source: str
    split: str
    vectors: Tensor | None = None
    split_info: dict | None = None  # how the split was made, when the source had none (`held_out_split`)

    def __len__(self) -> int:
        return self.images.shape[0]

    def with_vectors(self, vectors: np.ndarray | Tensor) -> "ImageDataset":
        """A copy with one condition vector per image: (N, D) floats, aligned with the images."""
        vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        if vectors.dim() != 2 or vectors.shape[0] != len(self):
            raise DatasetError(f"{self.source} ({self.split}) has {len(self)} images but the vectors have shape "
                               f"{tuple(vectors.shape)}; expected ({len(self)}, D)")
        if not torch.isfinite(vectors).all():
            raise DatasetError(f"the vectors for {self.source} ({self.split}) contain NaN or inf")
        return dataclasses.replace(self, vectors=vectors)

    def subset(self, index: Tensor) -> "ImageDataset":
        """The images (and labels, vectors) at `index`."""
        vectors = None if self.vectors is None else self.vectors[index]
        return dataclasses.replace(self, images=self.images[index], labels=self.labels[index], vectors=vectors)

    def batch(self, index: Tensor, levels: int = 256) -> dict[str, Tensor | None]:
        """A training batch: {"images": (B, C, H, W) long in [0, levels), "labels": (B,), "vectors": (B, D) or None}.

        A model's condition names the field it reads (`Condition.batch_field`).
        """
        return {"images": quantise(self.images[index], levels), "labels": self.labels[index],
                "vectors": None if self.vectors is None else self.vectors[index]}

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:])

    def check_fits(self, config: PixelCNNConfig) -> None:
        """Raise `DatasetError` unless the images have the model's channels and size."""
        if self.channels != config.image_channels:
            raise DatasetError(f"{self.source} ({self.split}) has {self.channels}-channel images but the model "
                               f"expects image_channels={config.image_channels}")
        if self.image_size != (config.height, config.width):
            raise DatasetError(f"{self.source} ({self.split}) has {self.image_size[0]}x{self.image_size[1]} images "
                               f"but the model expects {config.height}x{config.width}")
        field = condition_class(config.conditioning).batch_field
        if field == "labels" and len(self) and (int(self.labels.max()) >= config.num_classes or int(self.labels.min()) < 0):
            raise DatasetError(f"{self.source} has labels from {int(self.labels.min())} to {int(self.labels.max())} but "
                               f"the model has num_classes={config.num_classes}")
        if field == "vectors" and (self.vectors is None or self.vectors.shape[1] != config.cond_features):
            found = "no vectors" if self.vectors is None else f"vectors of {self.vectors.shape[1]}"
            wanted = (f"cond_dim={config.cond_dim}" if config.conditioning != "image" else
                      f"images of {config.cond_features} values, flattened")
            raise DatasetError(f"{self.source} ({self.split}) has {found} but the model is conditioned on "
                               f"vectors of {wanted}: pass a vector column or an aligned array")

    def quantise(self, levels: int) -> Tensor:
        """Images mapped from 256 to `levels` intensity levels: (N, C, H, W) long."""
        return quantise(self.images, levels)


# ------------------------------------------------------------------------------------ decoding
def decode_image(data: bytes, where: str) -> np.ndarray:
    """PNG/JPEG/... bytes -> (H, W) or (H, W, 3) uint8, rotated as its EXIF says, 16-bit grey to 8 bits."""
    try:
        img, _ = open_image(data, max_pixels=None)
    except UploadError as e:
        raise DatasetError(f"{where} cannot be decoded as an image: {e}") from e
    if img.mode in GREY_MODES:
        return np.asarray(img.convert("L"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def stack_images(arrays: list[np.ndarray], where: str) -> np.ndarray:
    """Decoded images -> (N, C, H, W) uint8. Grey images join colour ones as three equal channels."""
    if not arrays:
        raise DatasetError(f"{where} holds no images")
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        sizes = sorted(sizes)
        raise DatasetError(f"{where} has images of mixed sizes ({', '.join(f'{h}x{w}' for h, w in sizes[:4])}); "
                           f"resize them to one size first")
    colour = any(a.ndim == 3 for a in arrays)
    out = [np.repeat(a[..., None], 3, axis=2) if colour and a.ndim == 2 else a for a in arrays]
    batch = np.stack(out)
    return batch.transpose(0, 3, 1, 2) if colour else batch[:, None]


def _class_names_from_schema(metadata: dict | None, labels: np.ndarray) -> list[str]:
    metadata = metadata or {}
    if b"class_names" in metadata:
        return metadata[b"class_names"].decode().split("\n")
    if b"huggingface" in metadata:  # the Hub's own schema metadata (ClassLabel names)
        try:
            features = json.loads(metadata[b"huggingface"])["info"]["features"]
            for feature in features.values():
                if isinstance(feature, dict) and feature.get("names"):
                    return list(feature["names"])
        except (KeyError, TypeError, ValueError):
            pass  # unreadable schema metadata: the classes are numbered below
    count = int(labels.max()) + 1 if labels.size else 0
    return [str(k) for k in range(count)]


def read_vector_column(path: str | Path, column: str) -> np.ndarray:
    """One list-of-floats column of a parquet file -> (N, D) float32."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=[column])
    except Exception as e:  # a missing column or a damaged file
        raise DatasetError(f"{path} has no readable column {column!r}: {e}") from e
    try:
        vectors = np.asarray(table.column(column).to_pylist(), dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"column {column!r} of {path} is not a list of equal-length float vectors") from e
    if vectors.ndim != 2:
        raise DatasetError(f"column {column!r} of {path} is not a list of equal-length float vectors")
    return vectors


def read_parquet(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A parquet file in the Hub's image schema -> images (N, C, H, W), labels (N,), class names."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several error types for damaged files
        raise DatasetError(f"{path} is not a readable parquet file: {e}") from e
    image_column = next((f.name for f in table.schema
                         if str(f.type).startswith("struct") and "bytes" in str(f.type)), None)
    label_column = next((n for n in ("label", "labels", "fine_label") if n in table.column_names), None)
    if image_column is None:
        raise DatasetError(f"{path} has no image column (a struct with 'bytes'); columns: {table.column_names}")
    images = [decode_image(row["bytes"], f"row {k} of {path}")
              for k, row in enumerate(table.column(image_column).to_pylist())]
    labels = (np.asarray(table.column(label_column).to_pylist(), dtype=np.int64) if label_column
              else np.zeros(len(images), dtype=np.int64))
    return stack_images(images, str(path)), labels, _class_names_from_schema(table.schema.metadata, labels)


def read_folder(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Class sub-folders of images -> images, labels and class names (sorted folder names); those of
    `root/split` when it exists."""
    if (root / split).is_dir():
        root = root / split
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise DatasetError(f"{root} has no class sub-folders (expected {root}/<class>/<image files>)")
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                images.append(decode_image(file.read_bytes(), str(file)))
                labels.append(label)
    return stack_images(images, str(root)), np.asarray(labels, dtype=np.int64), classes


# ------------------------------------------------------------------------------------ locating
def default_cache_dir() -> Path:
    return Path(os.environ.get("PIXELCNN_CACHE", Path.home() / ".cache" / "pixelcnn"))


def _hub_files(repo: str, local_name: str, pattern: str | None, split: str, data_dir: Path | None) -> list[Path]:
    """Parquet files of a Hub dataset split: from data_dir when given, else downloaded."""
    if data_dir is not None:
        for base in (data_dir / local_name, data_dir / repo):
            if pattern is not None and (base / pattern.format(split=split)).is_file():
                return [base / pattern.format(split=split)]
            if pattern is None and base.is_dir():
                found = sorted(p for p in base.rglob("*.parquet") if _is_split_file(p.relative_to(base), split))
                if found:
                    return found
        raise DatasetError(f"no local copy of {repo} ({split} split) under {data_dir}: expected "
                           f"{data_dir / local_name / (pattern or '...').format(split=split)}")
    from huggingface_hub import HfApi, constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    from .hub import hub_reachable
    local_only = constants.HF_HUB_OFFLINE or not hub_reachable()  # fail fast offline, or use the cache
    try:
        if pattern is None:
            if local_only:
                raise LocalEntryNotFoundError(f"cannot list the files of {repo} offline")
            names = [n for n in HfApi().list_repo_files(repo, repo_type="dataset")
                     if n.endswith(".parquet") and _is_split_file(Path(n), split)]
            if not names:
                raise DatasetError(f"Hub dataset {repo} has no parquet files for split {split!r}")
        else:
            names = [pattern.format(split=split)]
        return [Path(hf_hub_download(repo, n, repo_type="dataset", local_files_only=local_only)) for n in names]
    except DatasetError:
        raise
    except RepositoryNotFoundError as e:
        raise DatasetError(f"no Hub dataset {repo!r}") from e
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise DatasetError(f"cannot download {repo} ({split}): the Hub is unreachable or refused ({e.__class__.__name__}); "
                           f"point data_dir / PIXELCNN_DATA_DIR at a local copy laid out like the repository") from e


def _is_split_file(path: Path, split: str) -> bool:
    return path.name.startswith(f"{split}-") or path.parent.name == split


def cache_key(source: str, split: str, files: list[Path]) -> str:
    """A cache entry per source, split and file contents: a copied or re-downloaded file with the same
    bytes keeps its decoded arrays and embeddings (hashing takes about 0.1 s per 100 MB)."""
    h = hashlib.sha256(f"v2|{source}|{split}".encode())
    for f in files:
        with open(f, "rb") as stream:
            h.update(f"|{f.name}|".encode() + hashlib.file_digest(stream, "sha256").digest())
    return h.hexdigest()[:16]


def _atomic_save(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# A source without its own test split (a folder without train/ and test/, one parquet file) is split
# here: this share of its files, or of its people where it names them, is held out as "test"
HELD_OUT_FRACTION = 0.1
SPLIT_SEED = 0
PERSON_COLUMNS = ("person", "identity", "celeba_identity")  # held out person by person, never photo by photo


def held_out_split(data: "ImageDataset", split: str, groups: np.ndarray | None = None,
                   fraction: float = HELD_OUT_FRACTION, seed: int = SPLIT_SEED) -> "ImageDataset":
    """The "train" or "test" part of a dataset without its own split ("all": every image): a seeded
    `fraction` of its groups (people, or single files when `groups` is None) is the test part, so that
    training and test never share an image, nor a person. The split is recorded in `split_info`."""
    if split not in ("train", "test", "all"):
        raise DatasetError(f"{data.source} has no split of its own: ask for 'train', 'test' or 'all', not {split!r}")
    if split == "all":
        return dataclasses.replace(data, split="all")
    by = "person" if groups is not None else "file"
    groups = np.arange(len(data)) if groups is None else np.asarray(groups)
    ids = np.unique(groups)
    if len(ids) < 2:
        raise DatasetError(f"{data.source} has {len(ids)} {by}(s): too few to hold any out for testing")
    count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    chosen = np.random.default_rng(seed).permutation(ids)[:count]
    test = torch.from_numpy(np.isin(groups, chosen))
    info = {"held_out": by, "fraction": fraction, "seed": seed, "test_images": int(test.sum()),
            "train_images": int((~test).sum())}
    part = data.subset(test.nonzero()[:, 0] if split == "test" else (~test).nonzero()[:, 0])
    return dataclasses.replace(part, split=split, split_info=info)


def load_dataset(source: str, split: str = "train", *, data_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None, use_cache: bool = True,
                 vector_column: str | None = None) -> ImageDataset:
    """Load a dataset split as uint8 tensors (see the module docstring for the sources).

    A folder without train/ and test/ sub-folders, or one parquet file, has no split of its own:
    "train" and "test" are then a seeded held-out split of it (`held_out_split`), "all" the whole.
    vector_column: a parquet column of float vectors (an embedding per image) to condition on,
        read into `ImageDataset.vectors` and cached like the images.
    """
    if source in DERIVED_DATASETS:
        return DERIVED_DATASETS[source](split, data_dir, cache_dir)
    data, files, own_split = _load_images(source, split, data_dir, cache_dir, use_cache)
    if vector_column is not None:
        if not files or any(f.suffix != ".parquet" for f in files):
            raise DatasetError(f"vector_column={vector_column!r} needs a parquet source, got {source!r}")
        cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        path = cache / f"{cache_key(source + '|' + vector_column, data.split, files)}.vectors.npy"
        vectors = cached_array(path, lambda: np.concatenate([read_vector_column(f, vector_column) for f in files]),
                               use_cache)
        data = data.with_vectors(vectors)
    if own_split:
        return data
    groups = read_person_column(files[0]) if files[0].suffix == ".parquet" else None
    return held_out_split(data, split, groups)


def read_person_column(path: Path) -> np.ndarray | None:
    """The person of each row of a parquet file (`PERSON_COLUMNS`), or None when it names none."""
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    column = next((c for c in PERSON_COLUMNS if c in names), None)
    return None if column is None else np.asarray(pq.read_table(path, columns=[column]).column(column).to_pylist())


def cached_array(path: Path, compute, use_cache: bool = True) -> np.ndarray:
    """np.load(path) if a complete cache file is there, else compute() saved atomically (a killed
    run never leaves half a file)."""
    if use_cache and path.is_file():
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass  # an unreadable cache entry is recomputed below
    array = compute()
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save(path, array)
    return array


def _load_images(source: str, split: str, data_dir: str | Path | None, cache_dir: str | Path | None,
                 use_cache: bool) -> tuple[ImageDataset, list[Path], bool]:
    """The images, labels and class names of a split, the files they come from, and whether the source
    has that split of its own (else every image is returned, as split "all", for `held_out_split`)."""
    data_dir = data_dir if data_dir is not None else os.environ.get("PIXELCNN_DATA_DIR")
    data_dir = Path(data_dir).expanduser() if data_dir else None
    if source.startswith("folder:"):
        root = Path(source[len("folder:"):]).expanduser()
        if not root.is_dir():
            raise DatasetError(f"folder {root} does not exist")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"{root} has no class sub-folders of images (expected {root}/<class>/<image files>)")
        own_split = (root / split).is_dir()
        split = split if own_split else "all"
        reader = lambda: read_folder(root, split)  # noqa: E731
    elif source.startswith("parquet:") or source.endswith(".parquet"):
        path = Path(source.removeprefix("parquet:")).expanduser()
        if not path.is_file():
            raise DatasetError(f"parquet file {path} does not exist")
        files, own_split, split = [path], False, "all"  # one file: the split is made here
        reader = lambda: read_parquet(path)  # noqa: E731
    else:
        if source in HUB_DATASETS:
            repo, local_name, pattern = HUB_DATASETS[source]
        elif source.startswith("hf:") and source.count("/") == 1:
            repo = source[3:]
            local_name, pattern = repo.split("/")[1], None
        else:
            raise DatasetError(f"unknown dataset {source!r}: use one of {sorted(HUB_DATASETS)}, 'hf:owner/name', "
                               f"'folder:PATH' or 'parquet:FILE'")
        files, own_split = _hub_files(repo, local_name, pattern, split, data_dir), True
        reader = lambda: _read_many(files)  # noqa: E731
    if not files:
        raise DatasetError(f"{source} has no image files")

    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    key = cache_key(source, split, files)
    paths = {name: cache / f"{key}.{name}.npy" for name in ("images", "labels")}
    names_path = cache / f"{key}.classes.json"
    if use_cache and all(p.is_file() for p in paths.values()) and names_path.is_file():
        try:
            images, labels = np.load(paths["images"]), np.load(paths["labels"])
            class_names = json.loads(names_path.read_text())
            return (ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), class_names, source, split),
                    files, own_split)
        except (OSError, ValueError):
            pass  # an unreadable cache entry is rebuilt below
    images, labels, class_names = reader()
    if use_cache:
        cache.mkdir(parents=True, exist_ok=True)
        _atomic_save(paths["images"], images)
        _atomic_save(paths["labels"], labels)
        tmp = names_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(class_names))
        os.replace(tmp, names_path)  # written last: its presence marks a complete entry
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels),
                        class_names, source, split), files, own_split


def _read_many(files: list[Path]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    parts = [read_parquet(f) for f in files]
    if len({p[0].shape[1:] for p in parts}) > 1:
        raise DatasetError(f"the files {[str(f) for f in files]} hold images of different shapes")
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), parts[0][2])
