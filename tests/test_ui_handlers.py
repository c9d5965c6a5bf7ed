"""The app's handlers, called as functions: no server, no browser."""


import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

import pixelcnn
from pixelcnn.images import display_scale, image_grid
from pixelcnn.ui import Explorer
from pixelcnn.ui import blind_spot, class_picker, likelihood


@pytest.fixture(scope="module")
def explorer(tmp_path_factory) -> Explorer:
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    for name, channels in (("grey", 1), ("mnist-class", 1)):
        config = pixelcnn.PixelCNNConfig(image_channels=channels, image_size=6, hidden_channels=6, n_layers=2,
                                         head_channels=6, conditioning="class", num_classes=2,
                                         class_names=["a", "b"])
        pixelcnn.GatedPixelCNN(config).save_pretrained(root / name)
        (root / name / "examples").mkdir()
        image_grid(torch.randint(0, 256, (1, 1, 6, 6)), nrow=1, padding=0).save(root / name / "examples" / "a.png")
    (root / "mnist-class" / "metrics.json").write_text('{"test_bpd": 1.5, "dataset": "mnist"}')
    return Explorer(root)


def test_the_app_opens_on_the_digits_model_and_says_what_it_is(explorer):
    assert explorer.first.startswith("mnist-class")
    line = explorer.describe(explorer.first)
    assert "Test bits/dim **1.500**" in line and "trained on a CPU" in line


def test_the_guidance_slider_reaches_the_sampler_and_defaults_to_the_library_value(explorer):
    from pixelcnn.sampling import CLASS_GUIDANCE

    model = explorer.model(explorer.first)
    for w in (1.0, 4.0):
        *_, (grid, text, gallery, state) = class_picker.generate(explorer, explorer.first, "b", 2, 1.0, 3, [],
                                                                "full speed", w)
        expected = image_grid(pixelcnn.sample(model, 2, 1, seed=3, guidance=w), nrow=2, levels=256,
                              scale=display_scale(6, 2))
        assert np.array_equal(np.asarray(grid), np.asarray(expected)), w
    assert state[0][1] == "b · seed 3 · guidance 4"
    assert class_picker.generate.__defaults__[-2] == CLASS_GUIDANCE
    with pytest.raises(gr.Error, match="guidance"):
        list(class_picker.generate(explorer, explorer.first, "b", 2, 1.0, 3, [], "full speed", -1))


def test_generate_streams_rows_and_ends_with_a_gallery_entry(explorer):
    events = list(class_picker.generate(explorer, explorer.first, "b", 2, 1.0, 3, [], "full speed", 1.0))
    grid, text, gallery, state = events[-1]
    assert "36 of 36 sub-pixels" in text and "done" in text and len(state) == 1 and state[0][1] == "b · seed 3"
    again = list(class_picker.generate(explorer, explorer.first, "b", 2, 1.0, 3, [], "pixel by pixel", 1.0))
    assert len(again) >= 2 and "row" in again[0][1]
    assert again[-1][0].tobytes() == grid.tobytes()  # the playback changes no pixel
    with pytest.raises(gr.Error, match="pick a class"):
        list(class_picker.generate(explorer, explorer.first, "z", 2, 1.0, 3, []))
    with pytest.raises(gr.Error, match="1 to 16"):
        list(class_picker.generate(explorer, explorer.first, "a", 17, 1.0, 3, []))


def test_stop_reports_the_row_and_keeps_the_partial_grid(explorer):
    """Stop is cooperative: the run sees the mark at its next frame and ends there by itself."""
    events = class_picker.generate(explorer, explorer.first, "a", 2, 1.0, 0, [], "row by row")
    grid, text, _, _ = next(events)  # one row shown, then the user stops
    assert "Stopped" not in text
    class_picker.STOP.stop(None)
    frames = list(events)
    assert len(frames) == 1, "the run ends at the frame after Stop"
    grid, text, gallery, state = frames[0]
    assert text.startswith("**Stopped at row") and gallery[0][1].endswith("stopped") and gallery == state
    assert grid is not None
    # a new run forgets a Stop that came after the last one ended
    class_picker.STOP.stop(None)
    *_, last = class_picker.generate(explorer, explorer.first, "a", 2, 1.0, 0, [], "full speed")
    assert last[1].endswith("done")
    # a Stop clicked while the run still waits in the queue (after its click) stops it at its first frame
    class_picker.STOP.ask(None)
    class_picker.STOP.stop(None)
    frames = list(class_picker.generate(explorer, explorer.first, "a", 2, 1.0, 0, [], "row by row"))
    assert len(frames) == 1 and frames[0][1].startswith("**Stopped at row 0,"), frames[0][1]


