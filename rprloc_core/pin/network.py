"""PIN's CNN and losses. Input: 2.5D patches (N, 3 x L, S, S) for L landmarks (L = 1: PIN-Single);
five conv + max-pool stages, then two fully connected heads: classification of the direction
(2D classes: +- each state dimension) and regression of the displacement (D)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

LOSSES = ("C", "R", "C+R")


class PINNet(nn.Module):
    def __init__(self, in_channels: int, patch_size: int, n_dims: int, width: int = 16, hidden: int = 128):
        super().__init__()
        if patch_size < 32 or patch_size % 32:
            raise ValueError(f"patch_size must be a multiple of 32 (five 2x poolings), got {patch_size}")
        layers, cin = [], in_channels
        for i in range(5):
            cout = width * 2 ** min(i, 3)
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers, nn.Flatten())
        flat = cin * (patch_size // 32) ** 2
        self.classify = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2 * n_dims))
        self.regress = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_dims))
        self.config = {"in_channels": in_channels, "patch_size": patch_size, "n_dims": n_dims, "width": width,
                       "hidden": hidden}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits (N, 2D), displacement (N, D) in the units of the training targets)."""
        h = self.features(x)
        return self.classify(h), self.regress(h)


def pin_loss(logits: torch.Tensor, displacement: torch.Tensor, target: torch.Tensor, kind: str = "C+R",
             alpha: float = 0.5) -> torch.Tensor:
    """Loss C (cross-entropy of the direction class), R (squared error of the displacement) or
    C+R (alpha x C + (1 - alpha) x R). The class target is the largest component's direction."""
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, not {kind!r}")
    j = target.abs().argmax(dim=1)
    negative = target.gather(1, j[:, None])[:, 0] < 0
    classes = 2 * j + negative.long()
    ce = F.cross_entropy(logits, classes)
    mse = F.mse_loss(displacement, target)
    if kind == "C":
        return ce
    if kind == "R":
        return mse
    return alpha * ce + (1 - alpha) * mse
