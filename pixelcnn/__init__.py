"""Gated PixelCNN Explorer: the Gated PixelCNN of van den Oord et al. (2016) in PyTorch."""

from .conditioning import CONDITIONS, Condition
from .config import PixelCNNConfig
from .hub import CheckpointError, from_pretrained
from .model import ARCHITECTURES, GatedPixelCNN, PixelCNN, build_model
from .sampling import SampleProgress, given_top_rows, sample, stream

__all__ = ["PixelCNNConfig", "GatedPixelCNN", "PixelCNN", "build_model", "ARCHITECTURES", "from_pretrained",
           "CheckpointError", "Condition", "CONDITIONS", "sample", "stream", "SampleProgress", "given_top_rows",
           "ConvEncoder", "EncoderConfig", "PixelCNNAutoEncoder", "DeconvDecoder", "MSEAutoEncoder", "encode",
           "reconstructions", "mse_reconstruction", "content_kept"]
__version__ = "0.2.0"

# The auto-encoder is imported on first use, so that `python -m pixelcnn.autoencoder` runs it only once.
_AUTOENCODER_NAMES = {"ConvEncoder", "DeconvDecoder", "EncoderConfig", "MSEAutoEncoder", "PixelCNNAutoEncoder",
                      "encode", "mse_reconstruction", "reconstructions", "content_kept"}


def __getattr__(name: str):
    if name in _AUTOENCODER_NAMES:
        from . import autoencoder

        return getattr(autoencoder, name)
    raise AttributeError(f"module 'pixelcnn' has no attribute {name!r}")
