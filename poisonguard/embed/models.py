"""The small models PoisonGuard trains on the audited data.

Both expose ``features(x)`` (the penultimate-layer representation the detectors read) and
``forward(x)`` (class logits). They are deliberately small: a scan must run on a laptop CPU, and
a backdoor trigger is a simple feature that a small network learns within a few epochs.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN", "SmallMLP", "LinearHead", "FEATURE_DIM"]

FEATURE_DIM = 128


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (16, 32, 64 channels), global average pooling, two dense layers.

    A 2x2 max-pool follows the first two blocks while the feature map is at least 8 pixels on its
    short side, so the same recipe serves 8x8 digits and 64x64 photos.
    """

    def __init__(self, in_channels: int, n_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [in_channels, 16, 32, 64]
        short_side = min(image_size)
        for i in range(3):
            layers += [
                nn.Conv2d(channels[i], channels[i + 1], kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(channels[i + 1]),
                nn.ReLU(inplace=True),
            ]
            if i < 2 and short_side >= 8:
                layers.append(nn.MaxPool2d(2))
                short_side //= 2
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.neck = nn.Sequential(nn.Linear(channels[-1], FEATURE_DIM), nn.ReLU(inplace=True))
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SmallMLP(nn.Module):
    """Two hidden layers (256, 128) with batch norm and ReLU, for standardized table rows."""

    def __init__(self, n_inputs: int, n_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_inputs, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Linear(256, FEATURE_DIM),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LinearHead(nn.Module):
    """A softmax-regression head over fixed features (used with a user-supplied extractor)."""

    def __init__(self, n_inputs: int, n_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(n_inputs, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)
