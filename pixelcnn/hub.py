"""Saving and loading models as `config.json` + `model.safetensors`, locally or on the Hugging Face Hub.

`huggingface_hub.PyTorchModelHubMixin` supplies `save_pretrained` and `push_to_hub`. On top of it:
  * `config.json` names the architecture, so `pixelcnn.from_pretrained` builds the right class;
  * weights load strictly and only from safetensors (never a pickle), so a wrong or partial
    checkpoint is an error instead of a model with silently random layers;
  * a composite (an encoder with its decoder) is saved one sub-folder per part, each a complete
    checkpoint, and loads as one object;
  * every failure (no such folder, no network, not a PixelCNN) is one `CheckpointError`;
  * measured figures live in `metrics.json` beside the weights (`read_metrics`), never in the card.
"""

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import safetensors.torch
import torch

with warnings.catch_warnings():
    # huggingface_hub imports tqdm.auto, which warns "IProgress not found" (with an absolute path) in a
    # Jupyter kernel without ipywidgets, the `notebooks` extra; its text progress bars work without them
    warnings.filterwarnings("ignore", message="IProgress not found")
    from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HFValidationError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

METRICS_NAME = "metrics.json"
HUB_ETAG_TIMEOUT_S = 5  # fail fast when the Hub is unreachable

# architecture name in config.json -> the class that loads it; filled by `PretrainedMixin.__init_subclass__`
# as each class is defined. `import pixelcnn` imports every module that defines one (its __init__).
SAVED_CLASSES: dict[str, type] = {}


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, fetched or loaded into this model."""


_HUB_REACHABLE: dict[str, bool] = {}  # endpoint -> the answer of this process's one probe


def hub_reachable(timeout_s: float = HUB_ETAG_TIMEOUT_S) -> bool:
    """Whether the Hub answers, asked once per process and endpoint through huggingface_hub's own HTTP
    session, which honours HTTPS_PROXY / HTTP_PROXY and offline mode as every download does.

    huggingface_hub retries a failed connection several times with back-off (about 25 s); asking once
    first lets an offline machine fail in seconds and fall back to the local cache, and the answer is
    kept, so later files cost no probe.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = constants.ENDPOINT
    if endpoint not in _HUB_REACHABLE:
        try:
            get_session().head(endpoint, timeout=timeout_s, follow_redirects=False)
            _HUB_REACHABLE[endpoint] = True  # any HTTP answer, even an error status, means it is reachable
        except Exception:  # connection refused, timeout, proxy failure, offline mode: all mean unreachable
            _HUB_REACHABLE[endpoint] = False
    return _HUB_REACHABLE[endpoint]


def resolve_file(model_id: str | Path, filename: str, *, revision: str | None = None,
                 cache_dir: str | Path | None = None, force_download: bool = False,
                 token: str | bool | None = None, local_files_only: bool = False) -> str:
    """Path of `filename` (may name a sub-folder) inside a local folder, or in the cache after
    fetching it from a Hub repo."""
    model_id = str(model_id)
    if os.path.isdir(model_id):
        path = os.path.join(model_id, filename)
        if not os.path.isfile(path):
            raise CheckpointError(f"{model_id!r} is not a PixelCNN checkpoint folder: it has no {filename}")
        return path
    from huggingface_hub import constants

    if not (local_files_only or constants.HF_HUB_OFFLINE) and not hub_reachable():
        local_files_only = True  # fail fast: only a cached copy can answer
    try:
        return hf_hub_download(repo_id=model_id, filename=filename, revision=revision, cache_dir=cache_dir,
                               force_download=force_download, token=token, local_files_only=local_files_only,
                               etag_timeout=HUB_ETAG_TIMEOUT_S)
    except HFValidationError as e:
        raise CheckpointError(f"{model_id!r} is neither a local folder nor a valid Hub repository id "
                              f"('owner/name')") from e
    except RepositoryNotFoundError as e:
        raise CheckpointError(f"no Hub repository {model_id!r} (or it is private and no token was given)") from e
    except RevisionNotFoundError as e:
        raise CheckpointError(f"Hub repository {model_id!r} has no revision {revision!r}") from e
    # LocalEntryNotFoundError subclasses EntryNotFoundError: it must come first
    except LocalEntryNotFoundError as e:
        raise CheckpointError(f"cannot fetch {filename} of {model_id!r}: the Hub is unreachable and there is "
                              f"no cached copy ({e.__class__.__name__})") from e
    except EntryNotFoundError as e:
        raise CheckpointError(f"Hub repository {model_id!r} is not a PixelCNN checkpoint: it has no {filename}") from e
    except OSError as e:  # connection errors and the like
        raise CheckpointError(f"cannot fetch {filename} of {model_id!r}: {e}") from e