def test_a_model_switch_clears_every_output_of_the_old_model(explorer):
    lens = likelihood.LikelihoodTab(*[object() for _ in range(13)])
    updates = likelihood.TAB.model_changed(lens, explorer, explorer.first)
    assert set(updates) == set(likelihood.TAB.model_outputs(lens))
    for component in (lens.model_view, lens.surprise, lens.distribution, lens.completion, lens.state, lens.upload):
        assert updates[component] is None
    picker = class_picker.ClassPickerTab(*[object() for _ in range(12)])
    updates = class_picker.TAB.model_changed(picker, explorer, explorer.first)
    assert set(updates) == set(class_picker.TAB.model_outputs(picker))
    assert updates[picker.samples] is None and updates[picker.history] == [] == updates[picker.history_state]


def test_every_tab_exports_one_interface_and_the_page_lists_them_all():
    import pkgutil

    import pixelcnn.ui as ui
    from pixelcnn.ui.app import TABS
    from pixelcnn.ui.common import Tab

    modules = [m.name for m in pkgutil.iter_modules(ui.__path__) if m.name not in ("app", "common", "models")]
    tabs = [__import__(f"pixelcnn.ui.{name}", fromlist=["TAB"]).TAB for name in modules]
    assert all(isinstance(tab, Tab) for tab in tabs) and sorted(t.title for t in tabs) == sorted(t.title for t in TABS)


def test_measure_gives_bits_top_classes_true_label_and_warnings(explorer, tmp_path):
    example = explorer.examples(explorer.first)["a"]
    view, heat, text, state, plot = likelihood.measure(explorer, explorer.first, example, None, "a")
    assert "bits/dim" in text and "True label: **a**" in text and "Most likely classes" in text
    assert state["x"].shape == (1, 1, 6, 6) and heat.width > view.width  # the colour bar
    if float(text.split("###")[1].split()[0]) > 8:
        assert "far outside what the model learnt" in text
    square = tmp_path / "square.png"
    image_grid(torch.randint(0, 256, (1, 1, 30, 30)), nrow=1, padding=0).save(square)
    text = likelihood.measure(explorer, explorer.first, str(square), None)[2]
    assert "30x30 resized to 6x6" in text and "centre-cropped" not in text
    frames = list(likelihood.complete(explorer, state, 3, 0))
    assert len(frames) >= 2 and frames[-1].width > frames[-1].height  # the original beside the completion
    with pytest.raises(gr.Error, match="measure an image first"):
        list(likelihood.complete(explorer, None, 3, 0))


def test_the_blind_spot_handler_answers_every_control():
    picture, text, steps = blind_spot.receptive_field("Original PixelCNN", 3, 5, 8, 5)
    assert "3 layers, 5x5" in text and len(steps) == 3
    assert picture.width == blind_spot.FIELD_SIZE * blind_spot.MAP_SCALE
    with pytest.raises(gr.Error):
        blind_spot.receptive_field("Gated PixelCNN", 30, 3, 8, 5)


def test_a_picture_shown_twice_is_cached_once_and_never_rewritten(tmp_path):
    """Gradio rewrites a repeated PIL output in place, truncating a file the browser may be fetching."""
    from PIL import Image

    from pixelcnn.ui.common import gallery, picture

    noise = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    drawn = Image.fromarray(noise)
    image = picture(type="pil", format="png")
    image.GRADIO_CACHE = str(tmp_path)
    assert type(image) is gr.Image  # no component class of ours: Gradio would write a .pyi beside it
    first = image.postprocess(drawn).path
    stamp = (Path(first).stat().st_ino, Path(first).stat().st_mtime_ns)
    time.sleep(0.01)
    again = image.postprocess(Image.fromarray(noise.copy())).path
    assert again == first and (Path(first).stat().st_ino, Path(first).stat().st_mtime_ns) == stamp
    assert np.array_equal(np.asarray(Image.open(first)), noise)
    other = image.postprocess(Image.fromarray(255 - noise)).path
    assert other != first and not list(tmp_path.rglob(".image-*"))  # no staging file left behind
    shelf = gallery("recent", "recent")
    shelf.GRADIO_CACHE = str(tmp_path)
    items = shelf.postprocess([(drawn, "seed 0"), Image.fromarray(255 - noise)]).root
    assert [item.image.path for item in items] == [first, other] and items[0].caption == "seed 0"
