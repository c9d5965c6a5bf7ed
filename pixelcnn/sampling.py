"""Generation: pixel-by-pixel sampling, naive or cached, streamed as it renders.

`sample(model, n, cond)` returns integer images (n, C, H, W); `stream(...)` yields `SampleProgress`
events while they render. Two engines compute the logits of the next sub-pixel:

* "naive": one full forward pass over the whole image per sub-pixel, H * W * C of them. The plain
  reference; works for both `GatedPixelCNN` and the original `PixelCNN`.
* "cached" (`GatedPixelCNN` only), after Fast PixelCNN++ (Ramachandran et al., 2017): every layer
  keeps its inputs in a buffer. The vertical stack runs once per row, the horizontal stack and the
  head once per pixel and colour sub-step, each on one position with matrix products, so every
  position of every layer is computed once (plus the colour sub-steps), never the whole image.

Guidance (classifier-free guidance, Ho and Salimans, 2022): with `guidance=w` the logits of every
sub-pixel are l_null + w (l_cond - l_null), where l_null are the logits under the model's null
condition (`Condition.null`). w = 1 is plain sampling (the same code path, bit for bit), w = 0
samples the null, w > 1 trades variety for likeness to the condition. Both sets of logits come from
one engine over 2n rows: the n images under their condition, then the same images under the null.

A sketch prior (`SketchPrior`, `prior=`): a blurry picture s of what belongs at each sub-pixel (a face
sketched from its embedding, an auto-encoder's MSE reconstruction) holds the sampling to it. Every
sub-pixel's logits, after guidance, get the log of a Gaussian around the sketch's value,
-strength (v - s)^2 / (2 sigma_1^2) with sigma_1 = (levels - 1) / 8 (32 of 256 levels): the product of
the PixelCNN and the sketch, strength times. Strength 0 is no prior at all (the same code path as
plain sampling, bit for bit); strength k narrows the sketch's Gaussian to sigma_1 / sqrt(k).

The choice of a sub-pixel is made in float32 (float64 for a float64 model) whatever the model's dtype:
a bf16 softmax and cumsum over 256 levels would skew the drawn distribution.

Randomness: all noise comes from `seed`, drawn up front as one uniform number per sub-pixel and
used by inverse-CDF sampling. The noise never depends on the model's outputs, so the same seed with
two nearby conditions gives images that change smoothly (the paper's interpolation figure), and
both engines draw the same image whenever their logits agree.
"""

import numbers
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .conditioning import sketch_log_density
from .layers import raster_order
from .model import GatedPixelCNN, PixelCNN

METHODS = ("cached", "naive")
# the Class picker's default guidance, chosen by measurement: samples recognised as their class
# against w (weights/mnist-class/README.md)
CLASS_GUIDANCE = 2.0


@dataclass
class SampleProgress:
    """One progress event of `stream`.

    images: (n, C, H, W) long, the images so far (sub-pixels not yet generated are 0).
    final: (C, H, W) bool, which sub-pixels hold their final value (the same for every image).
    done / total: sub-pixels final so far, and in all (C * H * W, a given prefix included).
    elapsed: seconds spent generating so far; time the caller spends between events (drawing,
        sending, or pausing a slow-motion playback) is not counted, so done / elapsed is the rate.
    """

    images: Tensor
    final: Tensor
    done: int
    total: int
    elapsed: float

    @property
    def finished(self) -> bool:
        return self.done == self.total


@dataclass(frozen=True)
class SketchPrior:
    """A sketch that sampling is held to (see the module docstring).

    sketch: floats in [0, 1], (C, H, W) for every image or (n, C, H, W), one per image.
    strength: >= 0; 0 is plain sampling, larger values hold the images closer to the sketch.
    """

    sketch: Tensor
    strength: float

    def checked(self, n: int, shape: tuple[int, int, int]) -> "SketchPrior":
        """ValueError unless the sketch fits n images of `shape` (C, H, W) and the strength is valid."""
        strength = self.strength
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength < float("inf"):
            raise ValueError(f"the sketch prior's strength must be a finite number >= 0 (0: no prior), got {strength!r}")
        sketch = torch.as_tensor(self.sketch)
        if sketch.dim() == 3:
            sketch = sketch.unsqueeze(0)
        if sketch.dim() != 4 or tuple(sketch.shape[1:]) != shape or sketch.shape[0] not in (1, n):
            raise ValueError(f"the sketch must have shape {shape}, (1, *{shape}) or ({n}, *{shape}), "
                             f"got {tuple(sketch.shape)}")
        if not sketch.dtype.is_floating_point or not torch.isfinite(sketch).all():
            raise ValueError("the sketch must hold finite floats in [0, 1]")
        return SketchPrior(sketch.expand(n, *shape), float(strength))


