"""Portraits from a photo: new portraits of a person from one photo (the paper's section 3.3), and the
face inputs that the Morph tab shares. Uploads are processed in memory and not kept."""

import math
from dataclasses import dataclass

import gradio as gr
from PIL import Image, ImageDraw

from ..conditioning import condition_class
from ..faces import EMBEDDING_DIM, PORTRAIT_GUIDANCE, Face, default_embedder, portraits
from ..images import UploadError, display_scale, open_image
from .common import (Page, Stopper, Tab, checked_count, picture, play, progress_text, refused_note, refusing,
                     render_frame, sampling_controls, stop_note)
from .models import Explorer

STOP = Stopper()
PRIVACY = ("Photos are processed in memory for this request and not kept: nothing is written but the "
           "request's temporary files.")


def portrait_model(explorer: Explorer):
    """The first shipped model conditioned on face embeddings, or a clear error."""
    for label, local in explorer.local.items():
        cfg = local.config
        vectors = hasattr(cfg, "conditioning") and condition_class(cfg.conditioning).batch_field == "vectors"
        if vectors and cfg.cond_dim == EMBEDDING_DIM:
            return explorer.model(label)
    raise gr.Error(f"no portrait model in {explorer.weights_dir}: it needs a model conditioned on "
                   f"{EMBEDDING_DIM}-number face embeddings (weights/faces-portrait)")


def face_examples(explorer: Explorer) -> dict[str, str]:
    """Example faces shipped with the portrait model (photos of held-out people), by name."""
    for label, local in explorer.local.items():
        if getattr(local.config, "cond_dim", None) == EMBEDDING_DIM:
            return explorer.examples(label)
    return {}


def measured_likeness(explorer: Explorer) -> str:
    """What the portrait model's card measured at the default guidance, in one sentence (or nothing)."""
    for local in explorer.local.values():
        if getattr(local.config, "cond_dim", None) != EMBEDDING_DIM:
            continue
        entries = (local.metrics or {}).get("portraits", {})
        for name, p in entries.items():
            figures = p.get("guidance", {}).get(f"{PORTRAIT_GUIDANCE:g}") if isinstance(p, dict) else None
            if figures:
                return (f"Measured on {p['people']} people it never saw ({name}): at the default guidance "
                        f"{PORTRAIT_GUIDANCE:g}, {figures['top1']:.0%} of its portraits are recognised as their "
                        f"person by a face-recognition network ({figures['top5']:.0%} among its five best guesses; "
                        f"chance {p['identification_chance']:.0%}, real 32x32 photos "
                        f"{p['identification_real_32px']:.0%}). ")
    return ""


def read_face(explorer: Explorer, path: str | None, example: str | None) -> Face:
    """The largest face of an uploaded photo or a shipped example; gr.Error if none."""
    path = path or face_examples(explorer).get(example or "")
    if not path:
        raise gr.Error("upload a photo of a face, or pick an example")
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


def checked_guidance(guidance: float | None) -> float:
    """The guidance slider's value, or a gr.Error."""
    guidance = PORTRAIT_GUIDANCE if guidance is None else float(guidance)
    if not 0 <= guidance <= 8:
        raise gr.Error("guidance must lie between 0 and 8")
    return guidance


def layout(explorer: Explorer) -> PortraitsTab:
    gr.Markdown(f"Upload a photo of a face: the model draws new portraits of that person, pixel by pixel, "
                f"from the face embedding alone (the paper's section 3.3). The shipped weights are a small model "
                f"trained on a CPU. {measured_likeness(explorer)}{PRIVACY}", elem_id="face-intro")
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="face-upload", height=130)
            example = gr.Dropdown(list(face_examples(explorer)), value=None, label="…or an example face "
                                  "(people the model never saw)", allow_custom_value=True, elem_id="face-example")
            n_samples, temperature, guidance, seed, generate, stop = sampling_controls(
                "Portraits", 8, "Draw portraits", "face-generate", "face-stop",
                (PORTRAIT_GUIDANCE, "the person", "face-guidance"))
        with gr.Column(scale=2):
            with gr.Row():
                # small: the portraits below must fit on the screen with them
                photo = picture(label="The face found", buttons=[], height=200)
                crop = picture(label="What the embedder sees", buttons=[], height=200)
            portraits = picture(show_label=False, buttons=["download"], elem_id="face-portraits",
                                elem_classes=["pixelated"])
            progress = gr.Markdown(elem_id="face-progress")
    return PortraitsTab(upload, example, n_samples, temperature, seed, generate, stop, photo, crop, portraits, progress,
                   guidance)


def draw_portraits(explorer: Explorer, path: str | None, example: str | None, n: float, temperature: float,
                   seed: float, guidance: float = PORTRAIT_GUIDANCE, request: gr.Request | None = None):
    """Stream (photo with box, aligned crop, portraits grid, progress) for one face."""
    model = portrait_model(explorer)
    cfg = model.config
    n = checked_count(n, "portraits")
    guidance = checked_guidance(guidance)
    face = read_face(explorer, path, example)
    columns = math.ceil(math.sqrt(n))
    scale = display_scale(cfg.width, columns)
    events = portraits(model, face.embedding, n, seed=int(seed or 0), temperature=float(temperature or 0),
                       guidance=guidance).events
    boxed, note = photo_with_box(face), face_note(face)
    key = STOP.start(request)
    for event in play(events, "row by row", cfg.height * cfg.width, n):
        grid = render_frame(event, nrow=columns, levels=cfg.levels, scale=scale, outline=False)
        text = progress_text(event, n, cfg.image_channels, cfg.width)
        if not event.finished and STOP.requested(key):
            events.close()
            yield boxed, face.crop, grid, f"{stop_note(event, cfg.image_channels, cfg.width)} {note} {text}"
            return
        yield boxed, face.crop, grid, f"{note} {text}" + (" · done" if event.finished else "")


def wire(tab: PortraitsTab, page: Page) -> None:
    explorer = page.explorer

    def on_generate(path: str | None, example: str | None, n: float, temperature: float, seed: float,
                    guidance: float, request: gr.Request):
        yield from draw_portraits(explorer, path, example, n, temperature, seed, guidance, request)

    nothing_drawn = lambda message: (None, None, None, refused_note(message))  # noqa: E731
    STOP.wire(tab.stop, tab.generate).then(
        refusing(on_generate, nothing_drawn), [tab.upload, tab.example, tab.n_samples, tab.temperature, tab.seed,
                                               tab.guidance],
        [tab.photo, tab.crop, tab.portraits, tab.progress], api_name="portraits", concurrency_limit=2)
    tab.upload.upload(lambda: None, None, tab.example, api_visibility="private")


TAB = Tab("Portraits from a photo", layout, wire)
