"""The face embedder (dlib's pretrained networks), portrait sampling and interpolation."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixelcnn
from pixelcnn import EmbeddingSketch, GatedPixelCNN, PixelCNNConfig, PortraitModel, SketchConfig, sample
from pixelcnn.face_data import split_people
from pixelcnn.faces import (EMBEDDING_DIM, PORTRAIT_GUIDANCE, PORTRAIT_TEMPERATURE, SKETCH_TEMPERATURE, NoFaceError,
                            default_embedder, morph, portrait_between, portraits)
from pixelcnn.sampling import SketchPrior, between, interpolate

ROOT = Path(__file__).resolve().parents[1]
PORTRAITS = ROOT.parent / "shared" / "data" / "celeba_faces64" / "data" / "all-00000-of-00001.parquet"


def celeba_crops(people: int = 3, per_person: int = 3) -> dict[int, list[np.ndarray]]:
    """A few 64x64 crops of a few people, from the shared data."""
    if not PORTRAITS.is_file():
        pytest.skip("needs ../shared/data/celeba_faces64")
    import pyarrow.parquet as pq

    from pixelcnn.data import decode_image

    table = pq.read_table(PORTRAITS, columns=["image", "label"]).slice(0, 600).to_pylist()
    by_person: dict[int, list[np.ndarray]] = {}
    for row in table:
        by_person.setdefault(row["label"], []).append(decode_image(row["image"]["bytes"], "crop"))
    chosen = [p for p, crops in by_person.items() if len(crops) >= per_person][:people]
    return {p: by_person[p][:per_person] for p in chosen}


def photo_with(crop: np.ndarray, size=(900, 700), at=(500, 300), face_px: int = 160) -> Image.Image:
    photo = Image.new("RGB", size, (110, 120, 130))
    photo.paste(Image.fromarray(crop).resize((face_px, face_px), Image.BICUBIC), at)
    return photo


def test_one_persons_crops_are_closer_than_other_peoples():
    crops = celeba_crops()
    embedder = default_embedder()
    vectors = {p: [embedder.embed_crop(c)[0] for c in cs] for p, cs in crops.items()}
    same = [np.linalg.norm(a - b) for vs in vectors.values() for i, a in enumerate(vs) for b in vs[i + 1:]]
    people = list(vectors)
    other = [np.linalg.norm(a - b) for i, p in enumerate(people) for q in people[i + 1:]
             for a in vectors[p] for b in vectors[q]]
    assert np.mean(same) < np.mean(other) - 0.1, (np.mean(same), np.mean(other))
    assert all(v.shape == (EMBEDDING_DIM,) for vs in vectors.values() for v in vs)


def test_photos_the_embedder_must_handle():
    crop = next(iter(celeba_crops(1, 1).values()))[0]
    embedder = default_embedder()
    upright = embedder.embed(photo_with(crop))
    left, top, right, bottom = upright.box
    assert 480 <= left and right <= 680 and 280 <= top and bottom <= 480  # the face where it was pasted
    assert upright.crop.size == (150, 150) and upright.faces_found == 1
    # a tiny face in a large photo, greyscale, sideways
    tiny = embedder.embed(photo_with(crop, size=(1600, 1200), at=(1200, 900), face_px=96))
    grey = embedder.embed(photo_with(crop).convert("L"))
    sideways = embedder.embed(photo_with(crop).rotate(90, expand=True))
    assert "turned" in " ".join(sideways.notices)
    for face in (tiny, grey, sideways):
        assert np.linalg.norm(face.embedding - upright.embedding) < 0.3
    # two faces: the largest is used, and the caller learns it
    two = photo_with(crop)
    two.paste(Image.fromarray(crop).resize((100, 100)), (50, 50))
    both = embedder.embed(two)
    assert both.faces_found == 2 and "largest" in " ".join(both.notices) and both.box[0] >= 480
    with pytest.raises(NoFaceError, match="no face found"):
        embedder.embed(Image.new("RGB", (300, 200), (90, 90, 90)))


PHOTOS = Path(__file__).parent / "data" / "faces"  # free photos: see their README


def test_a_one_person_portrait_has_one_face():
    """HOG alone also boxes the suit below the face (score 0.1): the CNN check turns it down."""
    face = default_embedder().embed(Image.open(PHOTOS / "astronaut.jpg"))
    left, top, right, bottom = face.box
    assert face.faces_found == 1 and not any("faces found" in n for n in face.notices)
    assert 150 <= left and right <= 290 and 50 <= top and bottom <= 190  # her face, not the suit


def test_an_upright_photo_is_not_turned():
    """HOG alone misses the man behind the camera upright and finds a false face turned by 90 degrees."""
    photo = Image.open(PHOTOS / "camera.png")
    face = default_embedder().embed(photo)
    assert not any("turned" in n for n in face.notices), face.notices
    assert "greyscale photo" in " ".join(face.notices) and face.photo.size == photo.size
    left, top, right, bottom = face.box
    assert 180 <= left and right <= 300 and 100 <= top and bottom <= 220  # his face, upright


@pytest.mark.parametrize("size, face_px", [((4000, 3000), 70), ((3000, 2000), 42)])
def test_a_small_face_in_a_large_photo_is_found(size, face_px):
    """Faces from about 40 pixels, in photos up to 12 megapixels (the app's message and docs say so)."""
    from pixelcnn.faces import SMALLEST_FACE_PX

    width, height = size
    rng = np.random.default_rng(0)
    background = np.linspace(60, 200, width)[None, :, None] * np.ones((height, 1, 3)) + rng.normal(0, 12, (height, width, 3))
    photo = Image.fromarray(background.clip(0, 255).astype(np.uint8))
    astronaut = Image.open(PHOTOS / "astronaut.jpg")
    side = round(face_px / 0.6)  # the crop's face is about 60% of its width
    at = (width * 2 // 3, height * 3 // 5)
    photo.paste(astronaut.crop((150, 40, 300, 210)).resize((side, round(side * 170 / 150)), Image.LANCZOS), at)
    face = default_embedder().embed(photo)
    left, top, right, bottom = face.box
    assert at[0] <= left and right <= at[0] + side and at[1] <= top and bottom <= at[1] + side * 1.2
    assert 0.7 * face_px <= right - left <= 1.4 * face_px and SMALLEST_FACE_PX <= 42
    reference = default_embedder().embed(astronaut)
    assert np.linalg.norm(face.embedding - reference.embedding) < 0.5  # the same person


def test_the_people_split_keeps_held_out_people_out_of_training():
    labels = np.repeat(np.arange(60), 12)
    train, test = split_people(labels, held_out=25)
    assert len(test) == 25 and not train & test and train | test == set(range(60))
    assert split_people(labels, held_out=25) == (train, test)  # fixed by the seed


@pytest.fixture(scope="module")
def portrait_model() -> GatedPixelCNN:
    torch.manual_seed(0)
    config = PixelCNNConfig(image_channels=3, image_size=6, hidden_channels=12, n_layers=3, head_channels=12,
                            conditioning="vector", cond_dim=EMBEDDING_DIM)
    return GatedPixelCNN(config).eval()


def test_portraits_from_a_photo_are_deterministic_for_a_seed(portrait_model):
    crop = next(iter(celeba_crops(1, 1).values()))[0]
    photo = photo_with(crop)
    drawn = portraits(portrait_model, photo, 3, seed=5)
    assert drawn.sketches is None  # a plain PixelCNN has no sketch to hold to
    *_, first = drawn.events
    *_, second = portraits(portrait_model, drawn.face.embedding, 3, seed=5).events
    assert torch.equal(first.images, second.images)
    h = torch.from_numpy(drawn.face.embedding)
    assert torch.equal(first.images, sample(portrait_model, 3, h, seed=5, guidance=PORTRAIT_GUIDANCE,
                                              temperature=PORTRAIT_TEMPERATURE))
    plain = portraits(portrait_model, drawn.face.embedding, 3, seed=5, guidance=3, temperature=1.0).events
    assert torch.equal(list(plain)[-1].images, sample(portrait_model, 3, h, seed=5, guidance=3))


def tiny_portrait_model(size: int = 6, conditioning: str = "spatial", latent: int = 2) -> PortraitModel:
    """A tiny PixelCNN (reading the embedding, or the sketch) and a face sketch with a latent z."""
    torch.manual_seed(0)
    config = PixelCNNConfig(image_channels=3, image_size=size, hidden_channels=12, n_layers=3, head_channels=12,
                            conditioning=conditioning, cond_dim=EMBEDDING_DIM, spatial_channels=4)
    sketch = EmbeddingSketch(SketchConfig(image_size=size, cond_dim=EMBEDDING_DIM, channels=4, latent_dim=latent,
                                          encoder_channels=4))
    return PortraitModel(sketch, GatedPixelCNN(config)).eval()


@pytest.mark.parametrize("conditioning", ["spatial", "image"])
def test_portraits_are_held_to_sketches_of_their_embedding_each_at_its_own_z(tmp_path, conditioning):
    model = tiny_portrait_model(conditioning=conditioning)
    model.save_pretrained(tmp_path / "portrait")
    assert {p.name for p in (tmp_path / "portrait").iterdir()} >= {"sketch", "decoder", "config.json"}
    loaded = pixelcnn.from_pretrained(tmp_path / "portrait")
    assert isinstance(loaded, PortraitModel)
    h = torch.randn(EMBEDDING_DIM, generator=torch.Generator().manual_seed(1)) * 0.05
    drawn = portraits(loaded, h.numpy(), 4, seed=3, strength=30.0, sketch_temperature=1.0)
    *_, held = drawn.events
    assert drawn.face is None and drawn.sketches.shape == (4, 3, 6, 6)
    z = model.sketch.latents(4, 1.0, 3)
    assert torch.allclose(drawn.sketches, model.sketch.sketch(h.expand(4, -1), z))
    assert not torch.allclose(drawn.sketches[0], drawn.sketches[1])  # each portrait its own pose and light
    one = portraits(loaded, h.numpy(), 4, seed=3, sketch_temperature=0.0).sketches
    assert torch.allclose(one, model.sketch.sketch(h).expand(4, -1, -1, -1))  # z = 0: the typical photo
    free = list(portraits(loaded, h.numpy(), 4, seed=3, strength=0, sketch_temperature=1.0).events)[-1].images
    cond = drawn.sketches if conditioning == "image" else h
    assert torch.equal(free, sample(model.decoder, 4, cond, seed=3, guidance=PORTRAIT_GUIDANCE,
                                     temperature=PORTRAIT_TEMPERATURE))
    gap = lambda images: (images.double() - drawn.sketches.double() * 255).abs().mean().item()  # noqa: E731
    assert gap(held.images) < 0.5 * gap(free)
    with pytest.raises(ValueError, match="embeddings of shape"):
        model.sketch.sketch(torch.zeros(3))


@pytest.mark.parametrize("conditioning", ["spatial", "image"])
def test_a_morph_holds_each_portrait_to_the_sketch_of_its_own_embedding_at_one_z(conditioning):
    model = tiny_portrait_model(conditioning=conditioning)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(EMBEDDING_DIM, generator=gen), torch.randn(EMBEDDING_DIM, generator=gen)
    sketches, events = morph(model, a, b, 5, seed=9, strength=4.0, sketch_temperature=1.0)
    *_, row = events
    alpha = torch.linspace(0, 1, 5)[:, None]
    z = model.sketch.latents(1, 1.0, 9).expand(5, -1)
    assert torch.allclose(sketches, model.sketch.sketch((1 - alpha) * a + alpha * b, z))
    end = sketches[-1:] if conditioning == "image" else b
    held_end = sample(model.decoder, 1, end, seed=9, guidance=PORTRAIT_GUIDANCE, temperature=PORTRAIT_TEMPERATURE,
                      prior=SketchPrior(sketches[-1], 4.0))
    assert torch.equal(row.images[-1], held_end[0])
    middle, sketch = portrait_between(model, a, b, 0.5, seed=9, strength=4.0, sketch_temperature=1.0)
    assert torch.equal(middle[0], row.images[2]) and torch.allclose(sketch, sketches[2:3])
    with pytest.raises(ValueError, match="steps"):
        morph(model, a, b, 1)


def test_a_latent_sketch_learns_z_from_the_photo_and_draws_the_mean_at_z_zero():
    """The conditional VAE's objective: reconstruction error from the photo's posterior z plus beta
    times z's KL per sub-pixel; its reported error is the sketch at z = 0."""
    sketch = EmbeddingSketch(SketchConfig(image_size=8, cond_dim=4, channels=4, latent_dim=3, kl_weight=0.1,
                                          encoder_channels=4))
    images = torch.randint(0, 256, (5, 3, 8, 8))
    vectors = torch.randn(5, 4)
    torch.manual_seed(0)
    loss = sketch.loss(images, vectors)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sketch.encoder.parameters())
    with torch.no_grad():
        mean, log_var = sketch.posterior(images)
        assert mean.shape == (5, 3) and torch.equal(sketch.test_loss(images, vectors), sketch.mse(images, vectors).mean())
        assert torch.allclose(sketch.sketch(vectors), sketch(vectors, torch.zeros(5, 3)))
    assert sketch.latents(2, 0.0, 1).abs().sum() == 0 and torch.equal(sketch.latents(2, 1.0, 7), sketch.latents(2, 1.0, 7))
    with pytest.raises(ValueError, match="temperature"):
        sketch.latents(2, -1.0, 1)


def test_interpolation_ends_equal_sampling_with_each_end(portrait_model):
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(EMBEDDING_DIM, generator=gen), torch.randn(EMBEDDING_DIM, generator=gen)
    *_, row = interpolate(portrait_model, a, b, 5, seed=9)
    assert torch.equal(row.images[0], sample(portrait_model, 1, a, seed=9)[0])
    assert torch.equal(row.images[-1], sample(portrait_model, 1, b, seed=9)[0])
    assert torch.equal(between(portrait_model, a, b, 0.5, seed=9)[0], row.images[2])
    with pytest.raises(ValueError, match="steps"):
        interpolate(portrait_model, a, b, 1)


# ------------------------------------------------------------------------------------ measurements
def test_ranks_counts_the_centres_nearer_than_the_true_one():
    from pixelcnn.experiments.portraits import ranks

    centres = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    embeddings = np.array([[0.1, 0.0], [0.9, 0.0], [1.9, 0.0], [2.9, 0.0]])
    assert ranks(embeddings, centres, np.array([0, 0, 2, 1])).tolist() == [0, 1, 1, 1]


@pytest.mark.parametrize("sketched", [False, True])
def test_portrait_measurements_run_end_to_end_on_a_tiny_model(tmp_path, sketched):
    """Every figure of the measurement on 4 people x 3 photos, with dlib's embedder, and its card section;
    a portrait model is measured with its sketches beside its portraits."""
    from pixelcnn.data import ImageDataset
    from pixelcnn.experiments.portraits import Setting, evaluate_portraits, key_order, portraits_card

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 8, 8), generator=gen, dtype=torch.uint8)
    vectors = torch.randn(12, EMBEDDING_DIM, generator=gen) * 0.05
    labels = torch.arange(4).repeat_interleave(3)
    test = ImageDataset(images, labels, [str(k) for k in range(4)], "faces", "test", vectors)
    config = PixelCNNConfig(image_channels=3, image_size=8, hidden_channels=6, n_layers=2, head_channels=6,
                            conditioning="vector", cond_dim=EMBEDDING_DIM, standardise_cond=True)
    model = GatedPixelCNN(config).eval()
    model.condition.fit_statistics(vectors)
    if sketched:
        model = PortraitModel(tiny_portrait_model(size=8).sketch, model)
    settings = (Setting(guidance=1.0), Setting(guidance=3.0, strength=1.0))
    result, drawn = evaluate_portraits(model, test, settings=settings, per_person=2)
    assert result["people"] == 4 and result["images"] == 12 and result["identification_chance"] == 0.25
    keys = [setting.key(sketched) for setting in settings]
    assert list(result["guidance"]) == keys and set(drawn) == set(keys)
    colder = f", temperature {PORTRAIT_TEMPERATURE:g}"  # the default pixel temperature is recorded beside w
    assert keys[1] == (f"3, prior 1, sketch {SKETCH_TEMPERATURE:g}{colder}" if sketched else f"3{colder}")
    assert drawn[keys[1]].shape == (8, 3, 8, 8) and not torch.equal(drawn[keys[0]], drawn[keys[1]])
    for figures in result["guidance"].values():
        assert 0 <= figures["top1"] <= figures["top5"] <= 1 and figures["morph_rows"] == 2
        assert 0 <= figures["morph_ends_identified"] <= 1 and figures["independent_end_to_end_change"] > 0
        assert figures["variety"] > 0 and 0 <= figures["face_found"] <= 1
        assert ("sketch_top1" in figures) == sketched
    assert 0 <= result["people_own_below_average"] <= 4 and result["real_variety"] > 0
    card = portraits_card({"celeba-faces32": result})
    assert f"| {keys[1]} | " in card and "held-out people of `celeba-faces32`" in card and "null condition" in card
    colder, colder_drawn = evaluate_portraits(model, test, settings=(Setting(3.0, temperature=0.5),), per_person=2)
    key = Setting(3.0, temperature=0.5).key(sketched)
    assert key.endswith("temperature 0.5") and not torch.equal(colder_drawn[key], drawn[keys[1]])
    if not sketched:
        return
    # several seeds: each figure is their mean, top-1 also per seed, and the first seed's portraits are kept
    seeded, seeded_drawn = evaluate_portraits(model, test, settings=settings[1:], per_person=2, seeds=(0, 1))
    figures = seeded["guidance"][keys[1]]
    assert seeded["seeds"] == [0, 1] and figures["top1_per_seed"][0] == result["guidance"][keys[1]]["top1"]
    assert figures["top1"] == pytest.approx(np.mean(figures["top1_per_seed"])) and figures["morph_rows"] == 2
    assert torch.equal(seeded_drawn[keys[1]], drawn[keys[1]])
    assert "the mean of seeds 0, 1" in portraits_card({"celeba-faces32": seeded})
    assert sorted(["8", "5, temperature 0.8", "10", "5"], key=key_order) == ["5", "5, temperature 0.8", "8", "10"]


