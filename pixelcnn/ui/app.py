"""The page: a header, the model picker, and the tabs of `TABS`, each a module's `Tab`. A model change
asks every tab for its updates, by component, and applies them together."""

import logging
import os
from pathlib import Path

import gradio as gr

from .. import from_pretrained
from ..hub import CheckpointError
from . import autoencoder, blind_spot, class_picker, likelihood, morph, portraits
from .common import CSS, HEAD, LOG, Page, refused_note, refusing
from .models import Explorer, pickable

# the page's tabs, in order: a new tab is a module with a `TAB` and a line here
TABS = [class_picker.TAB, blind_spot.TAB, likelihood.TAB, portraits.TAB, morph.TAB, autoencoder.TAB]

HUB_PLACEHOLDER = "owner/name, e.g. a model you shared with model.push_to_hub('you/my-pixelcnn')"


def load_hub(explorer: Explorer, repo_id: str | None, current: str | None):
    """(model dropdown, model line) after loading a Hub repository; on failure the current model stays."""
    repo_id = (repo_id or "").strip()
    if not repo_id:
        raise gr.Error("type a Hub repository id such as owner/name")
    try:
        model = from_pretrained(repo_id)
        if not pickable(getattr(model, "architecture", ""), getattr(model, "config", None)):
            raise CheckpointError(f"{repo_id} holds a {type(model).__name__} with `{model.config.conditioning}` "
                                  f"conditioning; the Class picker and Likelihood tabs take class-conditional "
                                  f"or unconditional PixelCNNs" if hasattr(model.config, "conditioning") else
                                  f"{repo_id} holds a {type(model).__name__}, not a single PixelCNN")
    except CheckpointError as e:
        LOG.info("refused input: %s", e)
        gr.Warning(str(e))
        line = explorer.describe(current) if current else ""
        return gr.update(), f"{line}\n\n*Could not load `{repo_id}`: {e}*"
    label = explorer.add_hub(repo_id, model)
    return gr.update(choices=explorer.choices, value=label), f"Loaded `{repo_id}` from the Hub."


def showing(visible: bool):
    """A handler that shows or hides a component."""
    return lambda: gr.update(visible=visible)


def build(explorer: Explorer) -> gr.Blocks:
    """The whole app, from the models of an `Explorer`."""
    with gr.Blocks(title="Gated PixelCNN Explorer") as demo:
        gr.Markdown("# Gated PixelCNN Explorer\n*Conditional Image Generation with PixelCNN Decoders* "
                    "(van den Oord et al., 2016): generation pixel by pixel, the blind spot, the likelihood, portraits "
                    "from a photo, and a PixelCNN auto-encoder.")
        with gr.Column(elem_id="model-row", visible=TABS[0].uses_model) as model_row:
            with gr.Row():
                model_choice = gr.Dropdown(explorer.choices, value=explorer.first, label="Model", scale=3,
                                           allow_custom_value=True, elem_id="model",
                                           info="for the Class picker and Likelihood: image size, depth, "
                                                "measured test bits/dim")
                hub_id = gr.Textbox(label="…or a Hugging Face Hub repository", placeholder=HUB_PLACEHOLDER,
                                    scale=2)
                hub_button = gr.Button("Load from the Hub", scale=1)
            model_status = gr.Markdown(explorer.describe(explorer.first) if explorer.first else
                                       f"No model found in `{explorer.weights_dir}`: train one with "
                                       "`python -m pixelcnn.train` or load one from the Hub.", elem_id="model-status")
        parts = []
        for tab in TABS:
            with gr.Tab(tab.title) as shown:
                parts.append(tab.layout(explorer))
            # the model picker shows on the tabs that use its model only
            shown.select(showing(tab.uses_model), None, model_row, api_visibility="private", queue=False)

        def on_model(choice: str) -> dict:
            updates = {model_status: explorer.describe(choice)}
            for tab, built in zip(TABS, parts):
                updates.update(tab.model_changed(built, explorer, choice))
            return updates

        outputs = [model_status, *(c for tab, built in zip(TABS, parts) for c in tab.model_outputs(built))]
        model_choice.change(on_model, model_choice, outputs, api_visibility="private")

        def on_hub(repo: str | None, current: str | None):
            return load_hub(explorer, repo, current)

        hub_button.click(refusing(on_hub, lambda message: (gr.skip(), refused_note(message))), [hub_id, model_choice],
                         [model_choice, model_status], api_name="load_hub")
        page = Page(explorer, model_choice, demo)
        for tab, built in zip(TABS, parts):
            tab.wire(built, page)
        # a failed Hub load is said in the model line until the next action, not through it
        actions = [block for block in demo.blocks.values() if isinstance(block, gr.Button) and block is not hub_button]
        gr.on([action.click for action in actions], lambda choice: explorer.describe(choice) if choice else gr.skip(),
              model_choice, model_status, queue=False, show_progress="hidden", api_visibility="private")
    return demo


def launch(weights: Path, host: str, port: int, share: bool) -> None:
    """Build the app on a folder of models and serve it (queue of two jobs, bounded uploads)."""
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "5")  # an unreachable Hub fails fast
    # one line per refused input (`common.refusing`); real faults keep Gradio's tracebacks
    if not LOG.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    demo = build(Explorer(weights))
    demo.queue(default_concurrency_limit=2, max_size=32)
    demo.launch(server_name=host, server_port=port, share=share, max_file_size="20mb", show_error=True, css=CSS,
                head=HEAD)
