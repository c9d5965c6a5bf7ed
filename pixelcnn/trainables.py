"""What a training run trains: the PixelCNN, an auto-encoder around one, or a face sketch, built from
the command line's `TrainConfig`, and the objective (with condition dropout) that DDP wraps."""

from typing import Any

import torch
from torch import nn

from .autoencoder import MSEAutoEncoder, PixelCNNAutoEncoder
from .codecs import ConvEncoder, DeconvDecoder, EncoderConfig
from .conditioning import condition_class
from .config import PixelCNNConfig
from .hub import CheckpointError
from .model import build_model
from .presets import TrainConfig
from .sketch import EmbeddingSketch, SketchConfig, load_sketch
from .surgery import TrainingError

__all__ = ["Objective", "build_sketch", "build_trainable", "drawing_sketch"]


class Objective(nn.Module):
    """The trainable's own loss as a module, so DDP wraps the call that computes it; with
    `cond_dropout`, a share of the images is trained on the null condition."""

    def __init__(self, model: nn.Module, cond_dropout: float = 0.0) -> None:
        super().__init__()
        self.model, self.cond_dropout = model, cond_dropout

    def forward(self, images: torch.Tensor, cond: Any) -> torch.Tensor:
        # the data were checked when they were loaded: no check here waits for the device, and
        # `torch.compile` sees one graph
        if self.cond_dropout > 0:
            return self.model.loss(images, cond, cond_dropout=self.cond_dropout, validate=False)
        return self.model.loss(images, cond, validate=False)


def build_trainable(cfg: TrainConfig, model_config: PixelCNNConfig) -> nn.Module:
    """The PixelCNN of the config, joined to a trainable encoder when `cfg.encoder` asks for one;
    with `--decoder mse`, the MSE auto-encoder of the same encoder (the PixelCNN's size unused)."""
    if cfg.decoder not in ("pixelcnn", "mse", "sketch"):
        raise TrainingError(f"--decoder must be 'pixelcnn', 'mse' or 'sketch', got {cfg.decoder!r}")
    if cfg.decoder == "sketch":
        return build_sketch(cfg, model_config)
    if cfg.encoder == "none":
        if cfg.decoder == "mse":
            raise TrainingError("--decoder mse is an auto-encoder: it needs --encoder conv")
        return build_model(model_config)
    if cfg.encoder != "conv":
        raise TrainingError(f"--encoder must be 'none' or 'conv', got {cfg.encoder!r}")
    if model_config.standardise_cond:
        raise TrainingError("--standardise_cond standardises given vectors with the training set's statistics; "
                            "an encoder's code is learnt, so train it with --no-standardise_cond")
    if condition_class(model_config.conditioning).batch_field != "vectors":
        raise TrainingError("--encoder conv needs a decoder conditioned on its code: --conditioning vector, "
                            "spatial or sketch, with --cond_dim the code's length")
    code = EncoderConfig(image_channels=model_config.image_channels, image_size=model_config.image_size,
                         levels=model_config.levels, code_dim=model_config.cond_dim, channels=cfg.encoder_channels)
    if cfg.decoder == "mse":
        if cfg.cond_dropout > 0:
            raise TrainingError("--cond_dropout trains a PixelCNN's null condition; an MSE auto-encoder has none")
        return MSEAutoEncoder(ConvEncoder(code), DeconvDecoder(code))
    return PixelCNNAutoEncoder(ConvEncoder(code), build_model(model_config))


def build_sketch(cfg: TrainConfig, model_config: PixelCNNConfig) -> EmbeddingSketch:
    """The face sketch of `--decoder sketch`: it draws the model config's images from its vectors."""
    if cfg.encoder != "none" or cfg.cond_dropout > 0:
        raise TrainingError("--decoder sketch draws an image from a given vector: it takes no --encoder and no "
                            "--cond_dropout")
    if condition_class(model_config.conditioning).batch_field != "vectors":
        raise TrainingError("--decoder sketch reads vectors: pass --conditioning vector and --cond_dim")
    return EmbeddingSketch(SketchConfig(
        image_channels=model_config.image_channels, image_size=model_config.image_size, levels=model_config.levels,
        cond_dim=model_config.cond_dim, channels=cfg.encoder_channels, loss=cfg.sketch_loss,
        latent_dim=cfg.sketch_latent, kl_weight=cfg.sketch_kl))


def drawing_sketch(cfg: TrainConfig, model_config: PixelCNNConfig) -> EmbeddingSketch | None:
    """The face sketch of `--sketch_from` (conditioning "image" only), or None."""
    if not cfg.sketch_from:
        return None
    if model_config.conditioning != "image" or cfg.encoder != "none":
        raise TrainingError("--sketch_from gives a PixelCNN the sketch of each photo to read: it needs "
                            "--conditioning image (and no --encoder)")
    try:
        return load_sketch(cfg.sketch_from)
    except CheckpointError as e:
        raise TrainingError(f"--sketch_from: {e}") from e
