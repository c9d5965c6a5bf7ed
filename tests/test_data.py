"""Dataset loading: the Hub's parquet layout, folders of PNGs, the decoded cache, and clear errors."""

import io
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import pixelcnn.data as data_module
from pixelcnn import PixelCNNConfig
from pixelcnn.data import DatasetError, load_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def write_hub_parquet(path: Path, images: np.ndarray, labels: list[int], class_names: list[str] | None,
                      column: str = "image", extra: dict | None = None) -> None:
    """A parquet file in the Hub's Image schema: {bytes, path} structs and int64 labels (and `extra` columns)."""
    arrays = [img[..., 0] if img.shape[-1] == 1 else img for img in images.transpose(0, 2, 3, 1)]
    table = pa.table({column: [{"bytes": png_bytes(a), "path": None} for a in arrays],
                      "label": pa.array(labels, type=pa.int64()), **(extra or {})})
    if class_names is not None:
        table = table.replace_schema_metadata({"class_names": "\n".join(class_names)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def random_uint8(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_reads_the_hub_parquet_layout_from_a_data_dir_and_caches_it(tmp_path, monkeypatch):
    grey = random_uint8((12, 1, 28, 28))
    colour = random_uint8((9, 3, 32, 32), seed=1)
    write_hub_parquet(tmp_path / "data" / "mnist" / "mnist" / "train-00000-of-00001.parquet", grey,
                      list(range(10)) + [3, 4], [str(k) for k in range(10)])
    write_hub_parquet(tmp_path / "data" / "cifar10" / "plain_text" / "test-00000-of-00001.parquet", colour,
                      [0, 1, 2, 3, 4, 5, 6, 7, 9], ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                    "frog", "horse", "ship", "truck"], column="img")
    cache = tmp_path / "cache"
    mnist = load_dataset("mnist", "train", data_dir=tmp_path / "data", cache_dir=cache)
    assert mnist.images.dtype == torch.uint8 and torch.equal(mnist.images, torch.from_numpy(grey))
    assert mnist.labels.tolist() == list(range(10)) + [3, 4] and mnist.class_names[3] == "3"
    monkeypatch.setenv("PIXELCNN_DATA_DIR", str(tmp_path / "data"))  # the environment variable works too
    cifar = load_dataset("cifar10", "test", cache_dir=cache)
    assert torch.equal(cifar.images, torch.from_numpy(colour)) and cifar.class_names[9] == "truck"

    # the second run reads the decoded cache, not the parquet files, and gives identical tensors
    monkeypatch.setattr(data_module, "read_parquet", lambda *a: pytest.fail("the cache was not used"))
    again = load_dataset("mnist", "train", data_dir=tmp_path / "data", cache_dir=cache)
    assert torch.equal(again.images, mnist.images) and torch.equal(again.labels, mnist.labels)
    assert again.class_names == mnist.class_names
    # the same bytes elsewhere (another path, a new modification time) keep the cache
    shutil.copytree(tmp_path / "data", tmp_path / "copy")
    copied = load_dataset("mnist", "train", data_dir=tmp_path / "copy", cache_dir=cache)
    assert torch.equal(copied.images, mnist.images)
    # changed bytes do not
    monkeypatch.undo()
    changed = random_uint8((12, 1, 28, 28), seed=5)
    write_hub_parquet(tmp_path / "copy" / "mnist" / "mnist" / "train-00000-of-00001.parquet", changed,
                      list(range(10)) + [3, 4], [str(k) for k in range(10)])
    assert torch.equal(load_dataset("mnist", "train", data_dir=tmp_path / "copy", cache_dir=cache).images,
                       torch.from_numpy(changed))


def test_any_hub_dataset_by_id_reads_its_local_copy(tmp_path):
    """'hf:owner/name' finds the split's parquet files in a local copy of the repository."""
    images = random_uint8((6, 3, 8, 8), seed=4)
    write_hub_parquet(tmp_path / "data" / "tiny-imagenet" / "data" / "train-00000-of-00002.parquet", images[:4],
                      [0, 1, 2, 0], ["a", "b", "c"])
    write_hub_parquet(tmp_path / "data" / "tiny-imagenet" / "data" / "train-00001-of-00002.parquet", images[4:],
                      [1, 2], ["a", "b", "c"])
    write_hub_parquet(tmp_path / "data" / "tiny-imagenet" / "data" / "test-00000-of-00001.parquet", images[:1],
                      [2], ["a", "b", "c"])
    data = load_dataset("hf:someone/tiny-imagenet", "train", data_dir=tmp_path / "data", cache_dir=tmp_path / "c")
    assert torch.equal(data.images, torch.from_numpy(images)) and data.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert len(load_dataset("hf:someone/tiny-imagenet", "test", data_dir=tmp_path / "data",
                            cache_dir=tmp_path / "c")) == 1


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="needs ../shared/data")
def test_reads_a_slice_of_the_shared_mnist_files(tmp_path):
    table = pq.read_table(SHARED / "mnist" / "mnist" / "test-00000-of-00001.parquet").slice(0, 50)
    target = tmp_path / "mnist" / "mnist" / "test-00000-of-00001.parquet"
    target.parent.mkdir(parents=True)
    pq.write_table(table, target)
    data = load_dataset("mnist", "test", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert data.images.shape == (50, 1, 28, 28) and data.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert data.class_names == [str(k) for k in range(10)]
    # a digit is dark background with a bright stroke
    assert data.images.float().mean() < 60 and data.images.max() == 255


def test_reads_a_folder_of_pngs_with_class_subfolders(tmp_path):
    root = tmp_path / "pets"
    cats, dogs = random_uint8((3, 8, 8, 3)), random_uint8((2, 8, 8, 3), seed=2)
    for name, images in (("cat", cats), ("dog", dogs)):
        (root / "train" / name).mkdir(parents=True)
        for k, img in enumerate(images):
            Image.fromarray(img).save(root / "train" / name / f"{k}.png")
    (root / "train" / "dog" / "notes.txt").write_text("not an image")  # ignored
    data = load_dataset(f"folder:{root}", "train", cache_dir=tmp_path / "cache")
    assert data.class_names == ["cat", "dog"] and data.labels.tolist() == [0, 0, 0, 1, 1]
    expected = torch.from_numpy(np.concatenate([cats, dogs]).transpose(0, 3, 1, 2).copy())
    assert torch.equal(data.images, expected)
    again = load_dataset(f"folder:{root}", "train", cache_dir=tmp_path / "cache")
    assert torch.equal(again.images, data.images) and again.class_names == data.class_names


def test_odd_image_modes_are_decoded(tmp_path):
    root = tmp_path / "odd" / "a"
    root.mkdir(parents=True)
    Image.fromarray(random_uint8((6, 6)).astype(np.uint16) * 257).save(root / "deep.png")  # 16-bit grey
    Image.fromarray(random_uint8((6, 6, 4))).save(root / "alpha.png")  # RGBA
    Image.fromarray(random_uint8((6, 6)), mode="L").convert("P").save(root / "palette.png")
    assert Image.open(root / "deep.png").mode.startswith("I")
    data = load_dataset(f"folder:{tmp_path / 'odd'}", "all", cache_dir=tmp_path / "cache")
    assert data.images.shape == (3, 3, 6, 6)  # grey images join the colour one as three equal channels
    names = sorted(p.name for p in root.iterdir())
    deep = data.images[names.index("deep.png")]
    assert torch.equal(deep[0], deep[1]) and int(deep.max()) > 200  # 16 bits scaled to 8, not clipped


def test_clear_errors_for_missing_data(tmp_path, monkeypatch):
    monkeypatch.delenv("PIXELCNN_DATA_DIR", raising=False)
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="no local copy of ylecun/mnist"):
        load_dataset("mnist", data_dir=tmp_path)
    # no data dir and no network (HF_HUB_OFFLINE, as on a machine without internet)
    with pytest.raises(DatasetError, match="cannot download ylecun/mnist"):
        load_dataset("mnist", cache_dir=tmp_path / "cache")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_dataset(f"folder:{tmp_path}", cache_dir=tmp_path / "cache")


def test_clear_errors_for_bad_files(tmp_path):
    bad = tmp_path / "mnist" / "mnist" / "train-00000-of-00001.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DatasetError, match="not a readable parquet file"):
        load_dataset("mnist", data_dir=tmp_path, cache_dir=tmp_path / "cache")

    broken = tmp_path / "broken" / "a"
    broken.mkdir(parents=True)
    Image.fromarray(random_uint8((6, 6))).save(broken / "ok.png")
    (broken / "truncated.png").write_bytes(png_bytes(random_uint8((6, 6)))[:40])
    with pytest.raises(DatasetError, match="truncated.png cannot be decoded"):
        load_dataset(f"folder:{tmp_path / 'broken'}", cache_dir=tmp_path / "cache")

    mixed = tmp_path / "mixed" / "a"
    mixed.mkdir(parents=True)
    Image.fromarray(random_uint8((6, 6))).save(mixed / "small.png")
    Image.fromarray(random_uint8((7, 6))).save(mixed / "tall.png")
    with pytest.raises(DatasetError, match="mixed sizes"):
        load_dataset(f"folder:{tmp_path / 'mixed'}", cache_dir=tmp_path / "cache")


def test_channel_and_size_mismatch_with_the_model(tmp_path):
    write_hub_parquet(tmp_path / "grey.parquet", random_uint8((4, 1, 8, 8)), [0, 1, 0, 1], ["a", "b"])
    data = load_dataset(f"parquet:{tmp_path / 'grey.parquet'}", cache_dir=tmp_path / "cache")
    data.check_fits(PixelCNNConfig(image_channels=1, image_size=8, conditioning="class", num_classes=2))
    with pytest.raises(DatasetError, match="1-channel images but the model expects image_channels=3"):
        data.check_fits(PixelCNNConfig(image_channels=3, image_size=8))
    with pytest.raises(DatasetError, match="8x8 images but the model expects 28x28"):
        data.check_fits(PixelCNNConfig(image_channels=1, image_size=28))
    with pytest.raises(DatasetError, match="num_classes=1"):
        data.check_fits(PixelCNNConfig(image_channels=1, image_size=8, conditioning="class", num_classes=1))


def test_no_half_written_cache_file_survives(tmp_path, monkeypatch):
    write_hub_parquet(tmp_path / "d.parquet", random_uint8((4, 1, 8, 8)), [0, 1, 0, 1], ["a", "b"])
    cache = tmp_path / "cache"
    real_save = np.save

    def dying_save(f, array):  # writes part of the file, then the process "dies"
        real_save(f, array[: len(array) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(f"parquet:{tmp_path / 'd.parquet'}", cache_dir=cache)
    assert list(cache.iterdir()) == []  # neither a partial file nor a temporary one is left
    monkeypatch.setattr(np, "save", real_save)
    data = load_dataset(f"parquet:{tmp_path / 'd.parquet'}", "all", cache_dir=cache)
    assert data.images.shape == (4, 1, 8, 8)

    # a damaged cache entry (say, a disk that filled up) is rebuilt, not trusted
    for f in cache.glob("*.images.npy"):
        f.write_bytes(f.read_bytes()[:20])
    again = load_dataset(f"parquet:{tmp_path / 'd.parquet'}", "all", cache_dir=cache)
    assert torch.equal(again.images, data.images)


def test_a_source_without_its_own_test_split_holds_out_files_or_people_and_never_shares_one(tmp_path):
    """A folder without train/ and test/, or one parquet file: "test" is a seeded tenth of the files (or
    of the people, when the file names them), "train" the rest; no image, and no person, is in both."""
    root = tmp_path / "photos"
    for name, seed in (("cat", 1), ("dog", 2)):
        (root / name).mkdir(parents=True)
        for k, img in enumerate(random_uint8((25, 6, 6, 3), seed=seed)):
            Image.fromarray(img).save(root / name / f"{k}.png")
    whole = load_dataset(f"folder:{root}", "all", cache_dir=tmp_path / "cache")
    train = load_dataset(f"folder:{root}", "train", cache_dir=tmp_path / "cache")
    test = load_dataset(f"folder:{root}", "test", cache_dir=tmp_path / "cache")
    assert len(whole) == 50 and len(test) == 5 and len(train) == 45
    as_set = lambda d: {img.numpy().tobytes() for img in d.images}  # noqa: E731
    assert not as_set(train) & as_set(test) and as_set(train) | as_set(test) == as_set(whole)
    assert train.split_info == test.split_info == {"held_out": "file", "fraction": 0.1, "seed": 0,
                                                   "test_images": 5, "train_images": 45}
    assert torch.equal(load_dataset(f"folder:{root}", "test", cache_dir=tmp_path / "other").images, test.images)

    people = np.repeat(np.arange(20), 3)  # 60 photos of 20 people
    write_hub_parquet(tmp_path / "faces.parquet", random_uint8((60, 3, 6, 6)), people.tolist(), None,
                      extra={"celeba_identity": people.tolist()})
    train = load_dataset(f"parquet:{tmp_path / 'faces.parquet'}", "train", cache_dir=tmp_path / "cache")
    test = load_dataset(f"parquet:{tmp_path / 'faces.parquet'}", "test", cache_dir=tmp_path / "cache")
    assert len(test) == 6 and len(train) == 54 and test.split_info["held_out"] == "person"
    assert not set(train.labels.tolist()) & set(test.labels.tolist())  # no person in both
    assert not as_set(train) & as_set(test)
    with pytest.raises(DatasetError, match="ask for 'train', 'test' or 'all'"):
        load_dataset(f"folder:{root}", "validation", cache_dir=tmp_path / "cache")


def test_a_float_tiff_is_stretched_from_its_own_range_and_says_so(tmp_path):
    """A floating-point image (values 0 to 0.77) is not a dark 8-bit one: its range becomes 0-255."""
    from pixelcnn.images import UploadError, load_upload

    values = np.linspace(0, 0.77, 28 * 28, dtype=np.float32).reshape(28, 28)
    Image.fromarray(values, mode="F").save(tmp_path / "float.tif")
    x, notices = load_upload(tmp_path / "float.tif", PixelCNNConfig(image_channels=1, image_size=28))
    assert int(x.max()) == 255 and int(x.min()) == 0 and 120 < x.float().mean() < 135
    assert any("floating-point" in n and "0 to 0.77" in n and "stretched" in n for n in notices), notices
    Image.fromarray(np.full((4, 4), np.nan, dtype=np.float32), mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(UploadError, match="NaN"):
        load_upload(tmp_path / "nan.tif", PixelCNNConfig(image_channels=1, image_size=28))