class PriorEngine:
    """An engine's logits (guided or not) plus the sketch prior's log-density, for n images."""

    def __init__(self, inner: Any, prior: SketchPrior, levels: int, device: torch.device, dtype: torch.dtype) -> None:
        self.inner, self.images = inner, inner.images
        self.sketch = prior.sketch.to(device, dtype)  # (n, C, H, W) in [0, 1]
        self.levels, self.strength = levels, prior.strength

    def logits(self, i: int, j: int, c: int) -> Tensor:
        """(n, levels): the inner logits - strength (v - s)^2 / (2 sigma_1^2)."""
        prior = sketch_log_density(self.sketch[:, c, i, j], self.levels, self.strength)
        return self.inner.logits(i, j, c).to(prior.dtype) + prior

    def commit(self, i: int, j: int, c: int, values: Tensor) -> None:
        self.inner.commit(i, j, c, values)


def choose(logits: Tensor, uniform: Tensor, temperature: float) -> Tensor:
    """Inverse-CDF sampling: logits (n, levels), one uniform in [0, 1) per row -> values (n,) long.

    temperature 0 takes the argmax. Below 1 the maximum is subtracted before dividing, so tiny
    temperatures cannot overflow; softmax itself keeps large ones finite.
    """
    if temperature == 0:
        return logits.argmax(dim=1)
    if temperature < 1:
        logits = (logits - logits.amax(dim=1, keepdim=True)) / temperature
    elif temperature > 1:
        logits = logits / temperature
    cdf = F.softmax(logits, dim=1).cumsum_(dim=1)
    threshold = (uniform * cdf[:, -1]).unsqueeze_(1)
    return torch.searchsorted(cdf, threshold, right=True).squeeze_(1).clamp_(max=logits.shape[1] - 1)


def given_top_rows(images: Tensor, rows: int) -> Tensor:
    """A `given` for completion: keep the top `rows` rows of images (.., C, H, W), mark the rest -1."""
    given = images.clone().long()
    given[..., rows:, :] = -1
    return given


# --------------------------------------------------------------------------------------- engines
class NaiveEngine:
    """Logits of one sub-pixel from a full forward pass over the current images."""

    def __init__(self, model: GatedPixelCNN | PixelCNN, images: Tensor, h: Tensor | None) -> None:
        self.model, self.images, self.h = model, images, h

    @torch.no_grad()
    def logits(self, i: int, j: int, c: int) -> Tensor:
        """(n, levels) for sub-pixel (i, j, c)."""
        return self.model(self.images, self.h)[:, :, c, i, j]

    def commit(self, i: int, j: int, c: int, values: Tensor) -> None:
        self.images[:, c, i, j] = values


