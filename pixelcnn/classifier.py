"""A small convolutional MNIST classifier, trained in about a minute on a CPU: the judge of whether
class-conditional digits read as the class asked for (`pixelcnn.experiments.recognition`).

Saved beside the model it judges (`weights/mnist-class/classifier/`) and loaded by
`pixelcnn.from_pretrained` like any model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .hub import PretrainedMixin
from .shapes import SavedConfig

if TYPE_CHECKING:
    from .data import ImageDataset


@dataclass(frozen=True)
class ClassifierConfig(SavedConfig):
    image_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    levels: int = 256


class DigitClassifier(nn.Module, PretrainedMixin):
    """Two conv-pool blocks and two linear layers: integer images (B, C, H, W) -> logits (B, classes)."""

    architecture = "digit-classifier"
    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv2d(config.image_channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        side = config.image_size // 4
        self.hidden = nn.Linear(64 * side * side, 128)
        self.out = nn.Linear(128, config.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = x.float() / (self.config.levels - 1) * 2 - 1
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.out(F.relu(self.hidden(x.flatten(1))))


def train_classifier(train: ImageDataset, test: ImageDataset, epochs: int = 1, batch_size: int = 128,
                     lr: float = 2e-3, seed: int = 0) -> tuple[DigitClassifier, float]:
    """Train on `train` with Adam; returns the classifier and its accuracy on `test`."""
    torch.manual_seed(seed)
    model = DigitClassifier(ClassifierConfig(train.channels, train.image_size[0], len(train.class_names)))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=gen)
        for start in range(0, len(train), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(train.images[idx]), train.labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), accuracy(model, test.images, test.labels)


@torch.no_grad()
def accuracy(classifier: DigitClassifier, images: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    """Share of images (N, C, H, W) in [0, 256) whose predicted class is the label."""
    right = sum((classifier(images[s:s + batch_size]).argmax(1) == labels[s:s + batch_size]).sum().item()
                for s in range(0, len(images), batch_size))
    return right / max(1, len(images))
