"""Morph two faces: one face turning into another at a fixed seed, so that only the embedding moves
(the paper's section 3.3); the row of sketches above shows what the portraits hold to. Uploads are
processed in memory and not kept."""

from dataclasses import dataclass

import gradio as gr
import numpy as np
from PIL import Image

from ..faces import PORTRAIT_GUIDANCE, SKETCH_STRENGTH, SKETCH_TEMPERATURE, Face, morph, portrait_between
from ..images import display_scale, image_grid
from .common import (Page, Stopper, Tab, checked_seed, guidance_slider, number_box, one_source, picture, play,
                     progress_text, refused_note, refusing, slider, stop_note)
from .models import Explorer
from .portraits import (PRIVACY, checked_guidance, checked_sketch, face_examples, photo_with_box, portrait_guidance,
                        portrait_model, read_face, sketch_controls, sketch_grid)

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
    strength: gr.Slider
    sketch_temperature: gr.Slider
    sketches: gr.Image


def layout(explorer: Explorer) -> MorphTab:
    names = list(face_examples(explorer))
    gr.Markdown("Two faces, one seed: every portrait in the row uses the same random numbers and the same pose and "
                "light, and only the embedding moves from the first person to the second. The sketch of each "
                f"step morphs, and the portrait below it follows. {PRIVACY}")
    with gr.Row():
        with gr.Column():
            upload_a = gr.File(label="First face", file_types=["image"], type="filepath", elem_id="face-a", height=110)
            example_a = gr.Dropdown(names, value=names[0] if names else None, label="…or an example",
                                    allow_custom_value=True, elem_id="example-a")
        with gr.Column():
            upload_b = gr.File(label="Second face", file_types=["image"], type="filepath", elem_id="face-b", height=110)
            example_b = gr.Dropdown(names, value=names[1] if len(names) > 1 else None, label="…or an example",
                                    allow_custom_value=True, elem_id="example-b")
        with gr.Column():
            with gr.Row():
                generate = gr.Button("Morph", variant="primary", elem_id="morph")
                stop = gr.Button("Stop", elem_id="morph-stop")
            steps = slider(2, MAX_STEPS, value=6, step=1, label="Steps (both ends included)", elem_id="morph-steps")
            seed = number_box("Seed", elem_id="morph-seed")
            # closed, so that the row and the portrait between the two stay above the fold
            with gr.Accordion("Guidance, sketch, pose and light", open=False, elem_id="morph-settings"):
                guidance = guidance_slider(*portrait_guidance("the two people", "morph-guidance"))
                strength, sketch_temperature = sketch_controls("morph")
    with gr.Row():
        with gr.Column(scale=3):
            faces = picture(label="The two faces found", buttons=[], height=150)
            sketches = picture(label="The sketches, from one embedding to the other", buttons=[],
                               elem_id="morph-sketches", elem_classes=["pixelated"])
            row = picture(label="The portraits, each holding to the sketch above it", buttons=["download"],
                          elem_id="morph-row", elem_classes=["pixelated"])
            progress = gr.Markdown(elem_id="morph-progress")
        with gr.Column(scale=1):
            alpha = slider(0.0, 1.0, value=0.5, step=0.05, label="Anywhere between the two (same seed)",
                           elem_id="alpha")
            single = picture(show_label=False, buttons=[], elem_id="morph-single", elem_classes=["pixelated"])
    return MorphTab(upload_a, example_a, upload_b, example_b, steps, seed, generate, stop, faces, row, progress, alpha,
                    single, guidance, strength, sketch_temperature, sketches)


def two_faces(explorer: Explorer, a: tuple, b: tuple) -> tuple[Face, Face, Image.Image]:
    first, second = read_face(explorer, *a), read_face(explorer, *b)
    side = [photo_with_box(f, 200) for f in (first, second)]
    canvas = Image.new("RGB", (side[0].width + side[1].width + 10, max(s.height for s in side)), (255, 255, 255))
    canvas.paste(side[0], (0, 0))
    canvas.paste(side[1], (side[0].width + 10, 0))
    return first, second, canvas


def checked_steps(steps: float | None) -> int:
    if steps is None or not 2 <= float(steps) <= MAX_STEPS:
        raise gr.Error(f"choose 2 to {MAX_STEPS} steps")
    return int(round(float(steps)))


