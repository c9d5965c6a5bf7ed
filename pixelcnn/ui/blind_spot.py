"""Blind spot: which earlier pixels can each output see, measured by autograd on real models."""

from dataclasses import dataclass

import gradio as gr
import torch

from ..config import PixelCNNConfig
from ..images import FIELD_COLOURS, receptive_field_picture
from ..receptive_field import blind_spot, dependency_map, field_by_depth, random_model
from .common import Page, Tab, gallery, picture, refused_note, refusing, slider
from .models import Explorer

FIELD_SIZE = 12           # the tab's image is FIELD_SIZE x FIELD_SIZE
MAX_FIELD_LAYERS = 12
MAP_SCALE = 36            # one pixel of the map is MAP_SCALE screen pixels (432 px in all)
ARCHITECTURES = {"Original PixelCNN": "original", "Gated PixelCNN": "gated"}


def _swatch(name: str) -> str:
    r, g, b = FIELD_COLOURS[name]
    return f'<span style="display:inline-block;width:14px;height:14px;background:rgb({r},{g},{b});' \
           f'border:1px solid #999;vertical-align:middle"></span>'


LEGEND = f"""
{_swatch("target")} the output pixel (click the map to move it)<br>
{_swatch("seen")} earlier pixels it can see<br>
{_swatch("blind")} **blind spot**: earlier, but no depth ever reaches them<br>
{_swatch("out_of_reach")} earlier, out of reach of this depth only<br>
{_swatch("future")} later pixels, which it must not see
"""

EXPLANATION = """
**How it is measured.** A randomly initialised model of the chosen shape is differentiated with
respect to its input (autograd on the real model code): every pixel with a non-zero gradient is blue.

**Why.** The original PixelCNN stacks masked k x k convolutions. Each layer looks at most one row
up and k//2 columns to the right, so a wedge of pixels up and to the right is never reached, however
deep the network. The Gated PixelCNN splits every layer into a *vertical stack* (all rows above)
and a *horizontal stack* (the current row to the left), linked vertical -> horizontal only, and
the wedge disappears once the stacks are deep enough to reach the image's edges.
"""


@dataclass
class BlindSpotTab:
    architecture: gr.Radio
    layers: gr.Slider
    kernel: gr.Radio
    target_row: gr.Slider
    target_col: gr.Slider
    show: gr.Button
    field_map: gr.Image
    field_text: gr.Markdown
    growth: gr.Gallery

    @property
    def inputs(self) -> list:
        return [self.architecture, self.layers, self.kernel, self.target_row, self.target_col]

    @property
    def outputs(self) -> list:
        return [self.field_map, self.field_text, self.growth]


def layout(explorer: Explorer | None = None) -> BlindSpotTab:
    """The tab builds its own small random models: it needs none of the explorer's."""
    with gr.Row():
        with gr.Column(scale=1):
            architecture = gr.Radio(list(ARCHITECTURES), value="Original PixelCNN", label="Architecture",
                                    elem_id="architecture")
            layers = slider(1, MAX_FIELD_LAYERS, value=6, step=1, label="Layers", elem_id="layers")
            kernel = gr.Radio([3, 5, 7], value=3, label="Kernel size", elem_id="kernel")
            target_row = slider(0, FIELD_SIZE - 1, value=8, step=1, label="Target row", elem_id="target-row")
            target_col = slider(0, FIELD_SIZE - 1, value=5, step=1, label="Target column")
            show = gr.Button("Show receptive field", variant="primary", elem_id="show-field")
        with gr.Column(scale=2):
            with gr.Row():
                field_map = picture(show_label=False, elem_id="field", buttons=[], elem_classes=["pixelated"], scale=3)
                gr.Markdown(LEGEND, elem_id="field-legend")
            field_text = gr.Markdown(elem_id="field-text")
    growth = gallery("The receptive field, layer by layer", "growth", height="auto")  # up to 12 layers: 2 rows
    gr.Markdown(EXPLANATION)
    return BlindSpotTab(architecture, layers, kernel, target_row, target_col, show, field_map, field_text, growth)


