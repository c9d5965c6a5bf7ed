"""The shipped weights: they load, their model cards are honest, and the app finds them."""

from pathlib import Path

import pytest
import torch

import pixelcnn
from pixelcnn.data import load_dataset
from pixelcnn.hub import local_models, read_metrics
from pixelcnn.presets import MODEL_PRESETS

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"
SHARED = ROOT.parent / "shared" / "data"
SHIPPED = {"mnist-class": "mnist", "cifar10-class": "cifar10"}


def test_the_app_finds_every_shipped_model_with_its_measured_bits_per_dim():
    found = {m.name: m for m in local_models(WEIGHTS)}
    assert set(found) == set(SHIPPED)
    for name, model in found.items():
        assert model.architecture == "gated" and model.test_bpd is not None
        assert model.config.class_names and len(model.config.class_names) == 10
        assert sorted(p.stem for p in (model.path / "examples").glob("*.png"))  # test images for the app
        # the shipped model has the preset's shape (class names aside)
        expected = MODEL_PRESETS[name].to_dict()
        actual = {k: v for k, v in model.config.to_dict().items() if k != "class_names"}
        assert actual == expected
        assert (model.path / "model.safetensors").stat().st_size < 8 * 2 ** 20  # a few MB


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_model_card_bits_per_dim_matches_a_fresh_evaluation(name):
    if not (SHARED / SHIPPED[name]).is_dir():
        pytest.skip("needs the datasets in ../shared/data")
    model = pixelcnn.from_pretrained(WEIGHTS / name)
    test = load_dataset(SHIPPED[name], "test", data_dir=SHARED)
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(test), 100):
            x = test.images[start:start + 100].long()
            total += model.bits_per_dim(x, test.labels[start:start + 100]).sum().item()
    fresh = total / len(test)
    recorded = read_metrics(WEIGHTS / name)["test_bpd"]
    assert abs(recorded - fresh) < 2e-4, (recorded, fresh)
    assert f"**{recorded:.4f}**" in (WEIGHTS / name / "README.md").read_text()
