"""What the tabs share: the tab interface (`Tab`, `Page`), the sampling controls and their checks,
playback pacing, streaming frames and progress text, picture files and the page's CSS."""

import functools
import hashlib
import inspect
import io
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..images import UploadError, image_grid, load_upload, outline_pixel
from ..sampling import SampleProgress
from .models import Explorer

LOG = logging.getLogger("pixelcnn.ui")
MAX_SAMPLES = 16          # images per request
MIN_UPDATE_S = 0.12       # seconds between streamed images at full speed
ROW_FRAME_S = 0.1         # row by row: each finished row stays on screen at least this long
PIXEL_BUDGET_S = 8.0      # pixel by pixel: one image takes about this long; a grid goes faster
PIXEL_FRAME_S = 0.05      # ...shown as a frame at most every 50 ms
PLAYBACK = ["row by row", "pixel by pixel", "full speed"]
SUBPIXEL_NOTE = ("A *sub-pixel* is one colour value of one pixel: the model writes R, then G, then B of each "
                 "pixel, pixel after pixel in reading order.")

# crisp, whole pixels everywhere; whole images in galleries; no toolbar over the pictures
CSS = """
img { image-rendering: pixelated; }
.pixelated img, .pixelated canvas { image-rendering: pixelated; }
#history .thumbnail-item img, #growth .thumbnail-item img { object-fit: contain !important; }
"""


# An emptied number box (a slider's, a seed's) goes back to the value it held when the user left it:
# Gradio's own turns an empty slider box into 0, which runs (temperature 0: every image a flat argmax)
HEAD = """<script>
document.addEventListener("focusin", (e) => {
  if (e.target.matches && e.target.matches("input[type=number]")) e.target.dataset.held = e.target.value;
}, true);
document.addEventListener("blur", (e) => {
  const box = e.target;
  if (box.matches && box.matches("input[type=number]") && box.value.trim() === "" && box.dataset.held) {
    box.value = box.dataset.held;
    box.dispatchEvent(new Event("input", {bubbles: true}));
  }
}, true);
</script>"""


def on_the_slider(value: float, control: gr.Slider) -> float:
    """A typed value as the slider takes it: clamped to its range and snapped to its step (2.5 samples
    are 3, 999 layers are the most there are)."""
    value = min(max(float(value), control.minimum), control.maximum)
    step = control.step or 0
    if step:
        value = control.minimum + round((value - control.minimum) / step) * step
        value = round(min(value, control.maximum), 10)
    return int(value) if float(step).is_integer() and float(control.minimum).is_integer() else value


def slider(*args: Any, **kwargs: Any) -> gr.Slider:
    """A `gr.Slider` whose box shows what runs. A typed value beyond its range, or between its steps,
    is put back in the box as the value the handlers get (`on_the_slider`), and an emptied box gets
    back the value it held (`HEAD`), where Gradio's own would refuse it with an error toast that stays,
    run a different value than the box shows, or read an empty box as 0.

    The instance's preprocess is wrapped: a subclass would make Gradio write a .pyi stub beside this
    module at import."""
    control = gr.Slider(*args, **kwargs)
    refuse_out_of_range = control.preprocess

    def clamped(payload: float | None) -> float | None:
        return None if payload is None else refuse_out_of_range(on_the_slider(payload, control))

    control.preprocess = clamped
    # an emptied box is put back by the page's script (HEAD), which knows what it held
    control.input(lambda value: gr.skip() if value is None else value, control, control, queue=False,
                  show_progress="hidden", api_visibility="private")
    return control


def number_box(label: str, value: int = 0, elem_id: str | None = None, info: str | None = None) -> gr.Number:
    """A whole-number box (a seed) whose box shows what runs: a fraction is rounded and an emptied box
    goes back to `value` as soon as the user leaves it or presses Enter."""
    box = gr.Number(value=value, precision=0, label=label, elem_id=elem_id, info=info)

    def shown(typed: int | None) -> Any:
        if typed is None:
            return value
        # beyond 2**53 the browser holds no exact integer (1e30 stays as typed; the run takes int(1e30))
        return typed if abs(typed) < 2 ** 53 else gr.skip()

    for event in (box.blur, box.submit):
        event(shown, box, box, queue=False, show_progress="hidden", api_visibility="private")
    return box


