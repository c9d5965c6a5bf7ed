"""The PixelCNN auto-encoder of the paper's section 3.4: an encoder compresses an image into a code h
of m numbers, and a conditional PixelCNN decodes it. In the paper both are trained end to end on the
decoder's negative log-likelihood.

`ConvEncoder` (in `codecs`) is a small strided convolutional network; `PixelCNNAutoEncoder` joins it to a
`GatedPixelCNN` conditioned on h ("vector", "spatial" or "sketch") and saves as a composite, one
sub-folder per part, that `pixelcnn.from_pretrained` loads as one object. With "sketch" the decoder
reads an MSE decoder's blurry reconstruction at every location; the shipped ones take encoder and
sketch from the MSE baseline, frozen, so that their decodings keep the image's layout (README).

`MSEAutoEncoder` is the paper's comparison: the same encoder and a deconvolution decoder
(`DeconvDecoder`) trained on mean squared error. It returns one reconstruction per code, the
average of every image the code allows, where the PixelCNN decoder samples many sharp ones.

The measurements and Figure 6 live in `pixelcnn.experiments.autoencoder`.
"""

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .codecs import ConvEncoder, DeconvDecoder, EncoderConfig
from .hub import CompositeMixin
from .model import _PixelCNNBase
from .sampling import SampleProgress, SketchPrior, stream


class PixelCNNAutoEncoder(nn.Module, CompositeMixin):
    """An encoder and a PixelCNN decoder conditioned on its code (the paper's Figure 6 model).

    `loss(x)` is the decoder's bits/dim given the code of x; gradients reach every encoder weight.
    The decoder is an ordinary conditional PixelCNN: `pixelcnn.sample(ae.decoder, n, ae.encode(x))`
    draws images that share x's code.
    """

    architecture = "pixelcnn-autoencoder"
    parts = ("encoder", "decoder")
    condition_field = None  # the condition comes from the images themselves

    def __init__(self, encoder: ConvEncoder, decoder: _PixelCNNBase) -> None:
        super().__init__()
        if decoder.config.cond_features != encoder.config.code_dim:
            raise ValueError(f"the decoder reads conditions of {decoder.config.cond_features} numbers but the "
                             f"encoder makes codes of {encoder.config.code_dim}")
        self.encoder, self.decoder = encoder, decoder

    @property
    def config(self):
        """The decoder's config: the images this model reads and writes."""
        return self.decoder.config

    @property
    def device(self) -> torch.device:
        return self.decoder.device

    def encode(self, x: Tensor) -> Tensor:
        """Integer images (B, C, H, W) -> codes h (B, m), a valid condition for the decoder."""
        self.decoder.check_images(x)
        return self.encoder(x)

    def forward(self, x: Tensor, cond: Any = None) -> Tensor:
        """Decoder logits (B, levels, C, H, W) given the code of x (or a given code `cond`)."""
        return self.decoder(x, self.encode(x) if cond is None else cond)

    def loss(self, x: Tensor, cond: Any = None, *, cond_dropout: float = 0.0, validate: bool = True) -> Tensor:
        """The decoder's bits/dim given the code of x (see `GatedPixelCNN.loss` for `validate`)."""
        code = cond if cond is not None else self.encode(x) if validate else self.encoder(x)
        return self.decoder.loss(x, code, cond_dropout=cond_dropout, validate=validate)

    def bits_per_dim(self, x: Tensor, cond: Any = None) -> Tensor:
        return self.decoder.bits_per_dim(x, self.encode(x) if cond is None else cond)


class MSEAutoEncoder(nn.Module, CompositeMixin):
    """The paper's baseline: `ConvEncoder` and `DeconvDecoder` trained on mean squared error.

    `loss(x)` is the MSE of the reconstruction, pixels scaled to [0, 1]; `reconstruct(x)` gives
    integer images, the decoder's one answer for each code.
    """

    architecture = "mse-autoencoder"
    parts = ("encoder", "decoder")
    condition_field = None
    metric = "mse"

    def __init__(self, encoder: ConvEncoder, decoder: DeconvDecoder) -> None:
        super().__init__()
        if encoder.config != decoder.config:
            raise ValueError(f"the encoder ({encoder.config}) and decoder ({decoder.config}) must share one config")
        self.encoder, self.decoder = encoder, decoder

    @property
    def config(self) -> EncoderConfig:
        return self.decoder.config

    @property
    def device(self) -> torch.device:
        return self.decoder.from_code.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.from_code.weight.dtype

    def encode(self, x: Tensor) -> Tensor:
        """Integer images (B, C, H, W) -> codes h (B, m)."""
        self.config.check_images(x)
        return self.encoder(x)

    def decode(self, h: Tensor) -> Tensor:
        """Codes (B, m) -> reconstructions in [0, 1] (B, C, H, W)."""
        return self.decoder(h)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Integer images (B, C, H, W) -> their reconstructions as integer images of the same levels."""
        top = self.config.levels - 1
        return (self.decode(self.encode(x)) * top).round().long().clamp(0, top)

    def mse(self, x: Tensor) -> Tensor:
        """Mean squared error per image (B,), pixels scaled to [0, 1]."""
        target = x.to(self.dtype) / (self.config.levels - 1)
        return (self.decode(self.encode(x)) - target).pow(2).flatten(1).mean(1)

    def loss(self, x: Tensor, cond: Any = None, *, validate: bool = True) -> Tensor:
        if cond is not None:
            raise ValueError("an MSE auto-encoder takes no condition: its code comes from the image")
        if validate:
            self.config.check_images(x)
        return self.mse(x).mean()


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error on pixels scaled to [0, 1]."""
    return 10 * math.log10(1 / mse) if mse > 0 else math.inf