class CachedEngine:
    """Logits of one sub-pixel of a `GatedPixelCNN` from per-layer caches of its inputs.

    Buffers, for layer l with input width ch_l and pad s_l = k_l // 2:
      vertical[l]:   (n, ch_l, s_l + H, s_l + W + s_l)  zero border above and at both sides
      horizontal[l]: (H, n, s_l + W, ch_l)              zero border on the left; pixel-major, so the
                                                        window of one pixel is a view, not a copy
    Layer 0's input is the scaled image, written into both on every commit.
    """

    def __init__(self, model: GatedPixelCNN, images: Tensor, h: Tensor | None, start: int = 0) -> None:
        """start: the length of the known raster prefix of `images` (its activations are filled in)."""
        cfg = model.config
        self.model, self.images = model, images
        n, height, width = images.shape[0], cfg.height, cfg.width
        device, dtype = model.device, model.dtype
        # integer level -> the network's input value, as `model.scale` computes it
        self.level_values = model.scale(torch.arange(cfg.levels, device=device))
        self.prior_image = (h.view(n, cfg.image_channels, height, width)
                            if h is not None and model.condition.log_prior(h[:1]) is not None else None)
        with torch.no_grad():
            self.biases = model.condition_biases(model.condition.layer_input(h))
            self.pads = [layer.pad for layer in model.layers]
            self.vertical = []
            self.horizontal = []
            for layer, s in zip(model.layers, self.pads):
                ch = layer.vertical.in_channels
                self.vertical.append(torch.zeros(n, ch, s + height, width + 2 * s, dtype=dtype, device=device))
                self.horizontal.append(torch.zeros(height, n, s + width, ch, dtype=dtype, device=device))
            self.layers = list(model.layers)
            self.flat = [layer.flat_horizontal_weights() for layer in model.layers]
            self.flat_head = model.head.flat_weights()
            self.links_zero = [layer.vertical_to_horizontal(
                torch.zeros(n, 2 * cfg.hidden_channels, 1, width, dtype=dtype, device=device))
                for layer in model.layers]
            if start > 0:  # a given prefix: its activations come from one full pass
                self._prefill(model.scale(images))
        self.row = -1  # the row whose horizontal biases are ready

    def _prefill(self, x_scaled: Tensor) -> None:
        """Fill every buffer with one full pass; correct before the first unknown sub-pixel.

        Entries at or after it see unknown values, but every one of them is rewritten (by the row and
        pixel steps below) before anything reads it.
        """
        vertical = horizontal = x_scaled
        width = x_scaled.shape[-1]
        for layer, bias, s, vbuf, hbuf in zip(self.model.layers, self.biases, self.pads, self.vertical,
                                              self.horizontal):
            vbuf[:, :, s:, s:s + width] = vertical
            hbuf[:, :, s:, :] = horizontal.permute(2, 0, 3, 1)
            vertical, horizontal = layer(vertical, horizontal, bias)

    def _start_row(self, i: int) -> None:
        """Run the vertical stack at row i - 1 and prepare the horizontal biases of row i."""
        layers = self.model.layers
        self.row_bias = []
        for l, layer in enumerate(layers):
            bias_v, bias_h = self.biases[l]
            if i == 0:
                link = self.links_zero[l]  # shifted down, row 0 sees zeros
            else:
                r, s = i - 1, self.pads[l]
                window = self.vertical[l][:, :, r:r + s + 1]  # rows r - s .. r
                if bias_v is not None and bias_v.shape[-2] > 1:
                    bias_v = bias_v[:, :, r:r + 1]
                v_out, link = layer.vertical_row(window, bias_v)
                if l + 1 < len(layers):
                    s_next = self.pads[l + 1]
                    self.vertical[l + 1][:, :, r + s_next, s_next:s_next + v_out.shape[-1]] = v_out[:, :, 0]
            if bias_h is not None and bias_h.shape[-2] > 1:
                bias_h = bias_h[:, :, i:i + 1]
            self.row_bias.append(layer.horizontal_row_bias(link, bias_h).unbind(0))  # W x (n, 2p)
        # Views into row i of every horizontal buffer, made once per row so that a pixel step
        # only computes: windows[l][j] is layer l's input at pixels j - s .. j, flattened (n, (s+1) ch);
        # targets[l][j] is where layer l's output at pixel j goes, inside layer l + 1's input.
        self.windows, positions = [], []
        for buf, s in zip(self.horizontal, self.pads):
            row = buf.select(0, i)  # (n, s + W, ch)
            ch = row.shape[-1]
            self.windows.append(row.flatten(1).unfold(1, (s + 1) * ch, ch).unbind(1))
            positions.append(row.unbind(1))
        self.targets = [positions[l + 1][self.pads[l + 1]:] for l in range(len(positions) - 1)] + [None]
        self.image_row = positions[0][self.pads[0]:]  # (n, C) views of the scaled image's row i
        self.row = i

    @torch.no_grad()
    def logits(self, i: int, j: int, c: int) -> Tensor:
        """(n, levels) for sub-pixel (i, j, c): the horizontal stack and the head at pixel (i, j)."""
        if self.row != i:
            self._start_row(i)
        out = None
        for layer, flat, windows, biases, targets in zip(self.layers, self.flat, self.windows, self.row_bias,
                                                         self.targets):
            # a residual layer's input at this pixel is the previous layer's output
            out = layer.horizontal_pixel(windows[j], biases[j], out, flat, None if targets is None else targets[j])
        logits = self.model.head.pixel(out, self.flat_head[c])
        if self.prior_image is not None:  # a model trained with its sketch prior (`PixelCNNConfig.sketch_prior`)
            logits = logits + sketch_log_density(self.prior_image[:, c, i, j], self.model.config.levels,
                                                 self.model.config.sketch_prior).to(logits.dtype)
        return logits

    @torch.no_grad()
    def commit(self, i: int, j: int, c: int, values: Tensor) -> None:
        self.images[:, c, i, j] = values
        scaled = self.level_values[values]
        s = self.pads[0]
        self.vertical[0][:, c, i + s, j + s] = scaled
        self.image_row[j][:, c] = scaled


