"""Gated PixelCNN Explorer: watch images render pixel by pixel, see the blind spot, read the likelihood.

    python app.py                       # http://127.0.0.1:7860, the models in weights/
    python app.py --port 8000 --share   # or GRADIO_SERVER_NAME / GRADIO_SERVER_PORT

The UI only: every computation comes from the `pixelcnn` library.
"""

import argparse
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # runs offline: no telemetry calls

import gradio as gr  # noqa: E402
import torch  # noqa: E402

import pixelcnn  # noqa: E402
from pixelcnn import CheckpointError, PixelCNNConfig  # noqa: E402
from pixelcnn.hub import LocalModel, local_models  # noqa: E402
from pixelcnn.images import (UploadError, distribution_figure, heat_map, image_grid, load_upload,  # noqa: E402
                             receptive_field_picture)
from pixelcnn.receptive_field import blind_spot, dependency_map, field_by_depth, random_model  # noqa: E402
from pixelcnn.sampling import SampleProgress, given_top_rows, stream  # noqa: E402

ROOT = Path(__file__).resolve().parent
MAX_SAMPLES = 16          # images per request
MIN_UPDATE_S = 0.12       # seconds between streamed images at full speed
ROW_FRAME_S = 0.1         # slow motion: each finished row stays on screen at least this long
PLAYBACK = ["row by row", "full speed"]
FIELD_SIZE = 12           # the blind-spot tab's image is FIELD_SIZE x FIELD_SIZE
MAX_FIELD_LAYERS = 12
AUTO_CLASS = "most likely class"

BLIND_SPOT_TEXT = """
**What you see.** The red square is the output pixel. Blue pixels can influence its prediction,
orange ones come *earlier* in the generation order but can never reach it, at any depth: the blind
spot. Pale yellow ones are earlier pixels that a deeper network would reach. Grey pixels come
later and must not be seen. The map is measured, not drawn: a randomly initialised
model of the chosen shape is differentiated with respect to its input (autograd on the real model
code), and every pixel with a non-zero gradient is blue.

**Why.** The original PixelCNN stacks masked k x k convolutions. Each layer looks at most one row
up and k//2 columns to the right, so a wedge of pixels up and to the right is never reached, however
deep the network. The Gated PixelCNN splits every layer into a *vertical stack* (all rows above)
and a *horizontal stack* (the current row to the left), linked vertical -> horizontal only, and
the wedge disappears once the stacks are deep enough to reach the image's edges.
"""


class Explorer:
    """The models on offer (shipped folders and Hub repositories loaded on request), loaded once."""

    def __init__(self, weights_dir: Path) -> None:
        self.weights_dir = weights_dir
        self.local: dict[str, LocalModel] = {m.describe(): m for m in local_models(weights_dir)}
        self.hub: dict[str, str] = {}  # label -> repo id
        self.loaded: dict[str, torch.nn.Module] = {}

    @property
    def choices(self) -> list[str]:
        return list(self.local) + list(self.hub)

    def model(self, choice: str | None):
        if not choice:
            raise gr.Error(f"no model selected; the shipped models live in {self.weights_dir}")
        if choice not in self.loaded:
            if choice in self.local:
                self.loaded[choice] = pixelcnn.from_pretrained(self.local[choice].path)
            elif choice in self.hub:
                self.loaded[choice] = pixelcnn.from_pretrained(self.hub[choice])
            else:
                raise gr.Error(f"unknown model {choice!r}")
        return self.loaded[choice]

    def examples(self, choice: str | None) -> dict[str, str]:
        """Test images shipped with a local model (weights/<name>/examples/*.png), by name."""
        if choice not in self.local:
            return {}
        folder = self.local[choice].path / "examples"
        return {p.stem: str(p) for p in sorted(folder.glob("*.png"))} if folder.is_dir() else {}


def class_choices(config: PixelCNNConfig, auto: bool = False) -> list[str]:
    if config.conditioning != "class":
        return []
    return ([AUTO_CLASS] if auto else []) + [config.class_name(k) for k in range(config.num_classes)]


def class_index(config: PixelCNNConfig, name: str | None) -> int:
    names = class_choices(config)
    if name not in names:
        raise gr.Error(f"pick a class from {', '.join(names)}")
    return names.index(name)