HubKwargs = dict[str, Any]


def _in(subfolder: str, name: str) -> str:
    return f"{subfolder}/{name}" if subfolder else name


def read_checkpoint_json(model_id: str | Path, subfolder: str = "", **hub_kwargs: Any) -> dict[str, Any]:
    """The config.json of a checkpoint (or of one part of a composite), checked to name a known class."""
    where = f"{model_id}" + (f" ({subfolder})" if subfolder else "")
    path = resolve_file(model_id, _in(subfolder, CONFIG_NAME), **hub_kwargs)
    try:
        data = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{CONFIG_NAME} of {where!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or data.get("architecture") not in SAVED_CLASSES:
        found = data.get("architecture") if isinstance(data, dict) else None
        raise CheckpointError(f"{where!r} is not a PixelCNN checkpoint: {CONFIG_NAME} names architecture "
                              f"{found!r}, expected one of {sorted(SAVED_CLASSES)}")
    return data


def read_checkpoint_config(model_id: str | Path, subfolder: str = "", **hub_kwargs: Any) -> tuple[str, Any]:
    """(architecture, config object) stored in a checkpoint's config.json."""
    data = read_checkpoint_json(model_id, subfolder, **hub_kwargs)
    cls = SAVED_CLASSES[data["architecture"]]
    return data["architecture"], cls.config_from_json(data, model_id)


class PretrainedMixin(PyTorchModelHubMixin, library_name="pixelcnn", tags=["pixelcnn", "image-generation"]):
    """`save_pretrained` / `from_pretrained` / `push_to_hub` for one model with one config object.

    Subclasses set `architecture` (the name in config.json) and `config_class` (with `to_dict` and
    `from_dict`), and take that config as their only constructor argument.
    """

    architecture: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    config: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # `python -m pixelcnn.<module>` runs a library module a second time as __main__: its classes
        # must not replace the library's own, which the rest of the library checks against
        if cls.architecture and (cls.__module__ != "__main__" or cls.architecture not in SAVED_CLASSES):
            SAVED_CLASSES[cls.architecture] = cls

    # ------------------------------------------------------------------ saving
    def config_json(self) -> dict[str, Any]:
        return {**self.config.to_dict(), "architecture": self.architecture}

    def _save_pretrained(self, save_directory: Path) -> None:
        safetensors.torch.save_model(self, str(save_directory / WEIGHTS_NAME))
        text = json.dumps(self.config_json(), indent=2, sort_keys=True)
        (save_directory / CONFIG_NAME).write_text(text + "\n")

    def complete_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """A saved state with what older versions did not save filled in by the model itself."""
        return state

    # ------------------------------------------------------------------ loading
    @classmethod
    def config_from_json(cls, data: dict[str, Any], model_id: Any) -> Any:
        try:
            return cls.config_class.from_dict(data)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{CONFIG_NAME} of {model_id!r} does not describe a valid model: {e}") from e

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, subfolder: str = "", revision: str | None = None,
                        cache_dir: str | Path | None = None, force_download: bool = False,
                        token: str | bool | None = None, local_files_only: bool = False):
        """Load a model saved with `save_pretrained`, from a local folder or a Hub repository id.

        device: where the weights go ("cpu", "cuda", a torch.device). dtype: the floating dtype of the
        weights (None: as saved, float32). An unknown keyword is a TypeError, never silently ignored.
        Raises `CheckpointError` with the reason when it cannot: missing files, no network and no
        cached copy, another architecture, or weights that do not fit the config.
        """
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating torch.dtype such as torch.bfloat16, got {dtype!r}")
        hub_kwargs = dict(force_download=force_download, token=token, cache_dir=cache_dir,
                          local_files_only=local_files_only, revision=revision)
        data = read_checkpoint_json(pretrained_model_name_or_path, subfolder, **hub_kwargs)
        saved = SAVED_CLASSES[data["architecture"]]
        if not issubclass(saved, cls):
            raise CheckpointError(f"{pretrained_model_name_or_path!r} holds a {data['architecture']!r} model, not "
                                  f"{cls.architecture or cls.__name__!r}: load it with {saved.__name__} or "
                                  f"pixelcnn.from_pretrained")
        model = saved.load_parts(pretrained_model_name_or_path, subfolder, data, hub_kwargs, "cpu")
        return model.to(device=device, dtype=dtype).eval()

    @classmethod
    def load_parts(cls, model_id: Any, subfolder: str, data: dict[str, Any], hub_kwargs: HubKwargs,
                   map_location: str):
        """Build the model from its config.json and load its weights strictly."""
        model = cls(cls.config_from_json(data, model_id))
        weights = resolve_file(model_id, _in(subfolder, WEIGHTS_NAME), **hub_kwargs)
        try:
            state = safetensors.torch.load_file(weights, device=str(map_location))
        except Exception as e:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(f"{WEIGHTS_NAME} of {model_id!r} is not a readable safetensors file: {e}") from e
        state = model.complete_state(state)
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
        if missing or unexpected or wrong:
            detail = "; ".join(f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                               for label, keys in (("missing", missing), ("unexpected", unexpected),
                                                   ("wrong shape", wrong)) if keys)
            raise CheckpointError(f"the weights of {model_id!r} do not fit its config ({detail})")
        model.load_state_dict(state, strict=True)
        return model


