"""Weight surgery: starting a run from saved weights, and the condition's start.

- `load_initial_weights` (`--init_from`): a copy, a larger model grown from it (`grow`) or a warm start from a model
  of another conditioning (`warm_start`, with `folded_class_biases`).
- `load_code_weights` and `freeze_code` (`--code_from`, `--freeze_code`): an auto-encoder's code from
  an MSE auto-encoder.
- `fit_condition_statistics`, `set_average_null`: a fresh condition's standardisation and null.
"""

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import MSEAutoEncoder, PixelCNNAutoEncoder, conditioned_part
from .data import ImageDataset
from .hub import from_pretrained, read_metrics
from .layers import ConditionBias, channel_groups
from .model import GatedPixelCNN
from .sketch import EmbeddingSketch, PortraitModel


class TrainingError(RuntimeError):
    """The run cannot go on (a NaN loss, a mismatched resume, weights that do not fit); the last
    checkpoint stays intact."""


def initial_history(source: str | None) -> list[dict[str, Any]]:
    """The runs recorded in the metrics.json of a local model folder (empty for none or a Hub id)."""
    if not source or not Path(source).is_dir():
        return []
    return list((read_metrics(source) or {}).get("history", []))


CONDITION_FIELDS = ("conditioning", "cond_dim", "num_classes", "class_names", "spatial_channels", "standardise_cond",
                    "learned_null", "sketch_prior")


def load_initial_weights(model: nn.Module, source: str) -> list[dict[str, Any]]:
    """Copy the weights of a saved model into `model`; returns the history in its metrics.json.

    A model of the same shape is copied whole (class names may differ); a smaller gated model is
    grown into it (`grow`). A plain PixelCNN that differs from `model`'s PixelCNN (or auto-encoder
    decoder) only in its conditioning is a warm start (`warm_start`).
    """
    start = from_pretrained(source)
    if isinstance(start, PortraitModel) and not isinstance(model, PortraitModel):
        start = start.decoder  # a portrait model's PixelCNN; its sketch comes in with --sketch_from
    names = ("class_names", "learned_null")
    if type(start) is type(model) and _config_without(start, names) == _config_without(model, names):
        model.load_state_dict(start.state_dict())
        return initial_history(source)
    if type(start) is type(model) and is_grown_twin(model, start):
        copied, total = grow(model, start), len(model.state_dict())
        old, new = (f"{m.config.n_layers} layers x {m.config.hidden_channels} channels, kernel {m.config.kernel_size}"
                    for m in (start, model))
        print(f"--init_from {source}: grew {old}, into {new}, copying {copied} of {total} tensors; what is new "
              f"starts unread, so the model starts at {source}'s likelihood", flush=True)
        return initial_history(source)
    target = model.decoder if isinstance(model, PixelCNNAutoEncoder) else model
    if isinstance(start, PixelCNNAutoEncoder) and isinstance(model, PixelCNNAutoEncoder):
        start = start.decoder  # an auto-encoder of another conditioning: its decoder's layers, not its encoder
    if (isinstance(start, PixelCNNAutoEncoder) or type(start) is not type(target)
            or _config_without(start, CONDITION_FIELDS) != _config_without(target, CONDITION_FIELDS)):
        raise TrainingError(f"--init_from {source}: it holds a {type(start).__name__} whose config differs from "
                            f"this run's model ({start.config.to_json()}), beyond its conditioning")
    copied, total = warm_start(target, start), len(target.state_dict())
    print(f"--init_from {source}: copied {copied} of {total} tensors; the other {total - copied}, the "
          f"conditioning's, start fresh (V = 0)", flush=True)
    return initial_history(source)


def learned_null_in(source: str, conditioning: str | None = None) -> bool:
    """Whether the saved model at `source` (or its decoder) learnt its null condition (of this
    `conditioning`, when one is given: a warm start into another kind starts a fresh null)."""
    start = from_pretrained(source)
    part = conditioned_part(start)
    return (part is not None and part.config.learned_null
            and conditioning in (None, part.config.conditioning))


