"""A small 3D U-Net with two heads, sized for a CPU: segmentation logits per organ and, per organ,
the distances from each voxel to the six faces of that organ's box (in units of DISTANCE_UNIT_MM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DISTANCE_UNIT_MM = 50.0     # regression targets are divided by this: organ boxes are 20-100 mm


def _block(cin: int, cout: int) -> nn.Sequential:
    # instance norm: training batches hold one or two volumes, too few for batch statistics
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(0.01),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(0.01))


class DetectorNet(nn.Module):
    """Input (B, 1, Z, Y, X) with Z, Y, X multiples of `multiple`; outputs (B, n_organs, Z, Y, X)
    segmentation logits and (B, n_organs, 6, Z, Y, X) face distances ordered
    (z_lo, y_lo, x_lo, z_hi, y_hi, x_hi), each >= 0 inside the organ."""

    def __init__(self, n_organs: int, width: int = 8, levels: int = 3):
        super().__init__()
        self.config = {"n_organs": int(n_organs), "width": int(width), "levels": int(levels)}
        channels = [width * 2 ** i for i in range(levels + 1)]
        self.down = nn.ModuleList([_block(1, channels[0])] +
                                  [_block(channels[i], channels[i + 1]) for i in range(levels)])
        self.up = nn.ModuleList([_block(channels[i + 1] + channels[i], channels[i]) for i in reversed(range(levels))])
        self.segment = nn.Conv3d(channels[0], n_organs, 1)
        self.distances = nn.Conv3d(channels[0], 6 * n_organs, 1)

    @property
    def multiple(self) -> int:
        return 2 ** self.config["levels"]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool3d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[2:], mode="trilinear", align_corners=False),
                                 skip], dim=1))
        n = self.config["n_organs"]
        distances = self.distances(x)
        return self.segment(x), distances.view(x.shape[0], n, 6, *x.shape[2:])
