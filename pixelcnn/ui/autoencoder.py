"""Auto-encoder: an image squeezed into a code of m numbers, then decoded twice: once by the MSE
decoder (one blurry average) and several times by the PixelCNN decoder (sharp, varied samples that
keep what the code kept). The paper's section 3.4 and Figure 6."""

import math
from dataclasses import dataclass

import gradio as gr

from ..autoencoder import (RECONSTRUCTION_GUIDANCE, MSEAutoEncoder, PixelCNNAutoEncoder, mse_reconstruction,
                           reconstructions)
from ..images import display_scale, image_grid
from .common import (Page, Stopper, Tab, checked_count, checked_seed, checked_temperature, chosen_file, one_source,
                     picture, play, progress_text, read_upload, refused_note, refusing, render_frame, sampling_controls,
                     stop_note)
from .models import Explorer

STOP = Stopper()
EXPLANATION = ("The MSE decoder must give one answer, so it returns the average of every image the code allows: "
               "a blur. The PixelCNN decoder reads that blur as a sketch and samples: each decoding is a sharp "
               "image with the sketch's layout and colours and its own details, which the code had no room for.")


def measured_layout(explorer: Explorer) -> str:
    """What the shipped decoders' cards measured of the layout they keep, in one sentence (or nothing)."""
    kept = {}
    for local in explorer.local.values():
        measured = (local.metrics or {}).get("autoencoder")
        at_default = (measured or {}).get("content_guidance", {}).get(f"{RECONSTRUCTION_GUIDANCE:g}")
        if at_default:  # the figure at the tab's own default guidance, not at w = 1
            kept[measured["code_dim"]] = (at_default["recognised"], measured["content_candidates"])
    if not kept:
        return ""
    shares = ", ".join(f"{share:.0%} at m = {m}" for m, (share, _) in sorted(kept.items()))
    rivals = next(iter(kept.values()))[1] - 1
    return (f" Trained for a few CPU core-hours, the shipped decoders keep the layout (measured on their cards at "
            f"the default guidance {RECONSTRUCTION_GUIDANCE:g}: {shares} of decodings are closer to their own image "
            f"than to {rivals} others), but their details are still noisy.")


@dataclass
class AutoEncoders:
    """The shipped auto-encoders of one code length m: the PixelCNN one and its MSE baseline."""

    pixelcnn: PixelCNNAutoEncoder
    mse: MSEAutoEncoder | None
    examples: dict[str, str]


def find_autoencoders(explorer: Explorer) -> dict[int, AutoEncoders]:
    """The shipped auto-encoders by code length m (loaded once), each with its MSE baseline if shipped."""
    found: dict[int, AutoEncoders] = {}
    baselines: dict[int, MSEAutoEncoder] = {}
    for label, local in explorer.local.items():
        if local.architecture not in (PixelCNNAutoEncoder.architecture, MSEAutoEncoder.architecture):
            continue
        model = explorer.model(label)
        m = model.encoder.config.code_dim
        if isinstance(model, MSEAutoEncoder):
            baselines[m] = model
        elif m not in found:
            found[m] = AutoEncoders(model, None, explorer.examples(label))
    for m, pair in found.items():
        pair.mse = baselines.get(m)
    return dict(sorted(found.items()))


def code_label(m: int) -> str:
    return f"m = {m}"


@dataclass
class AutoEncoderTab:
    upload: gr.File
    example: gr.Dropdown
    code: gr.Radio
    n_samples: gr.Slider
    temperature: gr.Slider
    seed: gr.Number
    decode: gr.Button
    stop: gr.Button
    original: gr.Image
    mse: gr.Image
    decodings: gr.Image
    progress: gr.Markdown
    guidance: gr.Slider