def morph_row(explorer: Explorer, path_a: str | None, example_a: str | None, path_b: str | None,
              example_b: str | None, steps: float, seed: float, guidance: float = PORTRAIT_GUIDANCE,
              strength: float = SKETCH_STRENGTH, sketch_temperature: float = SKETCH_TEMPERATURE,
              request: gr.Request | None = None):
    """Stream (both faces, the portraits row, progress, the sketches row)."""
    model = portrait_model(explorer)
    cfg = model.config
    steps, seed, guidance = checked_steps(steps), checked_seed(seed), checked_guidance(guidance)
    strength, sketch_temperature = checked_sketch(strength, sketch_temperature)
    first, second, canvas = two_faces(explorer, (path_a, example_a), (path_b, example_b))
    sketches, events = morph(model, first.embedding, second.embedding, steps, seed=seed, guidance=guidance,
                             strength=strength, sketch_temperature=sketch_temperature)
    scale = display_scale(cfg.width, steps, target=900)
    sketched = sketch_grid(sketches, steps, scale)
    key = STOP.start(request)
    for event in play(events, "row by row", cfg.height * cfg.width, steps):
        grid = image_grid(event.images, nrow=steps, levels=cfg.levels, scale=scale)
        text = progress_text(event, steps, cfg.image_channels, cfg.width)
        if not event.finished and STOP.requested(key):
            events.close()
            yield canvas, grid, f"{stop_note(event, cfg.image_channels, cfg.width)} {text}", sketched
            return
        yield canvas, grid, text + (" · done" if event.finished else ""), sketched


def at_alpha(explorer: Explorer, path_a: str | None, example_a: str | None, path_b: str | None,
             example_b: str | None, alpha: float, seed: float, guidance: float = PORTRAIT_GUIDANCE,
             strength: float = SKETCH_STRENGTH, sketch_temperature: float = SKETCH_TEMPERATURE) -> Image.Image:
    """The portrait at one point between the two faces, with the row's seed, pose and light."""
    model = portrait_model(explorer)
    strength, sketch_temperature = checked_sketch(strength, sketch_temperature)
    first, second = read_face(explorer, path_a, example_a), read_face(explorer, path_b, example_b)
    alpha = 0.5 if alpha is None else float(np.clip(alpha, 0, 1))
    image, _ = portrait_between(model, first.embedding, second.embedding, alpha, seed=checked_seed(seed),
                                guidance=checked_guidance(guidance), strength=strength,
                                sketch_temperature=sketch_temperature)
    return image_grid(image, nrow=1, levels=model.config.levels, padding=0,
                      scale=display_scale(model.config.width, target=256, padding=0))


def wire(tab: MorphTab, page: Page) -> None:
    explorer = page.explorer
    faces_in = [tab.upload_a, tab.example_a, tab.upload_b, tab.example_b]
    settings = [tab.seed, tab.guidance, tab.strength, tab.sketch_temperature]

    def on_morph(path_a, example_a, path_b, example_b, steps: float, seed: float, guidance: float, strength: float,
                 sketch_temperature: float, request: gr.Request):
        yield from morph_row(explorer, path_a, example_a, path_b, example_b, steps, seed, guidance, strength,
                             sketch_temperature, request)

    def on_alpha(path_a, example_a, path_b, example_b, alpha: float, seed: float, guidance: float, strength: float,
                 sketch_temperature: float):
        return at_alpha(explorer, path_a, example_a, path_b, example_b, alpha, seed, guidance, strength,
                        sketch_temperature)

    run = STOP.wire(tab.stop, tab.generate).then(
        refusing(on_morph, lambda message: (None, None, refused_note(message), None)),
        [*faces_in, tab.steps, *settings], [tab.faces, tab.row, tab.progress, tab.sketches], api_name="interpolate",
        concurrency_limit=2)
    # every way of moving the slider (a drag, a typed value, the arrow keys) redraws; the last one wins
    tab.alpha.input(refusing(on_alpha, lambda message: None), [*faces_in, tab.alpha, *settings], tab.single,
                    api_name="between", trigger_mode="always_last")
    # after the row, the portrait at alpha; a refused row has said why already
    run.then(refusing(on_alpha, lambda message: None, quiet=True), [*faces_in, tab.alpha, *settings], tab.single,
             api_visibility="private")
    for upload, example in ((tab.upload_a, tab.example_a), (tab.upload_b, tab.example_b)):
        one_source(upload, example)


TAB = Tab("Morph two faces", layout, wire)
