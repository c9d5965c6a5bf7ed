"""Gated PixelCNN Explorer: the Gated PixelCNN of van den Oord et al. (2016) in PyTorch."""

from .autoencoder import (ConvEncoder, DeconvDecoder, EncoderConfig, MSEAutoEncoder, PixelCNNAutoEncoder, encode,
                          mse_reconstruction, reconstructions)
from .conditioning import CONDITIONS, Condition
from .config import PixelCNNConfig
from .hub import CheckpointError, from_pretrained
from .model import ARCHITECTURES, GatedPixelCNN, PixelCNN, build_model
from .sampling import SampleProgress, given_top_rows, sample, stream

__all__ = ["PixelCNNConfig", "GatedPixelCNN", "PixelCNN", "build_model", "ARCHITECTURES", "from_pretrained",
           "CheckpointError", "Condition", "CONDITIONS", "sample", "stream", "SampleProgress", "given_top_rows",
           "ConvEncoder", "EncoderConfig", "PixelCNNAutoEncoder", "DeconvDecoder", "MSEAutoEncoder", "encode",
           "reconstructions", "mse_reconstruction"]
__version__ = "0.2.0"
