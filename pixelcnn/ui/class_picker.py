"""Class picker: choose a class and watch a grid of samples render, row by row or pixel by pixel."""

import math
from dataclasses import dataclass

import gradio as gr

from ..images import display_scale
from ..sampling import CLASS_GUIDANCE, stream
from .common import (PLAYBACK, SUBPIXEL_NOTE, Page, Stopper, Tab, checked_count, checked_guidance, checked_seed,
                     checked_temperature, gallery, picture, play, progress_text, refused_note, refusing, render_frame,
                     sampling_controls, stop_note)
from .models import Explorer, class_choices, sampling_condition

RECENT = 6
STOP = Stopper()
# where the guidance slider stops, by measurement: on the shipped digits model 96% of samples read as
# their class at w = 2, 91% at 3, 75% at 5 and 41% at 8 (weights/mnist-class/README.md)
GUIDANCE_MOST = 4.0
GUIDANCE_BEYOND = (f"it stops at {GUIDANCE_MOST:g}: further on, the images break up (measured on the digits model's "
                   f"card)")


@dataclass
class ClassPickerTab:
    class_name: gr.Dropdown
    n_samples: gr.Slider
    temperature: gr.Slider
    seed: gr.Number
    playback: gr.Radio
    generate: gr.Button
    stop: gr.Button
    samples: gr.Image
    progress: gr.Markdown
    history: gr.Gallery
    history_state: gr.State
    guidance: gr.Slider

    def model_outputs(self) -> list:
        """What `model_changed` updates."""
        return [self.class_name, self.samples, self.progress, self.history, self.history_state]


def layout(explorer: Explorer) -> ClassPickerTab:
    config = explorer.model(explorer.first).config if explorer.first else None
    names = class_choices(config) if config else []
    with gr.Row():
        with gr.Column(scale=1):
            class_name = gr.Dropdown(names, value=names[0] if names else None, label="Class",
                                     allow_custom_value=True, elem_id="class-name")
            playback = gr.Radio(PLAYBACK, value=PLAYBACK[0], label="Playback", elem_id="playback",
                                info="the model is faster than the eye: row by row and pixel by pixel slow the "
                                     "display down, never the pixels")
            n_samples, temperature, guidance, seed, generate, stop = sampling_controls(
                "Samples", 8, "Generate", "generate", "stop",
                (CLASS_GUIDANCE, "the class", "class-guidance", GUIDANCE_MOST, GUIDANCE_BEYOND),
                seed_info="the seed alone fixes the pixels")
        with gr.Column(scale=2):
            samples = picture(show_label=False, buttons=["download"], elem_id="samples", elem_classes=["pixelated"])
            progress = gr.Markdown(SUBPIXEL_NOTE, elem_id="progress")
    history = gallery("Recent grids (seed in the caption)", "history")
    return ClassPickerTab(class_name, n_samples, temperature, seed, playback, generate, stop, samples, progress,
                          history, gr.State([]), guidance)


def generate(explorer: Explorer, choice: str, name: str | None, n: float, temperature: float, seed: float,
             recent: list, mode: str = PLAYBACK[0], guidance: float = CLASS_GUIDANCE, request: gr.Request = None):
    """Stream a grid of n samples: yields (grid, progress, gallery, gallery state)."""
    model = explorer.model(choice)
    cfg = model.config
    n = checked_count(n, "samples")
    temperature = checked_temperature(temperature)
    if mode not in PLAYBACK:
        raise gr.Error(f"playback must be one of {PLAYBACK}")
    cond = sampling_condition(model, name)
    guidance = 1.0 if cond is None else checked_guidance(guidance, CLASS_GUIDANCE, GUIDANCE_MOST)
    seed = checked_seed(seed)
    columns = math.ceil(math.sqrt(n))
    scale = display_scale(cfg.width, columns)
    every = cfg.image_channels if mode == "pixel by pixel" else None  # one event per pixel, or per row
    events = stream(model, n, cond, seed=seed, temperature=temperature, every=every, guidance=guidance)
    label = f"{name or 'sample'} · seed {seed}" + (f" · guidance {guidance:g}" if guidance != 1 else "")
    key = STOP.start(request)
    for event in play(events, mode, cfg.height * cfg.width, n):
        grid = render_frame(event, nrow=columns, levels=cfg.levels, scale=scale, outline=mode == "pixel by pixel")
        text = progress_text(event, n, cfg.image_channels, cfg.width)
        if not event.finished and STOP.requested(key):  # keep the partial grid, say where it stopped
            events.close()
            recent = ([(grid, f"{label} · stopped")] + list(recent or []))[:RECENT]
            yield grid, f"{stop_note(event, cfg.image_channels, cfg.width)} {text}", recent, recent
            return
        if not event.finished:
            yield grid, text, gr.skip(), gr.skip()
    recent = ([(grid, label)] + list(recent or []))[:RECENT]
    yield grid, text + " · done", recent, recent


def model_changed(tab: ClassPickerTab, explorer: Explorer, choice: str) -> dict:
    """Clear the old model's grid and recent grids; offer the new model's classes."""
    names = class_choices(explorer.model(choice).config)
    return {tab.class_name: gr.update(choices=names, value=names[0] if names else None),
            tab.samples: None, tab.progress: SUBPIXEL_NOTE, tab.history: [], tab.history_state: []}


def wire(tab: ClassPickerTab, page: Page) -> None:
    explorer, model_choice = page.explorer, page.model_choice

    # closures, not partials: Gradio reads the gr.Request type hint to pass the session
    def on_generate(choice: str, name: str | None, n: float, temperature: float, seed: float, recent: list,
                    mode: str = PLAYBACK[0], guidance: float = CLASS_GUIDANCE, request: gr.Request = None):
        yield from generate(explorer, choice, name, n, temperature, seed, recent, mode, guidance, request)

    nothing_drawn = lambda message: (None, refused_note(message), gr.skip(), gr.skip())  # noqa: E731
    STOP.wire(tab.stop, tab.generate).then(
        refusing(on_generate, nothing_drawn),
        [model_choice, tab.class_name, tab.n_samples, tab.temperature, tab.seed, tab.history_state, tab.playback,
         tab.guidance],
        [tab.samples, tab.progress, tab.history, tab.history_state], api_name="generate", concurrency_limit=2)


TAB = Tab("Class picker", layout, wire, model_changed, ClassPickerTab.model_outputs, uses_model=True)
