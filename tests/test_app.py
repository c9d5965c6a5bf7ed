"""The app, as users meet it: a real Gradio server, driven by headless Chromium and by gradio_client.

Screenshots go to test-artifacts/.
"""

import io
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixelcnn
from pixelcnn.images import image_grid

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
GREY = "digits (16x16x1, 6 layers, 1.234 bits/dim)"
COLOUR = "colours (10x10x3, 3 layers, bits/dim not measured)"
SHARED_FACES = ROOT.parent / "shared" / "data" / "celeba_faces64" / "data" / "all-00000-of-00001.parquet"

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Two small class-conditional models with model cards and example images, like weights/."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    configs = {
        "digits": pixelcnn.PixelCNNConfig(image_channels=1, image_size=16, hidden_channels=32, n_layers=6,
                                          head_channels=64, conditioning="class", num_classes=3,
                                          class_names=["zero", "one", "two"]),
        "colours": pixelcnn.PixelCNNConfig(image_channels=3, image_size=10, hidden_channels=12, n_layers=3,
                                           head_channels=24, conditioning="class", num_classes=2,
                                           class_names=["cat", "dog"]),
    }
    for name, config in configs.items():
        pixelcnn.GatedPixelCNN(config).save_pretrained(root / name)
        examples = root / name / "examples"
        examples.mkdir()
        x = torch.randint(0, 256, (1, config.image_channels, config.height, config.width))
        image_grid(x, nrow=1, padding=0).save(examples / f"{config.class_names[0]}.png")
    (root / "digits" / "metrics.json").write_text('{"test_bpd": 1.234, "dataset": "digits"}\n')
    # a small portrait model conditioned on 128-number face embeddings, with two example faces
    faces = pixelcnn.PixelCNNConfig(image_channels=3, image_size=8, hidden_channels=12, n_layers=3,
                                    head_channels=12, conditioning="vector", cond_dim=128)
    sketch = pixelcnn.EmbeddingSketch(pixelcnn.SketchConfig(image_size=8, cond_dim=128, channels=4, latent_dim=2,
                                                            encoder_channels=4))
    pixelcnn.PortraitModel(sketch, pixelcnn.GatedPixelCNN(faces)).save_pretrained(root / "faces")  # as shipped
    (root / "faces" / "examples").mkdir()
    for k, crop in enumerate(face_crops(2)):
        Image.fromarray(crop).resize((128, 128)).save(root / "faces" / "examples" / f"person-{k}.png")
    # a PixelCNN auto-encoder with a code of 4 numbers, its MSE baseline, and one example image
    code = pixelcnn.EncoderConfig(image_channels=3, image_size=8, code_dim=4, channels=8)
    decoder = pixelcnn.GatedPixelCNN(faces.replace(conditioning="sketch", cond_dim=4, spatial_channels=4))  # as shipped
    pixelcnn.PixelCNNAutoEncoder(pixelcnn.ConvEncoder(code), decoder).save_pretrained(root / "ae-4")
    pixelcnn.MSEAutoEncoder(pixelcnn.ConvEncoder(code), pixelcnn.DeconvDecoder(code)).save_pretrained(root / "mse-4")
    (root / "ae-4" / "examples").mkdir()
    image_grid(torch.randint(0, 256, (1, 3, 8, 8)), nrow=1, padding=0).save(root / "ae-4" / "examples" / "noise.png")
    return root


def face_crops(n: int) -> list[np.ndarray]:
    """n face crops of different people from the shared data (empty without it: face tests skip)."""
    path = SHARED_FACES
    if not path.is_file():
        return []
    import pyarrow.parquet as pq

    from pixelcnn.data import decode_image
    rows = pq.read_table(path, columns=["image", "label"]).slice(0, 50).to_pylist()
    crops, seen = [], set()
    for row in rows:
        if row["label"] not in seen and len(crops) < n:
            seen.add(row["label"])
            crops.append(decode_image(row["image"]["bytes"], "crop"))
    return crops


def needs_faces():
    if not SHARED_FACES.is_file():
        pytest.skip("needs ../shared/data/celeba_faces64 for example faces")