class GuidedEngine:
    """Guided logits of one sub-pixel from an engine over 2n rows: the n images under their
    conditions h, then the same n images under the null condition."""

    def __init__(self, make_engine: Callable[..., Any], model: GatedPixelCNN | PixelCNN, images: Tensor, h: Tensor,
                 guidance: float) -> None:
        self.images, self.n, self.guidance = images, images.shape[0], guidance
        null = model.condition.null(self.n).to(device=h.device, dtype=h.dtype)
        self.inner = make_engine(model, torch.cat([images, images]), torch.cat([h, null]))

    def logits(self, i: int, j: int, c: int) -> Tensor:
        """(n, levels): l_null + w (l_cond - l_null)."""
        both = self.inner.logits(i, j, c)
        cond, null = both[:self.n], both[self.n:]
        return null + self.guidance * (cond - null)

    def commit(self, i: int, j: int, c: int, values: Tensor) -> None:
        self.images[:, c, i, j] = values
        self.inner.commit(i, j, c, values.repeat(2))


SEED_MODULUS = 2 ** 64  # torch's generators take 64-bit seeds; any int is taken modulo this


def check_seed(seed: Any) -> int:
    """A seed for torch's generator: any Python int (or integer NumPy scalar), taken modulo 2**64, so
    that every int gives images and ints that differ by a multiple of 2**64 give the same ones (as
    torch already does for negative seeds); None draws a fresh one. ValueError for anything else."""
    if seed is None:
        return secrets.randbits(63)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int (any size; it is taken modulo 2**64) or None, got {seed!r}")
    return int(seed) % SEED_MODULUS


def check_guidance(model: GatedPixelCNN | PixelCNN, guidance: float) -> float:
    """guidance as a float; ValueError unless it is a finite number >= 0 that the model can use."""
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not 0 <= guidance < float("inf"):
        raise ValueError(f"guidance must be a finite number >= 0 (1: plain sampling), got {guidance!r}")
    if guidance != 1 and model.condition.width == 0:
        raise ValueError("guidance needs a conditional model; this one is unconditional (use guidance=1)")
    return float(guidance)


# ------------------------------------------------------------------------------------- public API
def _check_given(model: GatedPixelCNN | PixelCNN, given: Tensor | None, n: int) -> tuple[Tensor, int]:
    """Images to start from (unknowns as 0) and the length of the known raster prefix."""
    cfg = model.config
    shape = (cfg.image_channels, cfg.height, cfg.width)
    device = model.device
    if given is None:
        return torch.zeros(n, *shape, dtype=torch.long, device=device), 0
    given = torch.as_tensor(given)
    if given.dim() == 3:
        given = given.unsqueeze(0)
    if given.dim() != 4 or tuple(given.shape[1:]) != shape or given.shape[0] not in (1, n):
        raise ValueError(f"given must have shape {shape}, (1, *{shape}) or ({n}, *{shape}), got {tuple(given.shape)}")
    if given.dtype.is_floating_point or given.dtype == torch.bool:
        raise ValueError(f"given must hold integers in [0, {cfg.levels}) and -1 for unknown sub-pixels, "
                         f"got dtype {given.dtype}")
    if int(given.min()) < -1 or int(given.max()) >= cfg.levels:
        raise ValueError(f"given values must lie in [0, {cfg.levels}), or be -1 for unknown sub-pixels")
    given = given.expand(n, *shape).to(device)
    known = (given >= 0).permute(0, 2, 3, 1).reshape(n, -1)  # raster order
    prefix = int(known.sum(1)[0])
    if not (known[:, :prefix].all() and not known[:, prefix:].any()):
        raise ValueError("the known sub-pixels of given must form the same raster prefix in every image "
                         "(whole rows from the top, then a row's left part, then R before G before B)")
    return given.clamp(min=0).long().clone(), prefix