@dataclass(frozen=True)
class Page:
    """What a tab's wiring may use: the models, the page's model picker and the Blocks."""

    explorer: Explorer
    model_choice: gr.Dropdown
    demo: gr.Blocks


def _no_change(parts: Any, explorer: Explorer, choice: str) -> dict:
    return {}


@dataclass(frozen=True)
class Tab:
    """What every tab module exports as `TAB`; `ui.app` builds the page from a list of them.

    layout(explorer) -> parts: builds the tab's components (inside its gr.Tab) and returns them.
    wire(parts, page): connects the events.
    model_changed(parts, explorer, choice) -> {component: update}: what a new pick in the page's
        model picker changes; `model_outputs(parts)` lists those components.
    uses_model: whether the tab works on the page's model picker's model; the picker shows on such
        tabs only (the others find their own models).
    """

    title: str
    layout: Callable[[Explorer], Any]
    wire: Callable[[Any, Page], None]
    model_changed: Callable[[Any, Explorer, str], dict] = _no_change
    model_outputs: Callable[[Any], list] = field(default=lambda parts: [])
    uses_model: bool = False


def refusing(handler: Callable, outputs: Callable[[str], Any], quiet: bool = False) -> Callable:
    """`handler` with its expected refusals (a `gr.Error` it raises, an `UploadError` such as a photo
    without a face) turned into a warning that goes away, one log line, and `outputs(message)`: every
    output of the tab in a consistent state, the message in its text. No red "Error" badge, no stale
    result beside the message, no traceback in the log. Anything else is a real fault and goes on up,
    to Gradio's error display and its traceback.

    The wrapper keeps the handler's signature (Gradio reads its gr.Request and SelectData hints) and
    is a generator function when the handler is one (Gradio streams it). `quiet`: no warning and no
    log line, for a handler chained after one that already said it."""
    def refuse(error: Exception):
        message = getattr(error, "message", None) or str(error)
        if not quiet:
            LOG.info("refused input: %s", message)
            gr.Warning(message, duration=8)
        return outputs(message)

    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def streaming(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except (gr.Error, UploadError) as e:
                yield refuse(e)
        return streaming

    @functools.wraps(handler)
    def plain(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except (gr.Error, UploadError) as e:
            return refuse(e)
    return plain


def refused_note(message: str) -> str:
    """A refusal as the tab's text says it."""
    return f"**Not done:** {message}"


def checked_count(n: float | None, what: str, most: int = MAX_SAMPLES) -> int:
    """A count slider's value as an int in [1, most], or a gr.Error that names `what`."""
    if n is None or not 1 <= float(n) <= most:
        raise gr.Error(f"ask for 1 to {most} {what}")
    return int(n)


def checked_seed(seed: float | None) -> int:
    """The seed box's value as the sampler takes it: any whole number, however large (the library takes
    it modulo 2**64, so 1e30 and 99999999999999999999 draw like any other seed); a gr.Error for an
    empty box or one that holds no number."""
    if seed is None:
        raise gr.Error("the seed box is empty: enter a whole number (any size)")
    if isinstance(seed, float) and not math.isfinite(seed):
        raise gr.Error("the seed must be a finite whole number")
    return int(round(seed)) if isinstance(seed, float) else int(seed)


def checked_temperature(temperature: float | None) -> float:
    """The temperature slider's value, or a gr.Error for an empty box (which would otherwise draw with
    temperature 0, every image a flat argmax)."""
    if temperature is None:
        raise gr.Error("the temperature box is empty: enter a number from 0 to 2 (1 samples the model as trained)")
    return float(temperature)


def gallery(label: str, elem_id: str, columns: int = 6, height: int | str = 250) -> gr.Gallery:
    """A gallery that shows whole images with their captions, pixelated ("auto" height: every row shows)."""
    return cached_pictures(gr.Gallery(label=label, columns=columns, fit_columns=False, height=height,
                                      object_fit="contain", elem_id=elem_id, allow_preview=True,
                                      elem_classes=["pixelated"], format="png"))


TEMPERATURE_INFO = ("below 1 the likeliest value wins, and a pixel model drifts to a plain background; for "
                    "likeness, raise guidance")


def sampling_controls(what: str, n: int, action: str, elem_id: str, stop_id: str, guidance: tuple,
                      seed_info: str | None = None, temperature: float = 1.0) -> tuple:
    """(count slider, temperature, guidance, seed, action button, Stop button) of a tab that streams
    samples; `guidance` is (default, what it makes the images look like, elem_id). The count, temperature
    and seed controls' elem_ids are the action's, with "-count", "-temperature" and "-seed"."""
    with gr.Row():  # first: the action stays on screen above the settings
        run = gr.Button(action, variant="primary", elem_id=elem_id)
        stop = gr.Button("Stop", elem_id=stop_id)
    n_samples = slider(1, MAX_SAMPLES, value=n, step=1, label=what, elem_id=f"{elem_id}-count")
    temperature = slider(0.0, 2.0, value=temperature, step=0.05, label="Temperature", info=TEMPERATURE_INFO,
                         elem_id=f"{elem_id}-temperature")
    guidance_control = guidance_slider(*guidance)  # (default, likeness, elem_id[, most, beyond])
    seed = number_box("Seed", info=seed_info, elem_id=f"{elem_id}-seed")
    return n_samples, temperature, guidance_control, seed, run, stop


def guidance_slider(default: float, likeness: str, elem_id: str, most: float = 8.0, beyond: str = "") -> gr.Slider:
    """The guidance w of classifier-free guidance, with what it trades in one line; the slider stops at
    `most`, where measurement shows quality falls, and `beyond` says what happens past it."""
    return slider(0.0, most, value=default, step=0.5, label="Guidance", elem_id=elem_id,
                  info=f"trades variety for likeness: higher looks more like {likeness} but the images vary less; "
                       f"1 samples the model as trained, 0 ignores {likeness}" + (f"; {beyond}" if beyond else ""))


def checked_guidance(guidance: float | None, default: float, most: float = 8.0) -> float:
    """A guidance slider's value (its default when empty), or a gr.Error outside [0, most]."""
    guidance = default if guidance is None else float(guidance)
    if not 0 <= guidance <= most:
        raise gr.Error(f"guidance must lie between 0 and {most:g}")
    return guidance


def one_source(upload: gr.File, example: gr.Dropdown) -> None:
    """One rule for a file and an example in every tab: picking one clears the other, so the handler
    (`chosen_file`) never uses a file the user no longer means."""
    upload.upload(lambda: None, None, example, api_visibility="private")
    example.input(lambda: None, None, upload, api_visibility="private")


def chosen_file(path: str | None, example: str | None, examples: dict[str, str], ask: str) -> str:
    """The file a handler works on: the upload, else the picked example's; a gr.Error saying `ask` if neither."""
    path = path or examples.get(example or "")
    if not path:
        raise gr.Error(ask)
    return path


def read_upload(path: str, config):
    """`load_upload` for a handler: (image (1, C, H, W), notices), or a gr.Error that says what is wrong."""
    try:
        return load_upload(path, config)
    except UploadError as e:
        raise gr.Error(f"cannot use this file: {e}")


def cached_png(picture: Image.Image, cache_dir: str) -> str:
    """Path of `picture` as a PNG in Gradio's cache folder, named by its content and never rewritten.

    Gradio 6 writes a generated PIL picture to its content-named cache file in place. When the same
    picture comes again (an image measured twice, a stream's last frame shown as the result) the
    rewrite truncates a file the browser may be fetching, and the server breaks off the response
    ("Too little data for declared Content-Length"). Here a picture already cached is left alone and
    a new one is written under a temporary name, then renamed into place in one step.
    """
    data = io.BytesIO()
    picture.save(data, format="PNG")
    folder = Path(cache_dir) / f"pixelcnn-{hashlib.sha256(data.getvalue()).hexdigest()}"
    target = folder / "image.png"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(dir=folder, prefix=".image-", suffix=".png")
        with os.fdopen(handle, "wb") as file:
            file.write(data.getvalue())
        os.replace(staging, target)
    return str(target)


def picture(**options: Any) -> gr.Image:
    """An output gr.Image for a generated PIL picture, shown as PNG and served with `cached_pictures`."""
    return cached_pictures(gr.Image(**{"type": "pil", "interactive": False, "format": "png", **options}))


def cached_pictures(component: gr.Image | gr.Gallery) -> gr.Image | gr.Gallery:
    """`component` with the PIL pictures of its values (captioned or not) written by `cached_png`.

    This replaces the component's own postprocess, which Gradio calls for every value it shows. A
    subclass would say it more plainly, but Gradio writes a .pyi stub beside every module that
    defines a component class, here into the installed package."""
    postprocess = component.postprocess

    def cached(item: Any) -> Any:
        if isinstance(item, tuple):
            return (cached(item[0]), *item[1:])
        return cached_png(item, component.GRADIO_CACHE) if isinstance(item, Image.Image) else item

    def postprocess_cached(value: Any) -> Any:
        return postprocess([cached(item) for item in value] if isinstance(value, list) else cached(value))

    component.postprocess = postprocess_cached
    return component


def paced(events: Iterator[SampleProgress], frame_s: float) -> Iterator[SampleProgress]:
    """Slow motion: pass on every event, each at least frame_s after the one before.

    The cached sampler renders a small image in a fraction of a second, faster than a browser can
    show the rows; pausing between events lets the user watch it. Stop takes effect at the next event.
    """
    last = -math.inf
    for event in events:
        wait = frame_s - (time.perf_counter() - last)
        if wait > 0:
            time.sleep(wait)
        last = time.perf_counter()
        yield event


def throttled(events: Iterator[SampleProgress], min_gap_s: float) -> Iterator[SampleProgress]:
    """Full speed: drop events that come within min_gap_s of the last one shown (the last always shows).

    Each update costs an image encoding and a message, so at most ~1 / min_gap_s a second.
    """
    shown = -math.inf
    for event in events:
        now = time.perf_counter()
        if event.finished or now - shown >= min_gap_s:
            shown = now
            yield event


def pixel_paced(events: Iterator[SampleProgress], pixels: int, images: int) -> Iterator[SampleProgress]:
    """Pixel by pixel: one event per pixel, spread over about PIXEL_BUDGET_S (less for a grid),
    shown as frames at most every PIXEL_FRAME_S; the last event always shows."""
    per_pixel = PIXEL_BUDGET_S / pixels / math.sqrt(images)
    start, shown = time.perf_counter(), -math.inf
    for k, event in enumerate(events, start=1):
        wait = start + k * per_pixel - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        now = time.perf_counter()
        if event.finished or now - shown >= PIXEL_FRAME_S:
            shown = now
            yield event


def play(events: Iterator[SampleProgress], mode: str, pixels: int, images: int) -> Iterator[SampleProgress]:
    """The events of `stream` at the pace of a playback mode."""
    if mode == "row by row":
        return paced(events, ROW_FRAME_S)
    if mode == "pixel by pixel":
        return pixel_paced(events, pixels, images)
    if mode == "full speed":
        return throttled(events, MIN_UPDATE_S)
    raise gr.Error(f"playback must be one of {PLAYBACK}")


class Stopper:
    """Stop, cooperatively: a Stop click marks the session's runs of one tab asked for so far, and a
    marked run's generator sees the mark at its next frame and ends there by itself, keeping what it
    drew and saying where it stopped. A run still waiting in the queue is marked too, because runs
    are counted at the click (`ask`), before they queue; a Stop after a run ended marks no later run.

    Cancelling the Gradio event instead (`cancels=`) raced with the run's own frames: about one Stop
    in four left the outputs marked "Error" and wiped the grid and the gallery.
    """

    def __init__(self) -> None:
        self._asked: dict[str, int] = {}    # runs each session asked for (clicked, or started unasked)
        self._started: dict[str, int] = {}  # runs each session started
        self._stopped: dict[str, int] = {}  # the last run each session's Stop applies to
        self._lock = threading.Lock()

    @staticmethod
    def session(request: gr.Request | None) -> str:
        return getattr(request, "session_hash", None) or "local"

    def ask(self, request: gr.Request | None = None) -> None:
        """The run button's click, before the run queues: a Stop from now on applies to that run."""
        key = self.session(request)
        with self._lock:
            self._asked[key] = self._asked.get(key, 0) + 1

    def start(self, request: gr.Request | None) -> tuple[str, int]:
        """A run begins; returns the key `requested` takes: (session, the run's number)."""
        key = self.session(request)
        with self._lock:
            number = self._started[key] = self._started.get(key, 0) + 1
            self._asked[key] = max(self._asked.get(key, 0), number)  # a run called without a click
        return key, number

    def stop(self, request: gr.Request | None = None) -> None:
        """The Stop button's handler: marks every run of the session asked for so far."""
        key = self.session(request)
        with self._lock:
            self._stopped[key] = self._asked.get(key, 0)

    def requested(self, run: tuple[str, int]) -> bool:
        """Whether Stop was clicked for this run (while it ran, or while it waited in the queue)."""
        key, number = run
        with self._lock:
            return self._stopped.get(key, 0) >= number

    def wire(self, button: gr.Button, run_button: gr.Button) -> gr.events.Dependency:
        """The Stop button marks the runs; it needs no queue slot, so it acts at once. Returns the run
        button's click, which counts the run before it queues: chain the run to it with `.then`."""
        def on_stop(request: gr.Request):  # closures: Gradio reads the gr.Request hint to pass the session
            self.stop(request)

        def on_ask(request: gr.Request):
            self.ask(request)

        button.click(on_stop, None, None, api_visibility="private", queue=False)
        return run_button.click(on_ask, None, None, api_visibility="private", queue=False)


def stop_note(event: SampleProgress, channels: int, width: int) -> str:
    """"Stopped at row r, column c." for the frame a run stopped at."""
    row, col = current_pixel(event, channels, width)
    return f"**Stopped at row {row}, column {col}.**"


def current_pixel(event: SampleProgress, channels: int, width: int) -> tuple[int, int]:
    """(row, column) of the pixel being written at this event (the last one when finished)."""
    pixel = max(0, math.ceil(event.done / channels) - 1)
    return divmod(pixel, width)


def progress_text(event: SampleProgress, n: int, channels: int, width: int) -> str:
    rate = event.done * n / max(event.elapsed, 1e-9)  # elapsed counts generation only: the model's rate
    row, col = current_pixel(event, channels, width)
    where = "" if event.finished else f" · row {row}, column {col}"
    return (f"{event.done:,} of {event.total:,} sub-pixels per image{where} · {rate:,.0f} sub-pixels/s · "
            f"{event.elapsed:.1f} s")


def render_frame(event: SampleProgress, *, nrow: int, levels: int, scale: int, outline: bool) -> Image.Image:
    """The grid of an event, with the pixel being written outlined while it renders."""
    grid = image_grid(event.images, nrow=nrow, levels=levels, scale=scale)
    if outline and not event.finished:
        n, channels, height, width = event.images.shape
        row, col = current_pixel(event, channels, width)
        grid = outline_pixel(grid, row, col, scale=scale, image_size=(height, width), nrow=nrow, count=n)
    return grid
