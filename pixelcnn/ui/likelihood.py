"""Likelihood: how many bits the model needs for an image, where it is surprised, what it predicts at
each pixel, and how it completes the image from its top rows."""

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr
import torch

from ..images import completion_picture, display_scale, distribution_figure, heat_map_with_bar, image_grid
from ..sampling import given_top_rows, stream
from .common import (ROW_FRAME_S, Page, Tab, checked_seed, chosen_file, number_box, one_source, paced, picture,
                     read_upload, refused_note, refusing, slider)
from .models import AUTO_CLASS, Explorer, class_choices, class_index

UNIFORM_WARNING = ("**This image is far outside what the model learnt**: above 8 bits/dim it costs more than "
                   "uniform noise would. The figures below describe a poor fit, not the image.")


@dataclass
class LikelihoodTab:
    upload: gr.File
    example: gr.Dropdown
    lens_class: gr.Dropdown
    measure: gr.Button
    model_view: gr.Image
    surprise: gr.Image
    score_text: gr.Markdown
    distribution: gr.Plot
    keep_rows: gr.Slider
    complete_seed: gr.Number
    complete: gr.Button
    completion: gr.Image
    state: gr.State

    def model_outputs(self) -> list:
        """What `model_changed` updates."""
        return [self.lens_class, self.example, self.upload, self.keep_rows, self.model_view, self.surprise,
                self.distribution, self.completion, self.score_text, self.state]


def layout(explorer: Explorer) -> LikelihoodTab:
    config = explorer.model(explorer.first).config if explorer.first else None
    with gr.Row():
        with gr.Column(scale=1):
            # a File, not an Image: any upload reaches our own checks, which explain what is wrong
            upload = gr.File(label="Image file", file_types=["image"], type="filepath", elem_id="upload")
            example = gr.Dropdown(list(explorer.examples(explorer.first)), label="…or a test image", value=None,
                                  allow_custom_value=True, elem_id="example")
            lens_class = gr.Dropdown(class_choices(config, auto=True) if config else [],
                                     value=AUTO_CLASS if config and config.conditioning == "class" else None,
                                     label="Condition on class", allow_custom_value=True)
            measure = gr.Button("Measure", variant="primary", elem_id="measure")
        with gr.Column(scale=2):
            with gr.Row():
                model_view = picture(show_label=False, buttons=[], elem_id="model-view", elem_classes=["pixelated"])
                surprise = picture(show_label=False, elem_id="surprise", buttons=[], elem_classes=["pixelated"])
            score_text = gr.Markdown("Left: the image as the model sees it. Right: bits per pixel; click a pixel "
                                     "for the model's prediction there.", elem_id="score")
            distribution = gr.Plot(show_label=False, elem_id="distribution")
    with gr.Row():
        keep_rows = slider(1, max(2, (config.height if config else 28) - 1), value=14, step=1,
                              label="Keep the top rows")
        complete_seed = number_box("Seed", elem_id="complete-seed")
        complete = gr.Button("Complete the rest", elem_id="complete")
    completion = picture(label="The original (left) and its completion (right); the line marks the kept rows",
                         buttons=["download"], elem_id="completion", elem_classes=["pixelated"])
    return LikelihoodTab(upload, example, lens_class, measure, model_view, surprise, score_text, distribution,
                         keep_rows, complete_seed, complete, completion, gr.State(None))


def class_ranking(model, x: torch.Tensor) -> torch.Tensor:
    """Bits/dim of one image (1, C, H, W) given each class: (num_classes,)."""
    with torch.no_grad():
        return torch.stack([model.bits_per_dim(x, torch.tensor([k]))[0] for k in range(model.config.num_classes)])


def measure(explorer: Explorer, choice: str, path: str | None, name: str | None, example: str | None = None):
    """(view, heat map, text, state, plot) for an uploaded or test image."""
    model = explorer.model(choice)
    cfg = model.config
    path = chosen_file(path, example, explorer.examples(choice), "upload an image or pick a test image first")
    x, notices = read_upload(path, cfg)
    lines, k = [], None
    if cfg.conditioning == "class":
        per_class = class_ranking(model, x)
        best = per_class.argsort()[:3].tolist()
        k = best[0] if name in (None, AUTO_CLASS) else class_index(cfg, name)
        top = ", ".join(f"**{cfg.class_name(c)}** ({per_class[c]:.3f})" for c in best)
        truth = f" True label: **{example}**." if example in class_choices(cfg) else ""
        lines.append(f"Most likely classes (bits/dim): {top}.{truth}")
    elif cfg.conditioning != "none":
        raise gr.Error("the likelihood lens needs a class-conditional or unconditional model")
    cond = None if k is None else torch.tensor([k])
    with torch.no_grad():
        bits = model.bits_per_subpixel(x, cond)[0]  # (C, H, W)
    bpd = float(bits.mean())
    lines.insert(0, f"### {bpd:.3f} bits/dim" + (f" given class **{cfg.class_name(k)}**" if k is not None else ""))
    if bpd > 8:
        lines.insert(1, UNIFORM_WARNING)
    lines.insert(1, test_range_line(explorer, choice, bpd))
    if notices:
        lines.append("Notice: " + "; ".join(notices) + ".")
    scale = display_scale(cfg.width, target=320, padding=0)
    view = image_grid(x, nrow=1, levels=cfg.levels, padding=0, scale=scale)
    state = {"choice": choice, "x": x, "class": k, "scale": scale, "bits": bits.sum(0)}
    return view, heat_map_with_bar(state["bits"], scale), "\n\n".join(lines), state, None


