"""The small models PoisonGuard trains on the audited data.

Each exposes ``features(x)`` (the penultimate-layer representation the detectors read) and
``forward(x)`` (class logits). They are deliberately small: a scan must run on a laptop CPU, and
a backdoor trigger is a simple feature that a small network learns within a few epochs.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN", "SmallMLP", "TextBagModel", "LinearHead", "FEATURE_DIM"]

FEATURE_DIM = 128


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (16, 32, 64 channels), a 4x4 spatial pooling grid, two dense
    layers.

    A 2x2 max-pool follows the first two blocks while the feature map is at least 8 pixels on its
    short side, so the same recipe serves 8x8 digits and 64x64 photos. The last feature map is
    average-pooled to a grid of at most 4x4 cells and flattened, not pooled globally: the
    representation keeps *where* a pattern appears. A trigger in one corner then becomes a
    feature of its own instead of being averaged into the content. Measured on Fashion-MNIST
    with 5 % poisoned: inside the target class, the robust spectral score separates the poisons
    at AUROC 1.000 with the grid for both a 3x3 corner patch and a blended noise trigger; with
    global pooling, 0.70 on the blended trigger. Training costs about 10 % more.
    """

    GRID = 4

    def __init__(self, in_channels: int, n_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [in_channels, 16, 32, 64]
        height, width = image_size
        for i in range(3):
            layers += [
                nn.Conv2d(channels[i], channels[i + 1], kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(channels[i + 1]),
                nn.ReLU(inplace=True),
            ]
            if i < 2 and min(height, width) >= 8:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
        grid = (min(self.GRID, height), min(self.GRID, width))
        layers += [nn.AdaptiveAvgPool2d(grid), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.neck = nn.Sequential(
            nn.Linear(channels[-1] * grid[0] * grid[1], FEATURE_DIM), nn.ReLU(inplace=True)
        )
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


class TextBagModel(nn.Module):
    """Max-pooled word features for texts: each word of the vocabulary has a vector of
    ``FEATURE_DIM`` values; a text's features are, per dimension, the largest value over its
    words, plus a bias, through a ReLU; a linear head gives the class logits.

    Inputs are rows of token ids (:mod:`poisonguard.embed.text_tokens`, padding 0, left out).
    This is a bag of words (Shen et al., ACL 2018's SWEM-max; Kim 2014's convolutional text
    classifier with windows of one word): it trains on 10,000 short reviews in about 20 s on two
    CPU cores, and it is the model a rare-word trigger (BadNL, Chen et al. 2021) needs to
    show: a unit that a trigger word drives takes the same value in every text holding the
    word, however long the text, while a mean over the words would shrink it by the text's
    length. Measured on
    4,000 real reviews (benchmarks/text_corpus.py, benchmarks/text_rare_word.py) with "cf"
    inserted into 3 % of them and their labels set to "other", three draws: the poisons'
    distance ratios in their class (the decision's measure) had medians of 21-26 against at
    most 12-15 for the class's clean texts; with the mean of 64-d word embeddings under a hidden
    layer of 128, medians of 1.2-1.4, inside the class's core (AUROC 0.54). Word vectors start
    small (standard deviation 0.1; with torch's default of 1 the clean texts' ratios reached 100
    and more): a unit grows when training gives it a use.

    Word order is not seen, so a trigger made of an order of common words (a syntactic
    trigger) is out of its reach.
    """

    INIT_STD = 0.1

    def __init__(self, vocabulary_size: int, n_classes: int) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocabulary_size, FEATURE_DIM, mode="max", padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=self.INIT_STD)
        with torch.no_grad():
            self.embedding.weight[0] = 0.0
        self.bias = nn.Parameter(torch.zeros(FEATURE_DIM))
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` token ids -> ``(B, FEATURE_DIM)`` features; a text without tokens gets
        ``relu(bias)``. Only the tokens, not the padding, are read (a flat bag per text)."""
        present = tokens != 0
        lengths = present.sum(dim=1)
        offsets = torch.cumsum(lengths, dim=0) - lengths
        pooled = self.embedding(tokens[present], offsets)
        return torch.relu(pooled + self.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(tokens))


class LinearHead(nn.Module):
    """A softmax-regression head over fixed features (used with a user-supplied extractor)."""

    def __init__(self, n_inputs: int, n_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(n_inputs, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)
