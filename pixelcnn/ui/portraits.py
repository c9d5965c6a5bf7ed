"""Portraits from a photo: new portraits of a person from one photo (the paper's section 3.3), and the
face inputs that the Morph tab shares. Uploads are processed in memory and not kept."""

import math
from dataclasses import dataclass

import gradio as gr
from PIL import Image, ImageDraw

from ..conditioning import condition_class
from ..faces import (EMBEDDING_DIM, PORTRAIT_GUIDANCE, PORTRAIT_GUIDANCE_MOST, PORTRAIT_TEMPERATURE, SKETCH_STRENGTH,
                     SKETCH_TEMPERATURE, Face, default_embedder, portraits)
from ..hub import LocalModel
from ..images import UploadError, display_scale, open_image
from ..sketch import PortraitModel
from .common import checked_guidance as common_checked_guidance
from .common import (Page, Stopper, Tab, checked_count, checked_seed, checked_temperature, chosen_file, one_source,
                     picture, play, progress_text, refused_note, refusing, render_frame, sampling_controls, slider,
                     stop_note)
from .models import Explorer

STOP = Stopper()
STRENGTH_MOST = 24.0  # the hold to the sketch: 20 by default; 24 is the most measured (docs/portraits.md)
PRIVACY = ("Photos are processed in memory for this request and not kept: nothing is written but the "
           "request's temporary files.")


def is_portrait_model(local: LocalModel) -> bool:
    """A portrait model (a face sketch and a PixelCNN), or a PixelCNN conditioned on face embeddings."""
    if local.architecture == PortraitModel.architecture:
        return True
    cfg = local.config
    vectors = hasattr(cfg, "conditioning") and condition_class(cfg.conditioning).batch_field == "vectors"
    return vectors and cfg.cond_dim == EMBEDDING_DIM


def portrait_label(explorer: Explorer) -> str | None:
    """The label of the first local portrait model (a portrait model with a sketch first)."""
    found = [label for label, local in explorer.local.items() if is_portrait_model(local)]
    found.sort(key=lambda label: explorer.local[label].architecture != PortraitModel.architecture)
    return found[0] if found else None


def portrait_model(explorer: Explorer):
    """The shipped portrait model, or a clear error."""
    label = portrait_label(explorer)
    if label is None:
        raise gr.Error(f"no portrait model in {explorer.weights_dir}: it needs a model conditioned on "
                       f"{EMBEDDING_DIM}-number face embeddings (weights/faces-portrait)")
    return explorer.model(label)


def face_examples(explorer: Explorer) -> dict[str, str]:
    """Example faces shipped with the portrait model (photos of held-out people), by name."""
    label = portrait_label(explorer)
    return explorer.examples(label) if label else {}


def measured_likeness(explorer: Explorer) -> str:
    """What the portrait model's card measured at the defaults, in one sentence (or nothing)."""
    from ..experiments.portraits import Setting

    label = portrait_label(explorer)
    local = explorer.local[label] if label else None
    entries = ((local.metrics or {}).get("portraits", {}) if local else {}) or {}
    key = Setting().key(local is not None and local.architecture == PortraitModel.architecture)
    for name, p in entries.items():
        figures = p.get("guidance", {}).get(key) if isinstance(p, dict) else None
        if figures:
            return (f"Measured on {p['people']} people it never saw ({name}): at the defaults, "
                    f"{figures['top1']:.0%} of its portraits are recognised as their person by a face-recognition "
                    f"network ({figures['top5']:.0%} among its five best guesses; chance "
                    f"{p['identification_chance']:.0%}, real 32x32 photos {p['identification_real_32px']:.0%}). ")
    return ""


def read_face(explorer: Explorer, path: str | None, example: str | None) -> Face:
    """The largest face of an uploaded photo or a shipped example; gr.Error if none."""
    path = chosen_file(path, example, face_examples(explorer), "upload a photo of a face, or pick an example")
    try:
        photo, notices = open_image(path)
        face = default_embedder().embed(photo)
    except UploadError as e:
        raise gr.Error(f"cannot use this photo: {e}")
    face.notices[:0] = notices
    return face