# ------------------------------------------------------------------------------------ using them
AutoEncoder = PixelCNNAutoEncoder | MSEAutoEncoder


def conditioned_part(model: nn.Module) -> nn.Module | None:
    """The PixelCNN whose condition holds the null: the model, or an auto-encoder's decoder (None: an
    MSE auto-encoder, a face sketch or anything else without a PixelCNN)."""
    part = getattr(model, "decoder", model)  # an auto-encoder's or a portrait model's PixelCNN
    return part if isinstance(part, _PixelCNNBase) else None


# the default guidance of `reconstructions` (and the app's Auto-encoder tab), chosen by measurement:
# content_kept against w on the shipped decoders (their model cards)
RECONSTRUCTION_GUIDANCE = 1.5


def _as_batch(images: Tensor) -> Tensor:
    """One image (C, H, W) or a batch (B, C, H, W) -> a batch."""
    images = torch.as_tensor(images)
    return images[None] if images.dim() == 3 else images


@torch.no_grad()
def encode(model: AutoEncoder, images: Tensor) -> Tensor:
    """The codes of integer images, one (C, H, W) or a batch (B, C, H, W): (B, m)."""
    x = _as_batch(images)
    return model.encode(x.to(model.device))


def reconstructions(model: PixelCNNAutoEncoder, image: Tensor, n: int, *, seed: int | None = None,
                    temperature: float = 1.0, method: str = "cached", every: int | None = None,
                    guidance: float = RECONSTRUCTION_GUIDANCE, strength: float = 0.0) -> Iterator[SampleProgress]:
    """n PixelCNN decodings of one image's code, streamed like `pixelcnn.stream`.

    guidance: w of classifier-free guidance against the decoder's null code (its average code):
        above 1 the decodings hold closer to the code; the default was chosen by measurement.
    strength: holds the decodings to the MSE decoder's picture of the code (`code_sketch`, the
        natural sketch of a "sketch"-conditioned decoder) with the sampler's `SketchPrior`; 0 (the
        default, at which the card's figures were measured) samples the decoder alone.

    image: integer (C, H, W) or (1, C, H, W). The code is computed once from the whole image; the
    decoder then samples n images given it, pixel by pixel, each with its own noise from `seed`.
    """
    if not isinstance(model, PixelCNNAutoEncoder):
        raise TypeError(f"reconstructions samples a PixelCNNAutoEncoder's decoder, got {type(model).__name__}; "
                        f"an MSEAutoEncoder has one answer per code: use mse_reconstruction")
    x = _as_batch(image)
    if len(x) != 1:
        raise ValueError(f"reconstructions decodes one image at a time, got a batch of {len(x)}")
    code = encode(model, x)[0]
    prior = None
    if strength:
        sketch = code_sketch(model, code[None])
        if sketch is None:
            raise ValueError("strength holds the decodings to the MSE decoder's sketch, and this decoder reads none "
                             "(it is not 'sketch'-conditioned)")
        prior = SketchPrior(sketch[0], strength)
    return stream(model.decoder, n, code, seed=seed, temperature=temperature, method=method, every=every,
                  guidance=guidance, prior=prior)


@torch.no_grad()
def code_sketch(model: PixelCNNAutoEncoder, codes: Tensor) -> Tensor | None:
    """The MSE decoder's picture of codes (B, m), (B, C, H, W) in [0, 1], that a "sketch"-conditioned
    PixelCNN decoder reads; None for a decoder conditioned otherwise."""
    condition = model.decoder.condition
    if model.decoder.config.conditioning != "sketch":
        return None
    return ((condition.spatial_net(condition.standardise(codes.to(model.decoder.dtype))) + 1) / 2).float().clamp(0, 1)


@torch.no_grad()
def mse_reconstruction(model: MSEAutoEncoder, images: Tensor) -> Tensor:
    """The MSE auto-encoder's reconstruction of integer images, (C, H, W) or (B, C, H, W): (B, C, H, W)."""
    if not isinstance(model, MSEAutoEncoder):
        raise TypeError(f"mse_reconstruction needs an MSEAutoEncoder, got {type(model).__name__}")
    return model.reconstruct(_as_batch(images).to(model.device))