PREDICTABLE = ("Low bits/dim means *predictable* to this model, not *looks like the data*: a blank or flat image "
               "is the most predictable of all.")


def test_range_line(explorer: Explorer, choice: str, bpd: float) -> str:
    """Where a measured image stands against the model's test images (the spread its card measured)."""
    local = explorer.local.get(choice)
    metrics = (local.metrics or {}) if local else {}
    spread, mean = metrics.get("test_bpd_spread"), metrics.get("test_bpd")
    if spread:
        where = (" **Lower than 95% of the test images**: likely a plain or blank image, not a typical one."
                 if bpd < spread["p5"] else " Higher than 95% of them: unusual for this model." if bpd > spread["p95"]
                 else "")
        return (f"The model's test images score {spread['p5']:.2f} to {spread['p95']:.2f} bits/dim (the middle 90%, "
                f"median {spread['p50']:.2f}).{where} {PREDICTABLE}")
    average = f"The model's test images average {mean:.3f} bits/dim. " if isinstance(mean, (int, float)) else ""
    return average + PREDICTABLE


def pixel_distribution(explorer: Explorer, state: dict[str, Any] | None, evt: gr.SelectData):
    """(plot of the predictive distributions at the clicked pixel, heat map with the pixel marked)."""
    if not state:
        raise gr.Error("measure an image first")
    model = explorer.model(state["choice"])
    x, k, scale = state["x"], state["class"], state["scale"]
    col, row = int(evt.index[0]) // scale, int(evt.index[1]) // scale
    if row >= model.config.height or col >= model.config.width:
        return gr.skip(), gr.skip()  # a click on the colour bar
    cond = torch.tensor([k]) if k is not None else None
    with torch.no_grad():
        probs = model(x, cond)[0, :, :, row, col].softmax(0).T  # (C, levels)
    fig = distribution_figure(probs, x[0, :, row, col], title=f"pixel ({row}, {col}), given everything before it")
    return fig, heat_map_with_bar(state["bits"], scale, marker=(row, col))


def complete(explorer: Explorer, state: dict[str, Any] | None, rows: float, seed: float):
    """Stream the completion of the measured image from its top rows, beside the original."""
    if not state:
        raise gr.Error("measure an image first: completion keeps its top rows")
    model = explorer.model(state["choice"])
    cfg = model.config
    rows = int(rows)
    if not 1 <= rows < cfg.height:
        raise gr.Error(f"keep between 1 and {cfg.height - 1} rows")
    cond = torch.tensor([state["class"]]) if state["class"] is not None else None
    events = stream(model, 1, cond, seed=checked_seed(seed), given=given_top_rows(state["x"], rows))
    for event in paced(events, ROW_FRAME_S):
        yield completion_picture(state["x"], event.images, rows, cfg.levels, state["scale"])


def model_changed(tab: LikelihoodTab, explorer: Explorer, choice: str) -> dict:
    """Drop every output and the measured image of the old model; offer the new model's classes."""
    cfg = explorer.model(choice).config
    return {tab.lens_class: gr.update(choices=class_choices(cfg, auto=True),
                                      value=AUTO_CLASS if cfg.conditioning == "class" else None),
            tab.example: gr.update(choices=list(explorer.examples(choice)), value=None),
            tab.upload: None, tab.keep_rows: gr.update(maximum=max(2, cfg.height - 1), value=cfg.height // 2),
            tab.model_view: None, tab.surprise: None, tab.distribution: None, tab.completion: None,
            tab.score_text: "Upload an image or pick a test image, then Measure.", tab.state: None}


def wire(tab: LikelihoodTab, page: Page) -> None:
    explorer, model_choice = page.explorer, page.model_choice
    one_source(tab.upload, tab.example)
    nothing_measured = lambda message: (None, None, refused_note(message), None, None)  # noqa: E731
    tab.measure.click(refusing(partial(measure, explorer), nothing_measured),
                      [model_choice, tab.upload, tab.lens_class, tab.example],
                      [tab.model_view, tab.surprise, tab.score_text, tab.state, tab.distribution],
                      api_name="likelihood")
    def on_click(state: dict | None, evt: gr.SelectData):  # a closure: Gradio reads the SelectData hint
        return pixel_distribution(explorer, state, evt)

    tab.surprise.select(refusing(on_click, lambda message: (gr.skip(), gr.skip())), tab.state, [tab.distribution, tab.surprise], api_visibility="private")
    tab.complete.click(refusing(partial(complete, explorer), lambda message: None), [tab.state, tab.keep_rows, tab.complete_seed], tab.completion,
                       api_name="complete", concurrency_limit=2)


TAB = Tab("Likelihood", layout, wire, model_changed, LikelihoodTab.model_outputs, uses_model=True)
