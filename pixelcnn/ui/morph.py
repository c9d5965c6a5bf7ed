"""Morph two faces: one face turning into another at a fixed seed, so that only the embedding moves
(the paper's section 3.3). Uploads are processed in memory and not kept."""

from dataclasses import dataclass

import gradio as gr
import numpy as np
import torch
from PIL import Image

from ..faces import PORTRAIT_GUIDANCE, Face
from ..images import display_scale, image_grid
from ..sampling import between, interpolate
from .common import (Page, Stopper, Tab, guidance_slider, picture, play, progress_text, refused_note, refusing, slider,
                     stop_note)
from .models import Explorer
from .portraits import PRIVACY, checked_guidance, face_examples, photo_with_box, portrait_model, read_face

MAX_STEPS = 10
STOP = Stopper()


@dataclass
class MorphTab:
    upload_a: gr.File
    example_a: gr.Dropdown
    upload_b: gr.File
    example_b: gr.Dropdown
    steps: gr.Slider
    seed: gr.Number
    generate: gr.Button
    stop: gr.Button
    faces: gr.Image
    row: gr.Image
    progress: gr.Markdown
    alpha: gr.Slider
    single: gr.Image
    guidance: gr.Slider


def layout(explorer: Explorer) -> MorphTab:
    names = list(face_examples(explorer))
    gr.Markdown("Two faces, one seed: every portrait in the row uses the same random numbers, and only the "
                f"embedding moves from the first person to the second. {PRIVACY}")
    with gr.Row():
        with gr.Column():
            upload_a = gr.File(label="First face", file_types=["image"], type="filepath", elem_id="face-a")
            example_a = gr.Dropdown(names, value=names[0] if names else None, label="…or an example",
                                    allow_custom_value=True, elem_id="example-a")
        with gr.Column():
            upload_b = gr.File(label="Second face", file_types=["image"], type="filepath", elem_id="face-b")
            example_b = gr.Dropdown(names, value=names[1] if len(names) > 1 else None, label="…or an example",
                                    allow_custom_value=True, elem_id="example-b")
        with gr.Column():
            steps = slider(2, MAX_STEPS, value=6, step=1, label="Steps (both ends included)")
            seed = gr.Number(value=0, precision=0, label="Seed")
            guidance = guidance_slider(PORTRAIT_GUIDANCE, "the two people", "morph-guidance")
            with gr.Row():
                generate = gr.Button("Morph", variant="primary", elem_id="morph")
                stop = gr.Button("Stop", elem_id="morph-stop")
    faces = picture(label="The two faces found", buttons=[])
    row = picture(show_label=False, buttons=["download"], elem_id="morph-row", elem_classes=["pixelated"])
    progress = gr.Markdown(elem_id="morph-progress")
    with gr.Row():
        alpha = slider(0.0, 1.0, value=0.5, step=0.05, label="Anywhere between the two (same seed)",
                          elem_id="alpha")
        single = picture(show_label=False, buttons=[], elem_id="morph-single", elem_classes=["pixelated"])
    return MorphTab(upload_a, example_a, upload_b, example_b, steps, seed, generate, stop, faces, row,
                            progress, alpha, single, guidance)


def two_faces(explorer: Explorer, a: tuple, b: tuple) -> tuple[Face, Face, Image.Image]:
    first, second = read_face(explorer, *a), read_face(explorer, *b)
    side = [photo_with_box(f, 200) for f in (first, second)]
    canvas = Image.new("RGB", (side[0].width + side[1].width + 10, max(s.height for s in side)), (255, 255, 255))
    canvas.paste(side[0], (0, 0))
    canvas.paste(side[1], (side[0].width + 10, 0))
    return first, second, canvas


def morph(explorer: Explorer, path_a: str | None, example_a: str | None, path_b: str | None,
          example_b: str | None, steps: float, seed: float, guidance: float = PORTRAIT_GUIDANCE,
          request: gr.Request | None = None):
    """Stream (both faces, the interpolation row, progress)."""
    model = portrait_model(explorer)
    cfg = model.config
    steps = int(steps)
    if not 2 <= steps <= MAX_STEPS:
        raise gr.Error(f"choose 2 to {MAX_STEPS} steps")
    guidance = checked_guidance(guidance)
    first, second, canvas = two_faces(explorer, (path_a, example_a), (path_b, example_b))
    events = interpolate(model, torch.from_numpy(first.embedding), torch.from_numpy(second.embedding), steps,
                         seed=int(seed or 0), guidance=guidance)
    scale = display_scale(cfg.width, steps, target=900)
    key = STOP.start(request)
    for event in play(events, "row by row", cfg.height * cfg.width, steps):
        grid = image_grid(event.images, nrow=steps, levels=cfg.levels, scale=scale)
        text = progress_text(event, steps, cfg.image_channels, cfg.width)
        if not event.finished and STOP.requested(key):
            events.close()
            yield canvas, grid, f"{stop_note(event, cfg.image_channels, cfg.width)} {text}"
            return
        yield canvas, grid, text + (" · done" if event.finished else "")


def at_alpha(explorer: Explorer, path_a: str | None, example_a: str | None, path_b: str | None,
             example_b: str | None, alpha: float, seed: float, guidance: float = PORTRAIT_GUIDANCE) -> Image.Image:
    """The portrait at one point between the two faces, with the row's seed."""
    model = portrait_model(explorer)
    first, second = read_face(explorer, path_a, example_a), read_face(explorer, path_b, example_b)
    image = between(model, torch.from_numpy(first.embedding), torch.from_numpy(second.embedding),
                    float(np.clip(alpha, 0, 1)), seed=int(seed or 0), guidance=checked_guidance(guidance))
    return image_grid(image, nrow=1, levels=model.config.levels, padding=0,
                      scale=display_scale(model.config.width, target=256, padding=0))


def wire(tab: MorphTab, page: Page) -> None:
    explorer = page.explorer
    faces_in = [tab.upload_a, tab.example_a, tab.upload_b, tab.example_b]

    def on_morph(path_a, example_a, path_b, example_b, steps: float, seed: float, guidance: float,
                 request: gr.Request):
        yield from morph(explorer, path_a, example_a, path_b, example_b, steps, seed, guidance, request)

    def on_alpha(path_a, example_a, path_b, example_b, alpha: float, seed: float, guidance: float):
        return at_alpha(explorer, path_a, example_a, path_b, example_b, alpha, seed, guidance)

    run = STOP.wire(tab.stop, tab.generate).then(
        refusing(on_morph, lambda message: (None, None, refused_note(message))),
        [*faces_in, tab.steps, tab.seed, tab.guidance], [tab.faces, tab.row, tab.progress], api_name="interpolate",
        concurrency_limit=2)
    tab.alpha.release(refusing(on_alpha, lambda message: None), [*faces_in, tab.alpha, tab.seed, tab.guidance],
                      tab.single, api_name="between")
    # after the row, the portrait at alpha; a refused row has said why already
    run.then(refusing(on_alpha, lambda message: None, quiet=True), [*faces_in, tab.alpha, tab.seed, tab.guidance],
             tab.single, api_visibility="private")
    for upload, example in ((tab.upload_a, tab.example_a), (tab.upload_b, tab.example_b)):
        upload.upload(lambda: None, None, example, api_visibility="private")


TAB = Tab("Morph two faces", layout, wire)