def photo_with_box(face: Face, width: int = 320) -> Image.Image:
    """The photo (upright), scaled to `width`, with the detected face outlined."""
    photo = face.photo.convert("RGB")
    factor = width / photo.width
    small = photo.resize((width, max(1, round(photo.height * factor))), Image.LANCZOS)
    draw = ImageDraw.Draw(small)
    draw.rectangle([round(v * factor) for v in face.box], outline=(40, 200, 255), width=3)
    return small


def face_note(face: Face) -> str:
    notes = "; ".join(face.notices)
    return f"Face found{' (' + notes + ')' if notes else ''}."


@dataclass
class PortraitsTab:
    upload: gr.File
    example: gr.Dropdown
    n_samples: gr.Slider
    temperature: gr.Slider
    seed: gr.Number
    generate: gr.Button
    stop: gr.Button
    photo: gr.Image
    crop: gr.Image
    portraits: gr.Image
    progress: gr.Markdown
    guidance: gr.Slider
    strength: gr.Slider
    sketch_temperature: gr.Slider
    sketches: gr.Image


SKETCH_CAPTION = ("**The sketches** (right): the face the embedding describes, drawn by a second network at one "
                  "pose and light per portrait. Each portrait below holds to its sketch and adds the detail.")


def checked_guidance(guidance: float | None) -> float:
    """The portrait guidance slider's value, or a gr.Error."""
    return common_checked_guidance(guidance, PORTRAIT_GUIDANCE, PORTRAIT_GUIDANCE_MOST)


# (default, likeness, elem_id, most, beyond) of the portrait tabs' guidance slider
GUIDANCE_BEYOND = f"above {PORTRAIT_GUIDANCE_MOST:g} the portraits were measured to look less like the person"


def portrait_guidance(likeness: str, elem_id: str) -> tuple:
    return PORTRAIT_GUIDANCE, likeness, elem_id, PORTRAIT_GUIDANCE_MOST, GUIDANCE_BEYOND


def sketch_controls(elem_id: str) -> tuple[gr.Slider, gr.Slider]:
    """(how closely the portraits hold to their sketches, how far the sketches' pose and light stray)."""
    strength = slider(0.0, STRENGTH_MOST, value=SKETCH_STRENGTH, step=1.0, label="Hold to the sketch",
                      elem_id=f"{elem_id}-strength",
                      info="how closely each portrait follows its sketch: 0 lets the pixel model draw alone (it "
                           "passes little of the person on); higher keeps the person, and the portraits vary less")
    sketch_temperature = slider(0.0, 1.5, value=SKETCH_TEMPERATURE, step=0.1, label="Pose and light",
                                elem_id=f"{elem_id}-pose",
                                info="how far each sketch strays from the person's typical photo: 0 gives every "
                                     "portrait one sketch, 1 varies as much as photos do")
    return strength, sketch_temperature


def checked_sketch(strength: float | None, sketch_temperature: float | None) -> tuple[float, float]:
    """The two sketch sliders' values, or a gr.Error."""
    strength = SKETCH_STRENGTH if strength is None else float(strength)
    sketch_temperature = SKETCH_TEMPERATURE if sketch_temperature is None else float(sketch_temperature)
    if not (0 <= strength <= STRENGTH_MOST and 0 <= sketch_temperature <= 1.5):
        raise gr.Error(f"the hold to the sketch lies between 0 and {STRENGTH_MOST:g}, pose and light between 0 and 1.5")
    return strength, sketch_temperature