def layout(explorer: Explorer) -> AutoEncoderTab:
    models = find_autoencoders(explorer)
    examples = list(next(iter(models.values())).examples) if models else []
    gr.Markdown(f"An encoder squeezes the image into a code of m numbers, and two decoders rebuild it from that "
                f"code alone (the paper's section 3.4). {EXPLANATION}{measured_layout(explorer)}" if models else
                f"No auto-encoder in `{explorer.weights_dir}`: train one with `python -m pixelcnn.train "
                f"--encoder conv` (see the README).", elem_id="ae-intro")
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Image file", file_types=["image"], type="filepath", elem_id="ae-upload",
                             height=130)
            example = gr.Dropdown(examples, value=examples[0] if examples else None, label="…or a test image",
                                  allow_custom_value=True, elem_id="ae-example")
            labels = [code_label(m) for m in models]
            code = gr.Radio(labels, value=labels[0] if labels else None, label="Code length",
                            info="numbers the encoder keeps of the image's 3,072", elem_id="ae-code")
            n_samples, temperature, guidance, seed, decode, stop = sampling_controls(
                "PixelCNN decodings", 4, "Decode", "ae-decode", "ae-stop",
                (RECONSTRUCTION_GUIDANCE, "the code", "ae-guidance"))
        with gr.Column(scale=2):
            with gr.Row():
                original = picture(label="The image as the model sees it", buttons=[], elem_id="ae-original",
                                   elem_classes=["pixelated"])
                mse = picture(label="MSE decoder: one average", buttons=[], elem_id="ae-mse",
                              elem_classes=["pixelated"])
            decodings = picture(label="PixelCNN decoder: samples given the same code", buttons=["download"],
                                elem_id="ae-decodings", elem_classes=["pixelated"])
            progress = gr.Markdown(elem_id="ae-progress")
    return AutoEncoderTab(upload, example, code, n_samples, temperature, seed, decode, stop, original, mse,
                          decodings, progress, guidance)


def chosen(explorer: Explorer, code: str | None) -> AutoEncoders:
    models = find_autoencoders(explorer)
    for m, pair in models.items():
        if code == code_label(m):
            return pair
    if not models:
        raise gr.Error(f"no auto-encoder in {explorer.weights_dir}")
    raise gr.Error(f"choose a code length: {', '.join(code_label(m) for m in models)}")


def encode_and_decode(explorer: Explorer, path: str | None, example: str | None, code: str | None, n: float,
                      temperature: float, seed: float, guidance: float = RECONSTRUCTION_GUIDANCE,
                      request: gr.Request | None = None):
    """Stream (image as seen, MSE reconstruction, PixelCNN decodings, progress)."""
    pair = chosen(explorer, code)
    model = pair.pixelcnn
    cfg = model.config
    n = checked_count(n, "decodings")
    guidance = RECONSTRUCTION_GUIDANCE if guidance is None else float(guidance)
    if not 0 <= guidance <= 8:
        raise gr.Error("guidance must lie between 0 and 8")
    path = chosen_file(path, example, pair.examples, "upload an image or pick a test image")
    x, notices = read_upload(path, cfg)
    scale = display_scale(cfg.width, target=192, padding=0)
    seen = image_grid(x, nrow=1, levels=cfg.levels, padding=0, scale=scale)
    blurred = (image_grid(mse_reconstruction(pair.mse, x), nrow=1, levels=cfg.levels, padding=0, scale=scale)
               if pair.mse is not None else None)
    columns = min(n, 4) if n <= 8 else math.ceil(math.sqrt(n))
    grid_scale = display_scale(cfg.width, columns, target=640)
    note = ("Notice: " + "; ".join(notices) + ". ") if notices else ""
    events = reconstructions(model, x, n, seed=checked_seed(seed), temperature=checked_temperature(temperature),
                             guidance=guidance)
    key = STOP.start(request)
    for event in play(events, "row by row", cfg.height * cfg.width, n):
        grid = render_frame(event, nrow=columns, levels=cfg.levels, scale=grid_scale, outline=False)
        text = f"{note}{code}: {progress_text(event, n, cfg.image_channels, cfg.width)}"
        if not event.finished and STOP.requested(key):
            events.close()
            yield seen, blurred, grid, f"{stop_note(event, cfg.image_channels, cfg.width)} {text}"
            return
        yield seen, blurred, grid, text + (" · done" if event.finished else "")


def wire(tab: AutoEncoderTab, page: Page) -> None:
    explorer = page.explorer

    def on_decode(path, example, code, n, temperature, seed, guidance, request: gr.Request):
        yield from encode_and_decode(explorer, path, example, code, n, temperature, seed, guidance, request)

    nothing_decoded = lambda message: (None, None, None, refused_note(message))  # noqa: E731
    STOP.wire(tab.stop, tab.decode).then(
        refusing(on_decode, nothing_decoded),
        [tab.upload, tab.example, tab.code, tab.n_samples, tab.temperature, tab.seed, tab.guidance],
        [tab.original, tab.mse, tab.decodings, tab.progress], api_name="autoencode", concurrency_limit=2)
    one_source(tab.upload, tab.example)


TAB = Tab("Auto-encoder", layout, wire)