def load_code_weights(model: nn.Module, source: str) -> str:
    """Start a PixelCNN auto-encoder's encoder, and a "sketch" decoder's m(h), from a saved MSE
    auto-encoder of the same code (`--code_from`): its code already holds the image's layout and
    its decoder already draws it. Returns what was copied, in words."""
    start = from_pretrained(source)
    if not isinstance(model, PixelCNNAutoEncoder) or not isinstance(start, MSEAutoEncoder):
        raise TrainingError(f"--code_from {source}: it starts a PixelCNN auto-encoder (--encoder conv) from an "
                            f"MSE auto-encoder, got a {type(start).__name__} for a {type(model).__name__}")
    if start.encoder.config != model.encoder.config:
        raise TrainingError(f"--code_from {source}: its encoder ({start.encoder.config}) differs from this run's "
                            f"({model.encoder.config}); match --cond_dim and --encoder_channels")
    model.encoder.load_state_dict(start.encoder.state_dict())
    if model.config.conditioning != "sketch":
        return f"encoder copied from {source}"
    sketch = model.decoder.condition.spatial_net.decoder
    if sketch.config != start.decoder.config:
        raise TrainingError(f"--code_from {source}: its decoder ({start.decoder.config}) cannot be this run's sketch "
                            f"({sketch.config}); set --spatial_channels to its {start.decoder.config.channels}")
    sketch.load_state_dict(start.decoder.state_dict())
    return f"encoder and m(h), the sketch, copied from {source}"


def freeze_code(model: nn.Module) -> int:
    """Stop an auto-encoder's encoder and its decoder's m(h) from learning (`--freeze_code`): the
    code and the sketch stay the MSE auto-encoder's, which keep the image's layout, and the PixelCNN
    learns to draw what they leave open. Returns how many parameters were frozen."""
    if not isinstance(model, PixelCNNAutoEncoder):
        raise TrainingError("--freeze_code freezes a PixelCNN auto-encoder's encoder: it needs --encoder conv")
    # a learned null condition (--cond_dropout) still learns: it is no part of the code
    frozen = [*model.encoder.parameters(),
              *(p for name, p in model.decoder.condition.named_parameters() if name != "null_h")]
    for parameter in frozen:
        parameter.requires_grad_(False)
    return sum(parameter.numel() for parameter in frozen)


def _config_without(model: nn.Module, names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in model.config.to_dict().items() if k not in names}


GROWN_FIELDS = ("n_layers", "hidden_channels", "head_channels", "kernel_size")


def is_grown_twin(model: nn.Module, start: nn.Module) -> bool:
    """Whether `model` is a gated PixelCNN like `start` but larger: no fewer layers, hidden or head
    channels, no smaller kernel, and more of at least one (see `grow`)."""
    if not (isinstance(model, GatedPixelCNN) and isinstance(start, GatedPixelCNN)):
        return False
    names = ("class_names", "learned_null", *GROWN_FIELDS)
    sizes = [(getattr(start.config, n), getattr(model.config, n)) for n in GROWN_FIELDS]
    return (_config_without(start, names) == _config_without(model, names)
            and all(old <= new for old, new in sizes) and any(old < new for old, new in sizes))


def copy_matching_tensors(target: nn.Module, start: nn.Module, skip: tuple[str, ...] = (),
                          extra: dict[str, torch.Tensor] | None = None) -> int:
    """Load every tensor of `start` that `target` has under the same name and shape (except names
    starting with `skip`), then `extra`; returns how many were loaded."""
    state = target.state_dict()
    shared = {k: v for k, v in start.state_dict().items()
              if k in state and state[k].shape == v.shape and not k.startswith(skip)}
    shared.update(extra or {})
    target.load_state_dict(shared, strict=False)
    return len(shared)


def grouped_positions(old: int, new: int, groups: int) -> torch.Tensor:
    """Where each of `old` colour-grouped channels sits among `new` (`channel_groups`): channel r of
    group c goes to place r of group c, so every mask lets it see what it saw before. (old,) long."""
    old_groups, new_groups = channel_groups(old, groups), channel_groups(new, groups)
    old_first = torch.searchsorted(old_groups, torch.arange(groups))
    new_first = torch.searchsorted(new_groups, torch.arange(groups))
    if (torch.bincount(old_groups, minlength=groups) > torch.bincount(new_groups, minlength=groups)).any():
        raise TrainingError(f"cannot grow {old} channels into {new}: a colour group would shrink")
    return new_first[old_groups] + torch.arange(old) - old_first[old_groups]


