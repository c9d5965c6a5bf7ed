"""Named model configurations: the sizes of the pretrained weights the app ships with.

They are sized so that each trains in about two hours on a 2-core CPU (see the README's training
section); larger configurations are a `--hidden_channels` / `--n_layers` override away.

`weights/<name>` holds (or will hold) a model trained with exactly `MODEL_PRESETS[name]`; the sampling
benchmark times these sizes.
"""

from .config import PixelCNNConfig

MODEL_PRESETS: dict[str, PixelCNNConfig] = {
    # 28x28 grey digits, 256 levels, one of 10 classes
    "mnist-class": PixelCNNConfig(image_channels=1, image_size=28, levels=256, hidden_channels=48, n_layers=15,
                                  kernel_size=3, first_kernel_size=7, head_channels=128,
                                  conditioning="class", num_classes=10),
    # 32x32 RGB, 256 levels per channel, one of 10 classes; 48 = 3 colour groups of 16. Deepened from 8
    # layers (the auto-encoders' decoders keep 8: pass --n_layers 8 to train them)
    "cifar10-class": PixelCNNConfig(image_channels=3, image_size=32, levels=256, hidden_channels=48, n_layers=15,
                                    kernel_size=3, first_kernel_size=7, head_channels=192,
                                    conditioning="class", num_classes=10),
    # 32x32 RGB portraits conditioned on a 128-number face embedding (pixelcnn.faces), standardised and
    # mapped to a 32x32 map (eq. 5): it beat plain vector conditioning (see the weights' model card);
    # trained with condition dropout, so its null condition, which guidance uses, is learnt
    "faces-portrait": PixelCNNConfig(image_channels=3, image_size=32, levels=256, hidden_channels=48, n_layers=8,
                                     kernel_size=3, first_kernel_size=7, head_channels=192,
                                     conditioning="spatial", cond_dim=128, standardise_cond=True,
                                     learned_null=True),
}


def model_preset(name: str) -> PixelCNNConfig:
    """A copy of the named preset's config."""
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(MODEL_PRESETS)}")
    return MODEL_PRESETS[name]  # frozen: change it with .replace(...)