class CompositeMixin(PretrainedMixin):
    """A model made of parts, each a `PretrainedMixin` model, saved one sub-folder per part.

    config.json names the architecture and the parts; each sub-folder is a complete checkpoint.
    Subclasses set `parts` (attribute names, also the sub-folder names) and take the parts as
    keyword arguments of their constructor.
    """

    parts: ClassVar[tuple[str, ...]] = ()

    def config_json(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "parts": list(self.parts)}

    def _save_pretrained(self, save_directory: Path) -> None:
        for name in self.parts:
            getattr(self, name).save_pretrained(save_directory / name)
        text = json.dumps(self.config_json(), indent=2, sort_keys=True)
        (save_directory / CONFIG_NAME).write_text(text + "\n")

    @classmethod
    def config_from_json(cls, data: dict[str, Any], model_id: Any) -> Any:
        if data.get("parts") != list(cls.parts):
            raise CheckpointError(f"{CONFIG_NAME} of {model_id!r} lists parts {data.get('parts')!r}, "
                                  f"expected {list(cls.parts)}")
        return data

    @classmethod
    def load_parts(cls, model_id: Any, subfolder: str, data: dict[str, Any], hub_kwargs: HubKwargs,
                   map_location: str):
        cls.config_from_json(data, model_id)
        parts = {}
        for name in cls.parts:
            part = read_checkpoint_json(model_id, _in(subfolder, name), **hub_kwargs)
            parts[name] = SAVED_CLASSES[part["architecture"]].load_parts(
                model_id, _in(subfolder, name), part, hub_kwargs, map_location)
        return cls(**parts)


def read_metrics(folder: str | Path) -> dict[str, Any] | None:
    """The measured figures saved beside a model (`metrics.json`), or None."""
    path = Path(folder) / METRICS_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class LocalModel:
    """A checkpoint folder found by `local_models`: what a model picker shows."""

    name: str
    path: Path
    architecture: str
    config: Any
    metrics: dict[str, Any] | None

    @property
    def test_bpd(self) -> float | None:
        value = (self.metrics or {}).get("test_bpd")
        return float(value) if isinstance(value, (int, float)) else None

    def describe(self) -> str:
        cfg = self.config
        bpd = f"{self.test_bpd:.3f} bits/dim" if self.test_bpd is not None else "bits/dim not measured"
        if not hasattr(cfg, "height"):
            return f"{self.name} ({self.architecture}, {bpd})"
        layers = f"{cfg.n_layers} layer{'s' if cfg.n_layers != 1 else ''}"
        return f"{self.name} ({cfg.height}x{cfg.width}x{cfg.image_channels}, {layers}, {bpd})"


def local_models(folder: str | Path) -> list[LocalModel]:
    """Every checkpoint in the sub-folders of `folder` (e.g. the shipped `weights/`), sorted by name."""
    found = []
    for sub in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        if (sub / CONFIG_NAME).is_file():
            try:
                architecture, config = read_checkpoint_config(sub)
            except CheckpointError:
                continue
            found.append(LocalModel(sub.name, sub, architecture, config, read_metrics(sub)))
    return found


def from_pretrained(model_id_or_path: str | Path, *, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None, subfolder: str = "", revision: str | None = None,
                    cache_dir: str | Path | None = None, force_download: bool = False,
                    token: str | bool | None = None, local_files_only: bool = False):
    """Load any saved model or composite (local folder or Hub repo id), building the class it was saved
    from, onto `device` in `dtype` (see `PretrainedMixin.from_pretrained`)."""
    return PretrainedMixin.from_pretrained(model_id_or_path, device=device, dtype=dtype, subfolder=subfolder,
                                           revision=revision, cache_dir=cache_dir, force_download=force_download,
                                           token=token, local_files_only=local_files_only)