def test_an_older_flat_portraits_entry_is_replaced_not_mixed_in():
    from pixelcnn.experiments.portraits import measured_sets, portraits_card

    old = {"people": 30, "identification_top1": 0.06}
    new = {"celeba-faces32": {"guidance": {}, "people": 3}}
    assert measured_sets({**old, **new}) == new and measured_sets(3) == {}
    assert portraits_card(old) == ""


def test_the_sketch_measurement_runs_end_to_end_and_fills_the_sketch_card(tmp_path):
    """Sketches of 4 people x 3 photos identified by dlib, at z = 0 and at a temperature, from the first
    photo only, their MSE; written to the sketch's metrics.json and card."""
    from pixelcnn.data import ImageDataset
    from pixelcnn.experiments.sketches import evaluate_sketches, sketch_card

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 8, 8), generator=gen, dtype=torch.uint8)
    vectors = torch.randn(12, EMBEDDING_DIM, generator=gen) * 0.05
    test = ImageDataset(images, torch.arange(4).repeat_interleave(3), [str(k) for k in range(4)], "faces", "test",
                        vectors)
    sketcher = tiny_portrait_model(size=8).sketch
    result = evaluate_sketches(sketcher, test, temperature=1.0)
    assert result["people"] == 4 and result["photos"] == 12 and result["chance"] == 0.25
    for key in ("at_zero", "at_temperature", "first_photo"):
        assert 0 <= result[key]["top1"] <= result[key]["top5"] <= 1 and 0 <= result[key]["face_found"] <= 1
    assert result["at_temperature"]["variety"] > 0 and 0 < result["mse"] < 1
    card = sketch_card({"celeba-faces32": result})
    assert "| `celeba-faces32` (4 people, 12 photos) |" in card and "at temperature 1" in card
