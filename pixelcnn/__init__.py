"""Gated PixelCNN Explorer: the Gated PixelCNN of van den Oord et al. (2016) in PyTorch."""

from .config import PixelCNNConfig
from .hub import CheckpointError, from_pretrained
from .model import GatedPixelCNN, PixelCNN
from .sampling import SampleProgress, given_top_rows, sample, stream

__all__ = ["PixelCNNConfig", "GatedPixelCNN", "PixelCNN", "from_pretrained", "CheckpointError",
           "sample", "stream", "SampleProgress", "given_top_rows"]
__version__ = "0.1.0"