def layout(explorer: Explorer) -> PortraitsTab:
    gr.Markdown(f"Upload a photo of a face: a sketch network draws the face its embedding describes, and the pixel "
                f"model draws new portraits of that person, pixel by pixel, holding to the sketch (the paper's "
                f"section 3.3, with a sketch that keeps the person). The shipped weights are small models trained on "
                f"a CPU. {measured_likeness(explorer)}{PRIVACY}", elem_id="face-intro")
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="face-upload", height=130)
            example = gr.Dropdown(list(face_examples(explorer)), value=None, label="…or an example face "
                                  "(people the model never saw)", allow_custom_value=True, elem_id="face-example")
            n_samples, temperature, guidance, seed, generate, stop = sampling_controls(
                "Portraits", 8, "Draw portraits", "face-generate", "face-stop",
                portrait_guidance("the person", "face-guidance"), temperature=PORTRAIT_TEMPERATURE)
            strength, sketch_temperature = sketch_controls("face")
        with gr.Column(scale=2):
            with gr.Row():
                # small: the portraits below must fit on the screen with them
                photo = picture(label="The face found", buttons=[], height=200)
                crop = picture(label="What the embedder sees", buttons=[], height=200)
                sketches = picture(label="The sketches", buttons=[], height=200, elem_id="face-sketches",
                                   elem_classes=["pixelated"])
            gr.Markdown(SKETCH_CAPTION, elem_id="face-sketch-caption")
            portraits = picture(show_label=False, buttons=["download"], elem_id="face-portraits",
                                elem_classes=["pixelated"])
            progress = gr.Markdown(elem_id="face-progress")
    return PortraitsTab(upload, example, n_samples, temperature, seed, generate, stop, photo, crop, portraits, progress,
                        guidance, strength, sketch_temperature, sketches)


def sketch_grid(sketches, columns: int, scale: int):
    """The sketches (n, C, H, W) in [0, 1] as a grid like the portraits', or None for a model without one."""
    from ..images import image_grid

    if sketches is None:
        return None
    return image_grid((sketches.cpu() * 255).round().long(), nrow=columns, scale=scale)


def draw_portraits(explorer: Explorer, path: str | None, example: str | None, n: float, temperature: float,
                   seed: float, guidance: float = PORTRAIT_GUIDANCE, strength: float = SKETCH_STRENGTH,
                   sketch_temperature: float = SKETCH_TEMPERATURE, request: gr.Request | None = None):
    """Stream (photo with box, aligned crop, portraits grid, progress, sketches grid) for one face."""
    model = portrait_model(explorer)
    cfg = model.config
    n = checked_count(n, "portraits")
    guidance = checked_guidance(guidance)
    strength, sketch_temperature = checked_sketch(strength, sketch_temperature)
    face = read_face(explorer, path, example)
    columns = math.ceil(math.sqrt(n))
    scale = display_scale(cfg.width, columns)
    drawn = portraits(model, face.embedding, n, seed=checked_seed(seed), temperature=checked_temperature(temperature),
                      guidance=guidance, strength=strength, sketch_temperature=sketch_temperature)
    events, sketched = drawn.events, sketch_grid(drawn.sketches, columns, scale)
    boxed, note = photo_with_box(face), face_note(face)
    key = STOP.start(request)
    for event in play(events, "row by row", cfg.height * cfg.width, n):
        grid = render_frame(event, nrow=columns, levels=cfg.levels, scale=scale, outline=False)
        text = progress_text(event, n, cfg.image_channels, cfg.width)
        if not event.finished and STOP.requested(key):
            events.close()
            yield boxed, face.crop, grid, f"{stop_note(event, cfg.image_channels, cfg.width)} {note} {text}", sketched
            return
        yield boxed, face.crop, grid, f"{note} {text}" + (" · done" if event.finished else ""), sketched


def wire(tab: PortraitsTab, page: Page) -> None:
    explorer = page.explorer

    def on_generate(path: str | None, example: str | None, n: float, temperature: float, seed: float,
                    guidance: float, strength: float, sketch_temperature: float, request: gr.Request):
        yield from draw_portraits(explorer, path, example, n, temperature, seed, guidance, strength, sketch_temperature,
                                  request)

    nothing_drawn = lambda message: (None, None, None, refused_note(message), None)  # noqa: E731
    STOP.wire(tab.stop, tab.generate).then(
        refusing(on_generate, nothing_drawn), [tab.upload, tab.example, tab.n_samples, tab.temperature, tab.seed,
                                               tab.guidance, tab.strength, tab.sketch_temperature],
        [tab.photo, tab.crop, tab.portraits, tab.progress, tab.sketches], api_name="portraits", concurrency_limit=2)
    one_source(tab.upload, tab.example)


TAB = Tab("Portraits from a photo", layout, wire)