def running_app(extra_args: list[str], log_path: Path):
    """Start app.py with extra_args, yield its URL once it answers, and stop it afterwards."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
    # the app's log goes to a file: a pipe that nobody reads fills up and blocks the server mid-request
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *extra_args, "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the app exited: {log_path.read_text(errors='replace')[-3000:]}")
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"the app did not answer within 180 s: {log_path.read_text(errors='replace')[-3000:]}")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    yield from running_app(["--weights", str(weights)], tmp_path_factory.mktemp("app") / "app.log")


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


# ------------------------------------------------------------------------------------ browser
@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


SRC_RECORDER = """(selector) => {
    window.__srcs = [];
    const record = () => {
        const img = document.querySelector(selector + ' img');
        if (img && img.src && window.__srcs[window.__srcs.length - 1] !== img.src) window.__srcs.push(img.src);
    };
    new MutationObserver(record).observe(document.querySelector(selector),
        {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}"""


READOUT_RECORDER = """() => { window.__readouts = [];
    new MutationObserver(() => window.__readouts.push(document.querySelector('#progress').innerText))
        .observe(document.querySelector('#progress'), {subtree: true, childList: true, characterData: true}); }"""


def open_with_grey_model(browser, server):
    """A new page with the 16x16 grey model picked (16 rows stream as 16 updates), recording #samples' srcs."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server)
    page.wait_for_selector("#generate", timeout=60_000)
    page.get_by_label("Model").first.wait_for()
    page.get_by_label("Model").first.click()
    page.get_by_role("option", name=GREY).click()
    # wait until the model switch has reached the server and the class list (zero, one, two)
    page.wait_for_function("document.querySelector('#model-status').innerText.startsWith('digits')",
                           timeout=60_000)
    page.wait_for_function("document.querySelector('#class-name input').value === 'zero'", timeout=60_000)
    page.evaluate(SRC_RECORDER, "#samples")
    return page


def test_browser_generation_streams_and_blind_spot_maps_differ(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_with_grey_model(browser, server)
    page.click("#generate")  # playback "row by row" (the default) shows each of the 16 rows for >= 0.1 s
    page.wait_for_function("document.querySelector('#progress').innerText.includes('done')", timeout=120_000)
    srcs = page.evaluate("window.__srcs")
    assert len(srcs) >= 4, f"the image changed {len(srcs) - 1} times before it finished"
    assert "256 of 256 sub-pixels" in page.inner_text("#progress")
    page.screenshot(path=str(ARTIFACTS / "class-picker.png"), full_page=True)

    page.get_by_role("tab", name="Blind spot").click()
    page.click("#show-field")  # the original PixelCNN is selected when the page opens
    page.wait_for_function("document.querySelector('#field-text').innerText.includes('Original PixelCNN')"
                           " && document.querySelector('#field img')?.complete", timeout=60_000)
    original = (page.inner_text("#field-text"), page.get_attribute("#field img", "src"))
    page.screenshot(path=str(ARTIFACTS / "blind-spot-original.png"), full_page=True)
    page.get_by_label("Gated PixelCNN").check()
    page.wait_for_function("old => document.querySelector('#field-text').innerText.includes('Gated PixelCNN')"
                           " && document.querySelector('#field img')?.src !== old"
                           " && document.querySelector('#field img').complete", arg=original[1], timeout=60_000)
    gated = (page.inner_text("#field-text"), page.get_attribute("#field img", "src"))
    page.screenshot(path=str(ARTIFACTS / "blind-spot-gated.png"), full_page=True)
    assert original[1] != gated[1]
    assert "0 lie in its blind spot" in gated[0] and "0 lie in its blind spot" not in original[0]
    # the layers slider alone redraws the map
    page.locator("#layers input[type=range]").fill("2")
    page.wait_for_function("old => document.querySelector('#field-text').innerText.includes('2 layers')"
                           " && document.querySelector('#field img')?.src !== old", arg=gated[1], timeout=60_000)
    # a kernel picked while the map redraws keeps every radio circle drawn, the picked one filled
    shown = page.get_attribute("#field img", "src")
    page.locator("#kernel").get_by_text("5", exact=True).click()
    circles = page.evaluate("Array.from(document.querySelectorAll('#kernel input')).map(i => [i.value, i.checked,"
                            " getComputedStyle(i).opacity, getComputedStyle(i).visibility, i.getBoundingClientRect().width])")
    assert [(value, checked) for value, checked, *_ in circles] == [("3", False), ("5", True), ("7", False)]
    assert all(opacity == "1" and visible == "visible" and width > 8 for _, _, opacity, visible, width in circles)
    page.wait_for_function("old => document.querySelector('#field img')?.src !== old", arg=shown, timeout=60_000)
    page.close()


def test_browser_pixel_by_pixel_playback_shows_the_current_pixel(server, browser):
    page = open_with_grey_model(browser, server)
    page.get_by_label("pixel by pixel").check()
    page.evaluate(READOUT_RECORDER)
    page.click("#generate")
    page.wait_for_function("document.querySelector('#progress').innerText.includes('done')", timeout=120_000)
    srcs, readouts = page.evaluate("window.__srcs"), page.evaluate("window.__readouts")
    assert len(srcs) >= 10, f"only {len(srcs)} frames for 256 pixels"
    assert any("row 0, column" in r for r in readouts) and any("row 15, column" in r for r in readouts)
    page.close()


def test_browser_switching_the_model_leaves_nothing_of_the_old_one(server, browser):
    page = open_with_grey_model(browser, server)
    page.get_by_role("tab", name="Likelihood").click()
    page.locator("#example input").click()
    page.get_by_role("option", name="zero").click()  # the example is the source; the upload box stays empty
    page.click("#measure")
    page.wait_for_function("document.querySelector('#score').innerText.includes('bits/dim')", timeout=60_000)
    old = page.inner_text("#score")
    assert "True label: zero" in old and page.locator("#model-view img").count() == 1
    page.screenshot(path=str(ARTIFACTS / "likelihood.png"), full_page=True)
    page.get_by_label("Model").first.click()
    page.get_by_role("option", name=COLOUR).click()
    page.wait_for_function("document.querySelector('#model-status').innerText.startsWith('colours')"
                           " && !document.querySelector('#score').innerText.includes('bits/dim')", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "after-model-switch.png"), full_page=True)
    assert "bits/dim" not in page.inner_text("#score")
    assert page.locator("#model-view img").count() == 0 and page.locator("#surprise img").count() == 0
    assert page.input_value("#example input") == ""
    page.click("#complete")  # the old image is gone: nothing to complete
    page.wait_for_selector("text=measure an image first", timeout=30_000)
    page.close()


def test_browser_stop_cancels_a_running_generation(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_with_grey_model(browser, server)
    page.evaluate(READOUT_RECORDER)
    page.click("#generate")  # row by row: 16 rows take at least 1.6 s
    page.wait_for_function("window.__srcs.length >= 2", timeout=60_000)
    page.click("#stop")
    page.wait_for_function("document.querySelector('#progress').innerText.includes('Stopped at row')",
                           timeout=60_000)  # feedback, and the partial grid is kept
    page.screenshot(path=str(ARTIFACTS / "stopped.png"), full_page=True)
    assert "stopped" in page.inner_text("#history")
    # the server is free again: the next generation finishes. Had the stopped one gone on, it would
    # have finished first (it had fewer rows left) and shown its own "256 of 256"
    page.click("#generate")
    page.wait_for_function("document.querySelector('#progress').innerText.includes('done')", timeout=120_000)
    finished = [r for r in page.evaluate("window.__readouts") if "256 of 256" in r]
    assert len(finished) == 1, f"the render went on after Stop: {finished}"
    page.close()


# ------------------------------------------------------------------------------------ API
def read_bytes(path) -> bytes:
    return Path(path).read_bytes()


def test_generation_is_deterministic_for_a_seed(client):
    a = client.predict(GREY, "one", 4, 1.0, 7, api_name="/generate")
    b = client.predict(GREY, "one", 4, 1.0, 7, "full speed", api_name="/generate")  # playback changes no pixel
    c = client.predict(GREY, "one", 4, 1.0, 8, api_name="/generate")
    assert "256 of 256 sub-pixels" in a[1] and "done" in a[1]
    assert read_bytes(a[0]) == read_bytes(b[0]) != read_bytes(c[0])
    assert Image.open(a[0]).format == "PNG"
    rgb = client.predict(COLOUR, "dog", 2, 0.0, 1, api_name="/generate")
    assert Image.open(rgb[0]).mode == "RGB"


def refused(result, index: int, message: str) -> bool:
    """A refused request answers with its outputs cleared and the reason in its text, not an error."""
    return result[index].startswith("**Not done:**") and message in result[index]


def test_generation_refuses_bad_requests_with_a_message(client):
    assert refused(client.predict(GREY, "unicorn", 4, 1.0, 7, api_name="/generate"), 1, "pick a class")
    result = client.predict("nothing", "one", 4, 1.0, 7, api_name="/generate")
    assert refused(result, 1, "unknown model") and result[0] is None


def test_receptive_field_through_the_api(client):
    original = client.predict("Original PixelCNN", 8, 3, 8, 5, api_name="/receptive_field")
    gated = client.predict("Gated PixelCNN", 12, 3, 8, 5, api_name="/receptive_field")
    again = client.predict("Gated PixelCNN", 12, 3, 8, 5, api_name="/receptive_field")
    assert "**0 lie in its blind spot**" in gated[1] and "**0 lie" not in original[1]
    assert read_bytes(original[0]) != read_bytes(gated[0])
    assert read_bytes(gated[0]) == read_bytes(again[0]) and gated[1] == again[1]
    assert len(gated[2]) == 12  # one map per depth


def test_likelihood_and_completion(client, weights):
    example = weights / "digits" / "examples" / "zero.png"
    first = client.predict(GREY, handle_file(str(example)), "most likely class", api_name="/likelihood")
    second = client.predict(GREY, handle_file(str(example)), "most likely class", api_name="/likelihood")
    assert "bits/dim" in first[2] and first[2] == second[2]
    assert read_bytes(first[1]) == read_bytes(second[1])  # the heat map
    given = client.predict(GREY, handle_file(str(example)), "two", api_name="/likelihood")
    assert "given class **two**" in given[2]
    completed = client.predict(8, 3, api_name="/complete")
    out = np.asarray(Image.open(completed).convert("L"))
    view = np.asarray(Image.open(given[0]).convert("L"))  # 16 x 16 pixels, 20 screen pixels each
    scale, pad = view.shape[0] // 16, 2 * (view.shape[0] // 16)
    original = out[pad:pad + view.shape[0], pad:pad + view.shape[1]]
    right = pad + view.shape[1] + pad
    completion = out[pad:pad + view.shape[0], right:right + view.shape[1]]
    kept, below = 8 * scale - scale // 2, 8 * scale + scale // 2  # around the line at the kept rows
    assert (original[:kept] == view[:kept]).all() and (original[below:] == view[below:]).all()  # the original
    assert (completion[:kept] == view[:kept]).all()  # its completion keeps the top rows
    assert not (completion[below:] == view[below:]).all()


def bad_uploads(tmp_path: Path) -> dict[str, Path]:
    files = {}

    def save(name, image, **kwargs):
        files[name] = tmp_path / name
        image.save(files[name], **kwargs)

    rng = np.random.default_rng(0)
    save("rgba.png", Image.fromarray(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)))
    save("palette.png", Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).convert("P"))
    save("deep16.png", Image.fromarray(rng.integers(0, 65535, (16, 16)).astype(np.uint16)))
    save("wide.png", Image.fromarray(rng.integers(0, 256, (30, 70, 3), dtype=np.uint8)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    save("rotated.jpg", Image.fromarray(rng.integers(0, 256, (12, 24, 3), dtype=np.uint8)), exif=exif)
    save("huge.png", Image.new("L", (7000, 7000)))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(buf, format="PNG")
    files["truncated.png"] = tmp_path / "truncated.png"
    files["truncated.png"].write_bytes(buf.getvalue()[:60])
    files["notes.png"] = tmp_path / "notes.png"
    files["notes.png"].write_text("these are notes, not pixels")
    return files


@pytest.mark.parametrize("model", [GREY, COLOUR])
def test_bad_uploads_give_a_result_or_a_clear_error_and_the_server_stays_up(client, tmp_path, model):
    expected_errors = {"huge.png": "megapixels are refused", "truncated.png": "damaged or truncated",
                       "notes.png": "not an image"}
    expected_notices = {"rgba.png": "transparency", "wide.png": "centre-cropped and resized",
                        "rotated.jpg": "rotated as its EXIF orientation says", "deep16.png": "16-bit"}
    for name, path in bad_uploads(tmp_path).items():
        if name in expected_errors:
            result = client.predict(model, handle_file(str(path)), "most likely class", api_name="/likelihood")
            assert refused(result, 2, expected_errors[name]) and result[0] is None and result[1] is None
        else:
            result = client.predict(model, handle_file(str(path)), "most likely class", api_name="/likelihood")
            assert "bits/dim" in result[2], name
            if name in expected_notices:
                assert expected_notices[name] in result[2], (name, result[2])
        # the server answers the next request
        assert "blind spot" in client.predict("Original PixelCNN", 2, 3, 3, 3, api_name="/receptive_field")[1]


def test_two_clients_generating_at_once_both_finish(server):
    results, errors = {}, []

    def work(key):
        try:
            results[key] = Client(server, verbose=False).predict(GREY, "two", 16, 1.0, key, api_name="/generate")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and set(results) == {1, 2}
    assert all("done" in r[1] for r in results.values())


def test_an_unreachable_hub_repo_is_a_message_not_a_crash(client):
    result = client.predict("someone/not-a-pixelcnn", api_name="/load_hub")
    assert "Could not load" in result[1] and "unreachable" in result[1]
    assert "blind spot" in client.predict("Gated PixelCNN", 2, 3, 3, 3, api_name="/receptive_field")[1]


# ------------------------------------------------------------------------------------ faces
def test_browser_portraits_and_morph_render_live(server, browser):
    needs_faces()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server)
    page.wait_for_selector("#generate", timeout=60_000)
    page.get_by_role("tab", name="Portraits from a photo").click()
    page.locator("#face-example input").click()
    page.get_by_role("option", name="person-0").click()
    page.evaluate(SRC_RECORDER, "#face-portraits")
    page.click("#face-generate")
    page.wait_for_function("document.querySelector('#face-progress').innerText.includes('done')", timeout=120_000)
    assert len(page.evaluate("window.__srcs")) >= 4  # 8 rows, each shown: the portraits render live
    assert "Face found" in page.inner_text("#face-progress")
    page.screenshot(path=str(ARTIFACTS / "portraits.png"), full_page=True)

    page.get_by_role("tab", name="Morph two faces").click()
    page.evaluate(SRC_RECORDER, "#morph-row")
    page.click("#morph")
    page.wait_for_function("document.querySelector('#morph-progress').innerText.includes('done')",
                           timeout=120_000)
    assert len(page.evaluate("window.__srcs")) >= 4
    page.screenshot(path=str(ARTIFACTS / "morph.png"), full_page=True)
    page.close()


def test_portraits_through_the_api(client, weights, tmp_path):
    needs_faces()
    example = weights / "faces" / "examples" / "person-0.png"
    first = client.predict(handle_file(str(example)), None, 4, 1.0, 3, api_name="/portraits")
    again = client.predict(handle_file(str(example)), None, 4, 1.0, 3, api_name="/portraits")
    assert "done" in first[3] and read_bytes(first[2]) == read_bytes(again[2])
    blank = tmp_path / "wall.png"
    Image.new("RGB", (400, 300), (120, 120, 120)).save(blank)
    nobody = client.predict(handle_file(str(blank)), None, 4, 1.0, 3, api_name="/portraits")
    assert refused(nobody, 3, "no face found") and nobody[2] is None
    notes = client.predict(handle_file(str(bad_uploads(tmp_path)["notes.png"])), None, 4, 1.0, 3, api_name="/portraits")
    assert refused(notes, 3, "not an image")
    # the server answers the next request, and the morph's ends are the two people
    row = client.predict(None, "person-0", None, "person-1", 3, 0, api_name="/interpolate")
    assert "done" in row[2]


# ------------------------------------------------------------------------------------ auto-encoder
def test_browser_autoencoder_tab_renders_decodings_live(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server)
    page.wait_for_selector("#generate", timeout=60_000)
    page.get_by_label("Model").first.click()  # the picker offers single PixelCNNs, not the auto-encoders
    options = page.get_by_role("option").all_inner_texts()
    assert options and not any(name.startswith(("ae-4", "mse-4")) for name in options), options
    page.keyboard.press("Escape")
    page.get_by_role("tab", name="Auto-encoder").click()
    assert "m = 4" in page.inner_text("#ae-code")
    page.evaluate(SRC_RECORDER, "#ae-decodings")
    page.click("#ae-decode")
    page.wait_for_function("document.querySelector('#ae-progress').innerText.includes('done')", timeout=120_000)
    assert len(page.evaluate("window.__srcs")) >= 3  # 8 rows: the decodings render live
    for picture in ("#ae-original", "#ae-mse", "#ae-decodings"):
        assert page.locator(f"{picture} img").count() == 1, picture
    assert "average" in page.inner_text("#ae-intro")
    page.screenshot(path=str(ARTIFACTS / "autoencoder.png"), full_page=True)
    page.close()


def test_autoencoder_through_the_api(client, weights, tmp_path):
    example = weights / "ae-4" / "examples" / "noise.png"
    first = client.predict(handle_file(str(example)), None, "m = 4", 3, 1.0, 7, api_name="/autoencode")
    again = client.predict(handle_file(str(example)), None, "m = 4", 3, 1.0, 7, api_name="/autoencode")
    assert "done" in first[3] and read_bytes(first[2]) == read_bytes(again[2])
    assert read_bytes(first[1]) == read_bytes(again[1])  # the MSE reconstruction
    other = client.predict(handle_file(str(example)), None, "m = 4", 3, 1.0, 8, api_name="/autoencode")
    assert read_bytes(other[2]) != read_bytes(first[2])
    uploads = bad_uploads(tmp_path)
    for name, message in {"notes.png": "not an image", "truncated.png": "damaged or truncated",
                          "huge.png": "megapixels are refused"}.items():
        result = client.predict(handle_file(str(uploads[name])), None, "m = 4", 2, 1.0, 0, api_name="/autoencode")
        assert refused(result, 3, message) and result[2] is None
    wide = client.predict(handle_file(str(uploads["wide.png"])), None, "m = 4", 2, 1.0, 0, api_name="/autoencode")
    assert "centre-cropped and resized" in wide[3] and "done" in wide[3]
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict(None, "noise", "m = 99", 2, 1.0, 0, api_name="/autoencode")


# ------------------------------------------------------------------------------------ the shipped weights
@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    """app.py on the shipped weights/, as a user launches it."""
    yield from running_app([], tmp_path_factory.mktemp("shipped-app") / "app.log")


def test_browser_shipped_portraits_and_morph_follow_the_person(shipped_server, browser):
    """The face tabs on the shipped model, at their default guidance: screenshots to look at, the
    measured likeness stated, and a morph whose two ends differ (the old model drew six equal faces)."""
    from pixelcnn.faces import PORTRAIT_GUIDANCE

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(shipped_server)
    page.wait_for_selector("#generate", timeout=60_000)
    page.get_by_role("tab", name="Portraits from a photo").click()
    assert page.locator("#face-guidance input[type=number]").input_value() == f"{PORTRAIT_GUIDANCE:g}"
    assert "recognised as their person" in page.inner_text("#face-intro")
    for person in ("person-1", "person-2"):
        page.locator("#face-example input").click()
        page.get_by_role("option", name=person).click()
        page.click("#face-generate")
        # the previous person's "done" first gives way to this render's progress
        page.wait_for_function("!document.querySelector('#face-progress').innerText.includes('done')",
                               timeout=60_000)
        page.wait_for_function("document.querySelector('#face-progress').innerText.includes('done')"
                               " && document.querySelector('#face-portraits img')?.complete", timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / f"shipped-portraits-{person}.png"), full_page=True)

    page.get_by_role("tab", name="Morph two faces").click()
    page.click("#morph")
    page.wait_for_function("document.querySelector('#morph-progress').innerText.includes('done')",
                           timeout=120_000)
    # the portrait at alpha follows the row
    page.wait_for_function("document.querySelector('#morph-single img')?.complete", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "shipped-morph.png"), full_page=True)
    row = page.evaluate("document.querySelector('#morph-row img').src")
    with urllib.request.urlopen(row) as response:
        grid = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB")).astype(float)
    width = grid.shape[1] // 6  # six portraits in a row, the first and the last compared
    ends = np.abs(grid[:, :width] - grid[:, -width:]).mean()
    assert ends > 15, f"the morph's two ends differ by only {ends:.1f} pixel levels: the model ignores the person"
    page.close()