def sampling_condition(model, class_name: str | None):
    cfg = model.config
    if cfg.conditioning == "class":
        return class_index(cfg, class_name)
    if cfg.conditioning == "none":
        return None
    raise gr.Error("this model is conditioned on embeddings; the app samples class-conditional and "
                   "unconditional models (the notebooks cover the others)")


def display_scale(config: PixelCNNConfig, columns: int = 1) -> int:
    """Enlargement so that a grid is about 320 pixels wide."""
    return max(1, 320 // (columns * (config.width + 2)))


def save_png(picture, prefix: str) -> str:
    handle = tempfile.NamedTemporaryFile(prefix=prefix, suffix=".png", delete=False)
    picture.save(handle, format="PNG")
    handle.close()
    return handle.name


def paced(events: Iterator[SampleProgress], frame_s: float) -> Iterator[SampleProgress]:
    """Slow motion: pass on every event, each at least frame_s after the one before.

    The cached sampler renders a small image in a fraction of a second, faster than a browser can
    show the rows; pausing between events lets the user watch it. Stop cancels during a pause.
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


def build(explorer: Explorer) -> gr.Blocks:
    first = explorer.choices[0] if explorer.choices else None
    first_config = explorer.model(first).config if first else None

    with gr.Blocks(title="Gated PixelCNN Explorer") as demo:
        gr.Markdown("# Gated PixelCNN Explorer\n*Conditional Image Generation with PixelCNN Decoders* "
                    "(van den Oord et al., 2016): generation pixel by pixel, the blind spot, and the likelihood.")
        with gr.Row():
            model_choice = gr.Dropdown(explorer.choices, value=first, label="Model", scale=3, allow_custom_value=True,
                                       info="shipped weights: dataset, size, measured test bits/dim")
            hub_id = gr.Textbox(label="…or a Hugging Face Hub repository", placeholder="owner/name", scale=2)
            hub_button = gr.Button("Load from the Hub", scale=1)
        model_status = gr.Markdown("" if explorer.choices else
                                   f"No model found in `{explorer.weights_dir}`: train one with "
                                   "`python -m pixelcnn.train` or load one from the Hub.", elem_id="model-status")

        # ----------------------------------------------------------------------------- class picker
        with gr.Tab("Class picker"):
            with gr.Row():
                with gr.Column(scale=1):
                    class_name = gr.Dropdown(class_choices(first_config) if first_config else [],
                                             value=(class_choices(first_config) or [None])[0] if first_config else None,
                                             label="Class", allow_custom_value=True)
                    n_samples = gr.Slider(1, MAX_SAMPLES, value=8, step=1, label="Samples")
                    temperature = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Temperature",
                                            info="0 always takes the most likely value")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    playback = gr.Radio(PLAYBACK, value=PLAYBACK[0], label="Playback", elem_id="playback",
                                        info=f"row by row shows every row for at least {ROW_FRAME_S:.1f} s, "
                                             "even where the model is faster than the eye")
                    with gr.Row():
                        generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                        stop_button = gr.Button("Stop", elem_id="stop")
                with gr.Column(scale=2):
                    samples = gr.Image(label="Samples (rendering live)", format="png", type="pil",
                                       buttons=["download"], elem_id="samples", interactive=False)
                    progress = gr.Markdown(elem_id="progress")
            history = gr.Gallery(label="Recent grids", columns=6, height=160, elem_id="history")
            history_state = gr.State([])

        # ----------------------------------------------------------------------------- blind spot
        with gr.Tab("Blind spot"):
            with gr.Row():
                with gr.Column(scale=1):
                    architecture = gr.Radio(["Original PixelCNN", "Gated PixelCNN"], value="Original PixelCNN",
                                            label="Architecture", elem_id="architecture")
                    layers = gr.Slider(1, MAX_FIELD_LAYERS, value=6, step=1, label="Layers")
                    kernel = gr.Radio([3, 5, 7], value=3, label="Kernel size")
                    target_row = gr.Slider(0, FIELD_SIZE - 1, value=8, step=1, label="Target row")
                    target_col = gr.Slider(0, FIELD_SIZE - 1, value=5, step=1, label="Target column")
                    field_button = gr.Button("Show receptive field", variant="primary", elem_id="show-field")
                with gr.Column(scale=2):
                    field_map = gr.Image(label="Receptive field (click a pixel to move the target)", type="pil",
                                         elem_id="field", interactive=False, format="png")
                    field_text = gr.Markdown(elem_id="field-text")
            growth = gr.Gallery(label="Layer by layer", columns=6, height=170)
            gr.Markdown(BLIND_SPOT_TEXT)

        # ----------------------------------------------------------------------------- likelihood
        with gr.Tab("Likelihood"):
            with gr.Row():
                with gr.Column(scale=1):
                    # a File, not an Image: any upload reaches our own checks, which explain what is wrong
                    upload = gr.File(label="Image file", file_types=["image"], type="filepath", elem_id="upload")
                    example = gr.Dropdown(list(explorer.examples(first)), label="…or a test image", value=None,
                                          allow_custom_value=True)
                    lens_class = gr.Dropdown(class_choices(first_config, auto=True) if first_config else [],
                                             value=AUTO_CLASS if first_config and first_config.conditioning == "class"
                                             else None, label="Condition on class", allow_custom_value=True)
                    score_button = gr.Button("Measure", variant="primary", elem_id="measure")
                with gr.Column(scale=2):
                    with gr.Row():
                        model_view = gr.Image(label="What the model sees", type="pil", interactive=False,
                                              format="png")
                        surprise = gr.Image(label="Bits per pixel (click one)", type="pil", interactive=False,
                                            elem_id="surprise", format="png")
                    score_text = gr.Markdown(elem_id="score")
                    distribution = gr.Plot(label="Predictive distribution at the clicked pixel")
            with gr.Row():
                keep_rows = gr.Slider(1, 31, value=14, step=1, label="Keep the top rows")
                complete_seed = gr.Number(value=0, precision=0, label="Seed")
                complete_button = gr.Button("Complete the rest", elem_id="complete")
            completion = gr.Image(label="Completion (rendering live)", type="pil", interactive=False,
                                  buttons=["download"], format="png", elem_id="completion")
            lens_state = gr.State(None)

        # ============================================================================== handlers
        def on_model(choice):
            try:
                model = explorer.model(choice)
            except (CheckpointError, OSError, ValueError) as e:
                raise gr.Error(f"cannot load {choice}: {e}")
            cfg = model.config
            names = class_choices(cfg)
            examples = list(explorer.examples(choice))
            status = (f"**{choice}**: {model.num_parameters:,} parameters, {cfg.height}x{cfg.width}x"
                      f"{cfg.image_channels}, {cfg.levels} levels, conditioning `{cfg.conditioning}`")
            return (status, gr.update(choices=names, value=names[0] if names else None),
                    gr.update(choices=class_choices(cfg, auto=True),
                              value=AUTO_CLASS if cfg.conditioning == "class" else None),
                    gr.update(choices=examples, value=None), gr.update(maximum=max(1, cfg.height - 1)))

        def on_hub(repo_id):
            repo_id = (repo_id or "").strip()
            if not repo_id:
                raise gr.Error("type a Hub repository id such as owner/name")
            label = f"hub: {repo_id}"
            try:
                model = pixelcnn.from_pretrained(repo_id)
            except CheckpointError as e:
                gr.Warning(str(e))
                return gr.update(), f"Could not load `{repo_id}`: {e}"
            explorer.hub[label] = repo_id
            explorer.loaded[label] = model
            return gr.update(choices=explorer.choices, value=label), f"Loaded `{repo_id}` from the Hub."

        def on_generate(choice, name, n, temp, seed_value, recent, mode=PLAYBACK[0]):
            model = explorer.model(choice)
            cfg = model.config
            n = int(n)
            if not 1 <= n <= MAX_SAMPLES:
                raise gr.Error(f"ask for 1 to {MAX_SAMPLES} samples")
            if temp is None or not 0 <= float(temp) <= 10:
                raise gr.Error("temperature must lie between 0 and 10")
            if mode not in PLAYBACK:
                raise gr.Error(f"playback must be one of {PLAYBACK}")
            cond = sampling_condition(model, name)
            columns = math.ceil(math.sqrt(n))
            scale = display_scale(cfg, columns)
            # one event per row (stream's default)
            events = stream(model, n, cond, seed=int(seed_value or 0), temperature=float(temp))
            player = paced(events, ROW_FRAME_S) if mode == PLAYBACK[0] else throttled(events, MIN_UPDATE_S)
            for event in player:
                # event.elapsed counts generation only, so the rate is the model's, not the playback's
                rate = event.done * n / max(event.elapsed, 1e-9)
                text = (f"{event.done:,} of {event.total:,} sub-pixels per image, {rate:,.0f} sub-pixels/s, "
                        f"{event.elapsed:.1f} s")
                grid = image_grid(event.images, nrow=columns, levels=cfg.levels, scale=scale)
                if not event.finished:
                    yield grid, text, gr.skip(), gr.skip()
            label = f"{name or 'sample'} · seed {int(seed_value or 0)}"
            path = save_png(grid, "pixelcnn-samples-")
            recent = ([(path, label)] + list(recent or []))[:6]
            yield grid, text + " · done", recent, recent

        def on_field(arch, n_layers, k, row, col):
            n_layers, k, row, col = int(n_layers), int(k), int(row), int(col)
            if not (1 <= n_layers <= MAX_FIELD_LAYERS and k in (3, 5, 7)):
                raise gr.Error(f"choose 1 to {MAX_FIELD_LAYERS} layers and a kernel of 3, 5 or 7")
            if not (0 <= row < FIELD_SIZE and 0 <= col < FIELD_SIZE):
                raise gr.Error(f"the target must lie inside the {FIELD_SIZE}x{FIELD_SIZE} image")
            name = "gated" if arch.startswith("Gated") else "original"
            config = PixelCNNConfig(image_channels=1, image_size=FIELD_SIZE, levels=4, hidden_channels=4,
                                    n_layers=n_layers, kernel_size=k, first_kernel_size=k, head_channels=4)
            target = (row, col, 0)
            seen = dependency_map(random_model(name, config), target)[0]
            # what no depth reaches: unseen even by a network deep enough to span the image
            deep = PixelCNNConfig.from_dict({**config.to_dict(), "n_layers": 2 * FIELD_SIZE})
            blind = blind_spot(random_model(name, deep), target)[0]
            earlier = row * FIELD_SIZE + col
            out_of_reach = torch.arange(FIELD_SIZE * FIELD_SIZE).view(FIELD_SIZE, FIELD_SIZE) < earlier
            out_of_reach &= ~seen & ~blind
            text = (f"**{arch}**, {n_layers} layers, {k}x{k}: the output at ({row}, {col}) sees "
                    f"{int(seen.sum())} of the {earlier} earlier pixels. **{int(blind.sum())} lie in its blind spot** "
                    f"(orange: no depth reaches them), {int(out_of_reach.sum())} are only out of reach of "
                    f"{n_layers} layers (pale yellow: more layers reach them).")
            steps = []
            for depth, field in enumerate(field_by_depth(name, config, target), start=1):
                picture = receptive_field_picture(field[0], torch.zeros_like(field[0]), (row, col), scale=8)
                steps.append((picture, f"{depth} layer{'s' if depth > 1 else ''}"))
            return receptive_field_picture(seen, blind, (row, col), out_of_reach=out_of_reach), text, steps

        def on_field_click(evt: gr.SelectData):
            x, y = evt.index
            return min(FIELD_SIZE - 1, int(y) // 16), min(FIELD_SIZE - 1, int(x) // 16)

        def on_example(choice, name):
            return explorer.examples(choice).get(name) if name else gr.skip()

        def on_measure(choice, path, name):
            model = explorer.model(choice)
            cfg = model.config
            if not path:
                raise gr.Error("upload an image or pick a test image first")
            try:
                x, notices = load_upload(path, cfg)
            except UploadError as e:
                raise gr.Error(f"cannot use this file: {e}")
            lines = []
            with torch.no_grad():
                if cfg.conditioning == "class":
                    per_class = torch.stack([model.bits_per_dim(x, torch.tensor([k]))[0]
                                             for k in range(cfg.num_classes)])
                    k = int(per_class.argmin()) if name in (None, AUTO_CLASS) else class_index(cfg, name)
                    cond = torch.tensor([k])
                    best = int(per_class.argmin())
                    lines.append(f"Most likely class: **{cfg.class_name(best)}** ({per_class[best]:.3f} bits/dim).")
                elif cfg.conditioning == "none":
                    cond, k = None, None
                else:
                    raise gr.Error("the likelihood lens needs a class-conditional or unconditional model")
                bits = model.bits_per_subpixel(x, cond)[0]  # (C, H, W)
            bpd = float(bits.mean())
            condition = f" given class **{cfg.class_name(k)}**" if k is not None else ""
            lines.insert(0, f"### {bpd:.3f} bits/dim{condition}")
            if notices:
                lines.append("Notice: " + "; ".join(notices) + ".")
            view = image_grid(x, nrow=1, levels=cfg.levels, padding=0, scale=display_scale(cfg))
            scale = display_scale(cfg)
            state = {"choice": choice, "x": x, "class": k, "scale": scale}
            return view, heat_map(bits.sum(0), scale=scale), "\n\n".join(lines), state, None

        def on_surprise_click(state, evt: gr.SelectData):
            if not state:
                raise gr.Error("measure an image first")
            model = explorer.model(state["choice"])
            x, k, scale = state["x"], state["class"], state["scale"]
            col, row = int(evt.index[0]) // scale, int(evt.index[1]) // scale
            row, col = min(row, model.config.height - 1), min(col, model.config.width - 1)
            cond = torch.tensor([k]) if k is not None else None
            with torch.no_grad():
                probs = model(x, cond)[0, :, :, row, col].softmax(0).T  # (C, levels)
            fig = distribution_figure(probs, x[0, :, row, col])
            fig.suptitle(f"pixel ({row}, {col}), given everything before it", fontsize=10)
            return fig

        def on_complete(state, rows, seed_value):
            if not state:
                raise gr.Error("measure an image first: completion keeps its top rows")
            model = explorer.model(state["choice"])
            cfg = model.config
            rows = int(rows)
            if not 1 <= rows < cfg.height:
                raise gr.Error(f"keep between 1 and {cfg.height - 1} rows")
            given = given_top_rows(state["x"], rows)
            cond = torch.tensor([state["class"]]) if state["class"] is not None else None
            events = stream(model, 1, cond, seed=int(seed_value or 0), given=given)
            for event in paced(events, ROW_FRAME_S):
                yield image_grid(event.images, nrow=1, levels=cfg.levels, padding=0, scale=state["scale"])

        model_outputs = [model_status, class_name, lens_class, example, keep_rows]
        model_choice.change(on_model, model_choice, model_outputs, api_visibility="private")
        hub_button.click(on_hub, hub_id, [model_choice, model_status], api_name="load_hub")
        generation = generate_button.click(
            on_generate, [model_choice, class_name, n_samples, temperature, seed, history_state, playback],
            [samples, progress, history, history_state], api_name="generate", concurrency_limit=2)
        stop_button.click(None, None, None, cancels=[generation])
        field_inputs = [architecture, layers, kernel, target_row, target_col]
        field_button.click(on_field, field_inputs, [field_map, field_text, growth], api_name="receptive_field")
        architecture.change(on_field, field_inputs, [field_map, field_text, growth], api_visibility="private")
        field_map.select(on_field_click, None, [target_row, target_col], api_visibility="private").then(
            on_field, field_inputs, [field_map, field_text, growth], api_visibility="private")
        example.change(on_example, [model_choice, example], upload, api_visibility="private")
        score_button.click(on_measure, [model_choice, upload, lens_class],
                           [model_view, surprise, score_text, lens_state, distribution], api_name="likelihood")
        surprise.select(on_surprise_click, lens_state, distribution, api_visibility="private")
        complete_button.click(on_complete, [lens_state, keep_rows, complete_seed], completion, api_name="complete",
                              concurrency_limit=2)
        if first:
            demo.load(on_model, model_choice, model_outputs, api_visibility="private")
            demo.load(on_field, field_inputs, [field_map, field_text, growth], api_visibility="private")
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    parser.add_argument("--weights", type=Path, default=ROOT / "weights", help="folder of model folders")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per request (default 1: requests run in worker threads, where "
                             "multi-threaded OpenMP was several times slower on small CPUs; two requests "
                             "run at once)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, args.threads))
    demo = build(Explorer(args.weights))
    demo.queue(default_concurrency_limit=2, max_size=32)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size="20mb",
                show_error=True)


if __name__ == "__main__":
    main()