def _check_stream(model: GatedPixelCNN | PixelCNN, n: int, method: str, temperature: float) -> None:
    """ValueError unless n, method and temperature can drive `stream`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "cached" and not isinstance(model, GatedPixelCNN):
        raise ValueError(f"method='cached' needs a GatedPixelCNN; use method='naive' for {type(model).__name__}")
    if not isinstance(temperature, (int, float)) or not (0 <= temperature < float("inf")):
        raise ValueError(f"temperature must be a finite number >= 0 (0 takes the argmax), got {temperature!r}")


def choice_dtype(model: GatedPixelCNN | PixelCNN) -> torch.dtype:
    """The dtype a sub-pixel is chosen in: float32, or the model's own when it is wider (float64)."""
    return torch.promote_types(model.dtype, torch.float32)


def build_engine(model: GatedPixelCNN | PixelCNN, images: Tensor, h: Tensor | None, start: int, method: str,
                 guidance: float, prior: SketchPrior | None) -> Any:
    """The engine of one stream: cached or naive, wrapped for guidance (w != 1) and for a sketch
    prior (strength > 0); plain sampling is the bare engine."""
    # the cached engine fills in the activations of a given prefix; the naive one recomputes everything
    make_engine = partial(CachedEngine, start=start) if method == "cached" else NaiveEngine
    if guidance == 1:
        engine = make_engine(model, images, h)
    else:
        engine = GuidedEngine(make_engine, model, images, h, guidance)
    if prior is not None and prior.strength > 0:
        engine = PriorEngine(engine, prior, model.config.levels, images.device, choice_dtype(model))
    return engine


def raster_uniforms(model: GatedPixelCNN | PixelCNN, n: int, seed: int, shared_noise: bool) -> Tensor:
    """One uniform per sub-pixel and image from `seed`, indexed by raster position: (total, n)."""
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    uniform = torch.rand(1 if shared_noise else n, cfg.image_channels, cfg.height, cfg.width, generator=gen,
                         dtype=torch.float64).expand(n, -1, -1, -1)
    order = raster_order(cfg.image_channels, cfg.height, cfg.width)
    return uniform.flatten(1)[:, order.flatten().argsort()].t().to(model.device, choice_dtype(model))


def stream(model: GatedPixelCNN | PixelCNN, n: int, cond=None, *, seed: int | None = None,
           temperature: float = 1.0, method: str = "cached", given: Tensor | None = None,
           every: int | None = None, shared_noise: bool = False, guidance: float = 1.0,
           prior: SketchPrior | None = None, clock: Callable[[], float] = time.perf_counter
           ) -> Iterator[SampleProgress]:
    """Generate n images and yield a `SampleProgress` every `every` sub-pixels and at the end.

    Arguments are those of `sample`; `every` defaults to one row (W * C sub-pixels). The last event
    holds exactly what `sample` returns. Closing the generator stops the work at once.
    shared_noise: every image uses the noise of image 0, so images differ only by their condition
    (interpolation rows).
    clock: the timer of `SampleProgress.elapsed` (seconds; a test passes its own).
    """
    cfg = model.config
    _check_stream(model, n, method, temperature)
    total = cfg.num_subpixels
    every = every or cfg.width * cfg.image_channels
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive int, got {every!r}")
    guidance = check_guidance(model, guidance)
    seed = check_seed(seed)
    if prior is not None:
        prior = prior.checked(n, (cfg.image_channels, cfg.height, cfg.width))
    images, start = _check_given(model, given, n)
    # one condition for all, or one per image; raw or already h -> validated h, before any work
    h = model.encode_condition(model.condition.broadcast(cond, n), n)
    uniform = raster_uniforms(model, n, seed, shared_noise)
    order = raster_order(cfg.image_channels, cfg.height, cfg.width)

    busy = 0.0  # generation time, without the time spent suspended at a yield

    def event(done: int) -> SampleProgress:
        return SampleProgress(images.clone(), order < done, done, total, busy + clock() - t0)

    t0 = clock()
    engine = build_engine(model, images, h, start, method, guidance, prior)
    channels, width, dtype = cfg.image_channels, cfg.width, uniform.dtype
    for k in range(start, total):
        pixel, c = divmod(k, channels)
        i, j = divmod(pixel, width)
        values = choose(engine.logits(i, j, c).to(dtype), uniform[k], float(temperature))
        engine.commit(i, j, c, values)
        if (k + 1) % every == 0 and k + 1 < total:
            progress = event(k + 1)
            busy = progress.elapsed
            yield progress
            t0 = clock()
    yield event(total)