def _tensor_spaces(name: str) -> tuple[str | None, str | None]:
    """Which channel space (hidden "p", gate "2p", "head", or None: unchanged) a gated model's
    tensor indexes along its output and input dimension. Layer 0 reads the image, the others "p"."""
    if name.startswith("head.hidden."):
        return "head", "p"
    if name.startswith("head.logits."):
        return None, "head"
    if not name.startswith("layers."):
        return None, None
    _, index, module, *_ = name.split(".")
    layer_input = "p" if int(index) > 0 else None
    return {"vertical": ("2p", layer_input), "horizontal": ("2p", layer_input),
            "vertical_to_horizontal": ("2p", "2p"), "horizontal_out": ("p", "p"),
            "cond_vertical": ("2p", None), "cond_horizontal": ("2p", None)}.get(module, (None, None))


def padded_kernel(name: str, weight: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A gated layer's convolution weight with its kernel padded by zeros to `shape`'s (a larger
    `kernel_size`). Each stack's last row and column are the current ones (`GatedLayer`), so the
    vertical kernel grows upwards and to both sides, the horizontal one to the left."""
    if weight.dim() < 4 or weight.shape[-2:] == shape[-2:]:
        return weight
    rows, cols = shape[-2] - weight.shape[-2], shape[-1] - weight.shape[-1]
    if name.split(".")[2] == "horizontal":
        return F.pad(weight, (cols, 0, 0, 0))
    return F.pad(weight, (cols // 2, cols // 2, rows, 0))


@torch.no_grad()
def grow(target: nn.Module, start: nn.Module) -> int:
    """Copy a gated PixelCNN into `target`, the same model with more layers, channels or a larger
    kernel (a grown twin); returns how many tensors were copied.

    Every tensor of `start` is placed at its channels' positions in `target` (`grouped_positions`);
    the new channels keep their fresh weights but every old weight that would read them is 0, a
    larger kernel's new taps start at 0 (`padded_kernel`), and the new layers sit on top with their
    horizontal output at 0, so the residual stream passes through.
    `target` therefore starts with exactly `start`'s likelihood, and new channels and layers learn
    from the first step (Net2Net's function-preserving growth). Depth and a larger kernel widen
    what each sub-pixel sees (`pixelcnn.receptive_field`); channels add capacity.
    """
    groups = start.config.image_channels
    p_old, p_new = start.config.hidden_channels, target.config.hidden_channels
    hidden = grouped_positions(p_old, p_new, groups)
    places = {"p": hidden, "2p": torch.cat([hidden, hidden + p_new]),
              "head": grouped_positions(start.config.head_channels, target.config.head_channels, groups)}
    state, grown = target.state_dict(), {}
    for name, old in start.state_dict().items():
        if name not in state:
            continue  # e.g. the vertical condition bias of start's last layer, which had no vertical output
        out_space, in_space = _tensor_spaces(name)
        new, old = state[name].clone(), padded_kernel(name, old, state[name].shape)
        rows = places[out_space] if out_space else torch.arange(old.shape[0])
        if in_space is None or old.dim() == 1:
            new[rows] = old
        else:
            unread = torch.ones(new.shape[1], dtype=torch.bool).index_fill_(0, places[in_space], False)
            new[:, unread] = 0  # nothing reads a new channel yet
            new[rows[:, None], places[in_space]] = old
        grown[name] = new
    target.load_state_dict(grown, strict=False)
    for layer in target.layers[start.config.n_layers:]:
        layer.horizontal_out.weight.zero_()
        layer.horizontal_out.bias.zero_()
    return len(grown)


def warm_start(target: nn.Module, start: nn.Module) -> int:
    """Copy `start`'s layers into a PixelCNN that differs only in its conditioning; returns how
    many tensors were copied. The conditioning weights, which have no counterpart, start fresh;
    a class model's class biases are folded in (`folded_class_biases`) and every V is zeroed, so
    training starts from `start`'s likelihood with its condition averaged out."""
    conditioning = tuple(f"{name}." for name, module in target.named_modules()
                         if isinstance(module, ConditionBias) or name == "condition")
    copied = copy_matching_tensors(target, start, skip=conditioning, extra=folded_class_biases(start))
    zero_condition_weights(target)
    return copied


def folded_class_biases(model: nn.Module) -> dict[str, torch.Tensor]:
    """A class-conditional gated model's gate biases with its class biases V h folded in, for h the
    mean one-hot (every class at once): the model without its condition, as close as it gets.

    The vertical class bias is added after the vertical-to-horizontal link, the convolution's own
    bias before it: the link's bias takes the difference back out (exact below the first row)."""
    if model.config.conditioning != "class" or model.config.architecture != "gated":
        return {}
    state, out = model.state_dict(), {}
    for name, weight in state.items():
        if not name.endswith(".proj.weight") or ".cond_" not in name:
            continue
        layer, stack = name.split(".cond_")[0], name.split(".cond_")[1].split(".")[0]  # vertical / horizontal
        mean_bias = weight.mean(dim=1)  # (2p,) = V h for h the mean one-hot
        out[f"{layer}.{stack}.bias"] = state[f"{layer}.{stack}.bias"] + mean_bias
        if stack == "vertical":
            link = state[f"{layer}.vertical_to_horizontal.weight"][:, :, 0, 0]
            out[f"{layer}.vertical_to_horizontal.bias"] = (state[f"{layer}.vertical_to_horizontal.bias"]
                                                           - link @ mean_bias)
    return out


def statistics_fitted(model: nn.Module) -> bool:
    """Whether a model with `standardise_cond` holds statistics (a warm start from a model without
    them, or without conditioning, leaves them at mean 0 and std 1)."""
    if isinstance(model, EmbeddingSketch):
        return bool(model.cond_mean.any() or (model.cond_std != 1).any())
    if not getattr(getattr(model, "config", None), "standardise_cond", False):
        return True
    condition = model.condition
    return bool(condition.cond_mean.any() or (condition.cond_std != 1).any())


def fit_condition_statistics(model: nn.Module, data: ImageDataset) -> bool:
    """A fresh model with `standardise_cond` takes its mean and std of h from the training vectors,
    and starts with every V = 0: it starts as an unconditional model, where V's default initialisation
    would add a random bias of std ~0.6 per image to every gate."""
    if isinstance(model, EmbeddingSketch):
        model.fit_statistics(data.vectors)
        return True
    if not getattr(model.config, "standardise_cond", False):
        return False
    model.condition.fit_statistics(data.vectors)
    zero_condition_weights(model)
    return True


@torch.no_grad()
def zero_condition_weights(model: nn.Module) -> None:
    """Every layer's V = 0: the model's likelihood no longer depends on its condition."""
    for module in model.modules():
        if isinstance(module, ConditionBias):
            module.proj.weight.zero_()


@torch.no_grad()
def set_average_null(model: nn.Module, data: ImageDataset, device: torch.device, limit: int = 5000) -> bool:
    """Set the null condition to the mean h over (the first `limit` of) the training images: class
    frequencies, the mean embedding, or an auto-encoder's mean code. False when there is none."""
    part = conditioned_part(model)
    if part is None or part.condition.width == 0:
        return False
    index = torch.arange(min(limit, len(data)))
    codes = []
    for chunk in index.split(500):
        batch = data.batch(chunk, part.config.levels)
        if isinstance(model, PixelCNNAutoEncoder):
            codes.append(model.encode(batch["images"].to(device)))
        else:
            codes.append(part.encode_condition(condition_of(model, batch, device), len(chunk)))
    part.condition.set_average(torch.cat(codes).double().mean(0))
    return True


def condition_of(model: nn.Module, batch: dict[str, Any], device: torch.device) -> Any:
    """The raw condition of a batch for this model: the field its condition names, or None."""
    field = model.condition_field
    return None if field is None else batch[field].to(device)