def receptive_field(arch: str, n_layers: float, k: float, row: float, col: float):
    """(map, explanation, [(picture, caption) per depth]) for one architecture, depth, kernel and target."""
    n_layers, k, row, col = int(n_layers), int(k), int(row), int(col)
    if arch not in ARCHITECTURES:
        raise gr.Error(f"architecture must be one of {list(ARCHITECTURES)}")
    if not (1 <= n_layers <= MAX_FIELD_LAYERS and k in (3, 5, 7)):
        raise gr.Error(f"choose 1 to {MAX_FIELD_LAYERS} layers and a kernel of 3, 5 or 7")
    if not (0 <= row < FIELD_SIZE and 0 <= col < FIELD_SIZE):
        raise gr.Error(f"the target must lie inside the {FIELD_SIZE}x{FIELD_SIZE} image")
    name = ARCHITECTURES[arch]
    config = PixelCNNConfig(image_channels=1, image_size=FIELD_SIZE, levels=4, hidden_channels=4,
                            n_layers=n_layers, kernel_size=k, first_kernel_size=k, head_channels=4)
    target = (row, col, 0)
    seen = dependency_map(random_model(name, config, std=None), target)[0]
    # what no depth reaches: unseen even by a network deep enough to span the image
    blind = blind_spot(random_model(name, config.replace(n_layers=2 * FIELD_SIZE), std=None), target)[0]
    earlier = row * FIELD_SIZE + col
    out_of_reach = torch.arange(FIELD_SIZE * FIELD_SIZE).view(FIELD_SIZE, FIELD_SIZE) < earlier
    out_of_reach &= ~seen & ~blind
    layers = f"{n_layers} layer{'s' if n_layers != 1 else ''}"
    text = (f"**{arch}**, {layers}, {k}x{k}: the output at ({row}, {col}) sees "
            f"{int(seen.sum())} of the {earlier} earlier pixels. **{int(blind.sum())} lie in its blind spot** "
            f"(orange: no depth reaches them), {int(out_of_reach.sum())} are only out of reach of "
            f"{layers} (pale yellow: more layers reach them).")
    steps = []
    for depth, field in enumerate(field_by_depth(name, config, target), start=1):
        picture = receptive_field_picture(field[0], torch.zeros_like(field[0]), (row, col), scale=12)
        steps.append((picture, f"{depth} layer{'s' if depth > 1 else ''}"))
    picture = receptive_field_picture(seen, blind, (row, col), scale=MAP_SCALE, out_of_reach=out_of_reach)
    return picture, text, steps


def clicked_target(evt: gr.SelectData) -> tuple[int, int]:
    """The (row, column) of the clicked map pixel."""
    x, y = evt.index
    return min(FIELD_SIZE - 1, int(y) // MAP_SCALE), min(FIELD_SIZE - 1, int(x) // MAP_SCALE)


def wire(tab: BlindSpotTab, page: Page) -> None:
    redraw = refusing(receptive_field, lambda message: (gr.skip(), refused_note(message), gr.skip()))
    tab.show.click(redraw, tab.inputs, tab.outputs, api_name="receptive_field")
    # every control redraws the map; a slider dragged across many values redraws for the last one
    for control in (tab.architecture, tab.kernel, tab.layers, tab.target_row, tab.target_col):
        control.change(redraw, tab.inputs, tab.outputs, api_visibility="private", trigger_mode="always_last")
    tab.field_map.select(clicked_target, None, [tab.target_row, tab.target_col], api_visibility="private").then(
        redraw, tab.inputs, tab.outputs, api_visibility="private")
    page.demo.load(redraw, tab.inputs, tab.outputs, api_visibility="private")


TAB = Tab("Blind spot", layout, wire)