def sample(model: GatedPixelCNN | PixelCNN, n: int, cond=None, *, seed: int | None = None,
           temperature: float = 1.0, method: str = "cached", given: Tensor | None = None,
           guidance: float = 1.0, prior: SketchPrior | None = None) -> Tensor:
    """Generate n images: integer tensor (n, C, H, W) on the model's device.

    cond: class ids (n,) or one int for all; vectors (n, cond_dim) or one (cond_dim,) for all; None
        for an unconditional model. Or h itself (n, F) or (F,): a one-hot mix, an interpolated
        embedding, an encoder's code (see `pixelcnn.conditioning`).
    seed: makes the result reproducible (None draws a fresh one); any int, taken modulo 2**64.
    temperature: divides the logits; 0 takes the most likely value.
    method: "cached" (fast, GatedPixelCNN) or "naive" (a full forward pass per sub-pixel).
    given: images (n or 1, C, H, W) whose known raster prefix is kept, unknown sub-pixels -1;
        see `given_top_rows`.
    guidance: w of classifier-free guidance (see the module docstring); 1 is plain sampling.
    prior: a `SketchPrior` that holds the images to a sketch (see the module docstring); None or
        strength 0 is plain sampling.
    """
    *_, last = stream(model, n, cond, seed=seed, temperature=temperature, method=method, given=given,
                      every=model.config.num_subpixels, guidance=guidance, prior=prior)  # one event: the finished images
    return last.images


def _encode_ends(model: GatedPixelCNN | PixelCNN, start, end) -> Tensor:
    """Two conditions (class ids, vectors or h) -> their h, stacked: (2, F)."""
    pair = torch.stack([torch.as_tensor(start), torch.as_tensor(end)])
    return model.encode_condition(model.condition.broadcast(pair, 2), 2)


def interpolate(model: GatedPixelCNN | PixelCNN, start, end, steps: int, *, seed: int | None = None,
                temperature: float = 1.0, method: str = "cached", every: int | None = None,
                guidance: float = 1.0, prior: SketchPrior | None = None) -> Iterator[SampleProgress]:
    """A row of `steps` images whose condition moves linearly from `start` to `end`, streamed.

    start, end: one condition each (a class id, a vector, or h). Every image uses the same noise, so
    only the condition changes along the row: image 0 equals `sample(model, 1, start, seed=seed)` and
    the last equals `sample(model, 1, end, seed=seed)`. prior: a `SketchPrior` with one sketch per
    image of the row (e.g. the sketches of the interpolated embeddings), or None.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2 (both ends included), got {steps!r}")
    ends = _encode_ends(model, start, end)
    alpha = torch.linspace(0, 1, steps, dtype=ends.dtype, device=ends.device)[:, None]
    row = (1 - alpha) * ends[0] + alpha * ends[1]
    return stream(model, steps, row, seed=seed, temperature=temperature, method=method, every=every,
                  shared_noise=True, guidance=guidance, prior=prior)


def between(model: GatedPixelCNN | PixelCNN, start, end, alpha: float, **kwargs) -> Tensor:
    """The image at `alpha` (0: start, 1: end) of an interpolation with the same seed: (1, C, H, W)."""
    ends = _encode_ends(model, start, end)
    return sample(model, 1, (1 - alpha) * ends[0] + alpha * ends[1], **kwargs)
