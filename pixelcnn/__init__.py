"""Gated PixelCNN Explorer: the Gated PixelCNN of van den Oord et al. (2016) in PyTorch."""

# Every module that defines a saved class or a derived dataset is imported here, so that the classes
# and datasets register themselves (hub.SAVED_CLASSES, data.DERIVED_DATASETS) in any process that
# imports pixelcnn: loading never depends on what else happens to be imported.
from . import classifier, face_data  # noqa: F401  (they register the classifier and the face datasets)
from .autoencoder import (MSEAutoEncoder, PixelCNNAutoEncoder, encode, mse_reconstruction,  # noqa: F401
                          reconstructions)
from .codecs import ConvEncoder, DeconvDecoder, EncoderConfig
from .conditioning import CONDITIONS, Condition
from .config import ARCHITECTURES, PixelCNNConfig
from .hub import CheckpointError, from_pretrained
from .model import GatedPixelCNN, PixelCNN, build_model
from .sampling import SampleProgress, SketchPrior, given_top_rows, sample, stream
from .sketch import EmbeddingSketch, PortraitModel, SketchConfig

__all__ = ["PixelCNNConfig", "GatedPixelCNN", "PixelCNN", "build_model", "ARCHITECTURES", "from_pretrained",
           "CheckpointError", "Condition", "CONDITIONS", "sample", "stream", "SampleProgress", "given_top_rows",
           "ConvEncoder", "EncoderConfig", "PixelCNNAutoEncoder", "DeconvDecoder", "MSEAutoEncoder", "encode",
           "reconstructions", "mse_reconstruction", "SketchPrior", "EmbeddingSketch", "PortraitModel", "SketchConfig"]
__version__ = "0.3.0"
