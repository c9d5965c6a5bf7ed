"""Saving and loading models as `config.json` + `model.safetensors`, locally or on the Hugging Face Hub.

`huggingface_hub.PyTorchModelHubMixin` supplies `save_pretrained`, `from_pretrained` and
`push_to_hub`. On top of it we:
  * record the architecture in `config.json`, so `pixelcnn.from_pretrained` builds the right class;
  * load weights strictly and only from safetensors (never a pickle), so a wrong or partial
    checkpoint is an error instead of a model with silently random layers;
  * turn every failure (no such folder, no network, not a PixelCNN) into one `CheckpointError`.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import (EntryNotFoundError, HFValidationError, LocalEntryNotFoundError,
                                    RepositoryNotFoundError, RevisionNotFoundError)

from .config import PixelCNNConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# architecture name in config.json -> model class; filled by `PretrainedMixin.__init_subclass__`.
ARCHITECTURES: dict[str, type] = {}


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, fetched or loaded into this model."""


def resolve_file(model_id: str | Path, filename: str, *, revision: str | None = None,
                 cache_dir: str | Path | None = None, force_download: bool = False,
                 token: str | bool | None = None, local_files_only: bool = False) -> str:
    """Path of `filename` inside a local folder, or in the cache after fetching it from a Hub repo."""
    model_id = str(model_id)
    if os.path.isdir(model_id):
        path = os.path.join(model_id, filename)
        if not os.path.isfile(path):
            raise CheckpointError(f"{model_id!r} is not a PixelCNN checkpoint folder: it has no {filename}")
        return path
    try:
        return hf_hub_download(repo_id=model_id, filename=filename, revision=revision, cache_dir=cache_dir,
                               force_download=force_download, token=token, local_files_only=local_files_only)
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


def read_checkpoint_config(model_id: str | Path, **hub_kwargs: Any) -> tuple[str, PixelCNNConfig]:
    """(architecture, config) stored in a checkpoint's config.json."""
    path = resolve_file(model_id, CONFIG_NAME, **hub_kwargs)
    try:
        data = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{CONFIG_NAME} of {model_id!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or data.get("architecture") not in ARCHITECTURES:
        found = data.get("architecture") if isinstance(data, dict) else None
        raise CheckpointError(f"{model_id!r} is not a PixelCNN checkpoint: {CONFIG_NAME} names architecture "
                              f"{found!r}, expected one of {sorted(ARCHITECTURES)}")
    try:
        return data["architecture"], PixelCNNConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{CONFIG_NAME} of {model_id!r} does not describe a valid model: {e}") from e


class PretrainedMixin(PyTorchModelHubMixin, library_name="pixelcnn", tags=["pixelcnn", "image-generation"]):
    """`save_pretrained` / `from_pretrained` / `push_to_hub` for the PixelCNN models.

    Subclasses set `architecture` and take one `config: PixelCNNConfig` argument.
    """

    architecture: str = ""
    config: PixelCNNConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.architecture:
            ARCHITECTURES[cls.architecture] = cls

    def _save_pretrained(self, save_directory: Path) -> None:
        safetensors.torch.save_model(self, str(save_directory / WEIGHTS_NAME))
        config = {"architecture": self.architecture, **self.config.to_dict()}
        (save_directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False, revision: str | None = None,
                        map_location: str = "cpu", **model_kwargs: Any):
        """Load a model saved with `save_pretrained`, from a local folder or a Hub repository id.

        Raises `CheckpointError` with the reason when it cannot: missing files, no network and no
        cached copy, another architecture, or weights that do not fit the config.
        """
        hub_kwargs = dict(force_download=force_download, token=token, cache_dir=cache_dir,
                          local_files_only=local_files_only, revision=revision)
        architecture, _ = read_checkpoint_config(pretrained_model_name_or_path, **hub_kwargs)
        if architecture != cls.architecture:
            raise CheckpointError(f"{pretrained_model_name_or_path!r} holds a {architecture!r} model, not "
                                  f"{cls.architecture!r}: load it with {ARCHITECTURES[architecture].__name__} "
                                  f"or pixelcnn.from_pretrained")
        return super().from_pretrained(pretrained_model_name_or_path, map_location=map_location,
                                       **hub_kwargs, **model_kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         map_location: str = "cpu", **model_kwargs: Any):
        weights = resolve_file(model_id, WEIGHTS_NAME, revision=revision, cache_dir=cache_dir,
                               force_download=force_download, token=token, local_files_only=local_files_only)
        model = cls(**model_kwargs)
        try:
            state = safetensors.torch.load_file(weights, device=str(map_location))
        except Exception as e:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(f"{WEIGHTS_NAME} of {model_id!r} is not a readable safetensors file: {e}") from e
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
        model.to(map_location)
        return model.eval()


def read_model_card_bpd(card_path: str | Path) -> float | None:
    """The test bits/dim that a model card written by `pixelcnn.train` states, or None."""
    text = Path(card_path).read_text() if Path(card_path).is_file() else ""
    marker = "| test bits/dim | **"
    if marker not in text:
        return None
    start = text.index(marker) + len(marker)
    return float(text[start:text.index("**", start)])


@dataclass
class LocalModel:
    """A checkpoint folder found by `local_models`: what a model picker shows."""

    name: str
    path: Path
    architecture: str
    config: PixelCNNConfig
    test_bpd: float | None

    def describe(self) -> str:
        cfg = self.config
        bpd = f"{self.test_bpd:.3f} bits/dim" if self.test_bpd is not None else "bits/dim not measured"
        return f"{self.name} ({cfg.height}x{cfg.width}x{cfg.image_channels}, {cfg.n_layers} layers, {bpd})"


def local_models(folder: str | Path) -> list[LocalModel]:
    """Every checkpoint in the sub-folders of `folder` (e.g. the shipped `weights/`), sorted by name."""
    found = []
    for sub in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        if (sub / CONFIG_NAME).is_file() and (sub / WEIGHTS_NAME).is_file():
            try:
                architecture, config = read_checkpoint_config(sub)
            except CheckpointError:
                continue
            found.append(LocalModel(sub.name, sub, architecture, config, read_model_card_bpd(sub / "README.md")))
    return found


def from_pretrained(model_id_or_path: str | Path, **kwargs: Any):
    """Load any PixelCNN checkpoint (local folder or Hub repo id), building the class it was saved from."""
    hub_keys = ("force_download", "token", "cache_dir", "local_files_only", "revision")
    architecture, _ = read_checkpoint_config(model_id_or_path, **{k: kwargs[k] for k in hub_keys if k in kwargs})
    return ARCHITECTURES[architecture].from_pretrained(model_id_or_path, **kwargs)
