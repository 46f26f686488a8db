"""CC2D's multi-scale feature extractor, 2D or 3D.

The paper uses an ImageNet VGG19 encoder on 2D cephalograms. No pretrained weights are available
offline here, and the extractor must train on a CPU in about half an hour on CT, so this is a plain
small U-Net instead:
- encoder: `n_scales` levels, widths base_width x (1, 2, 4, 8, 8, ...) (8-16-32-64-64 by default),
  each two 3x3(x3) convs + norm + ReLU, a 2x max pool between levels;
- decoder: from the coarsest level up, each finer level = one 3x3(x3) conv + norm + ReLU on
  [nearest 2x upsample of the coarser decoder level, the encoder level] (a U-Net skip);
- one 1x1(x1) conv per level to the embedding (`embedding_length` channels) of that scale.

Scales are listed finest first: map s has stride 2**s, so map 0 is at full resolution and map
n_scales - 1 is the coarsest. Cell k of map s covers voxels k * 2**s ... (k + 1) * 2**s - 1 along
each axis (indices (z, y, x) in 3D, (y, x) in 2D).

Inputs of any size work: they are zero-padded at the high end of each axis to a multiple of
2**(n_scales - 1) (zero is air after the intensity map, and padding only at the high end keeps
the cell grid above), and map s is cropped back to ceil(size / 2**s) cells per axis.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rprloc_core.cc2d.config import NORMS

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_NORM = {("instance", 2): nn.InstanceNorm2d, ("instance", 3): nn.InstanceNorm3d,
         ("batch", 2): nn.BatchNorm2d, ("batch", 3): nn.BatchNorm3d}


def _norm(kind: str, dims: int, channels: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    norm = _NORM[kind, dims]
    return norm(channels, affine=True) if kind == "instance" else norm(channels)


def _conv_norm_relu(dims: int, cin: int, cout: int, norm: str) -> list[nn.Module]:
    # no conv bias under a norm: the norm's own shift replaces it
    return [CONV[dims](cin, cout, 3, padding=1, bias=norm == "none"), _norm(norm, dims, cout), nn.ReLU(inplace=True)]


def level_widths(base_width: int, n_levels: int) -> list[int]:
    """base_width x (1, 2, 4, 8, 8, ...): doubling stops at 8x, the coarse levels are tiny anyway."""
    return [int(base_width) * 2 ** min(i, 3) for i in range(n_levels)]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad the spatial axes of (B, C, *spatial) at their high end to a multiple of `multiple`."""
    pad = []
    for size in reversed(x.shape[2:]):             # F.pad lists the last axis first
        pad += [0, -size % multiple]
    return F.pad(x, pad) if any(pad) else x


def scale_shape(shape, scale: int) -> tuple[int, ...]:
    """Cells per axis of the map of stride 2**scale for an input of `shape` (spatial axes only)."""
    return tuple(math.ceil(int(s) / 2 ** scale) for s in shape)


class UNetTrunk(nn.Module):
    """The shared trunk: input (B, 1, *spatial) -> decoder features at every level, finest first,
    each cropped to `scale_shape(spatial, level)`; level s has `widths[s]` channels."""

    def __init__(self, dims: int, base_width: int = 8, n_levels: int = 5, norm: str = "instance"):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, not {dims!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
        if n_levels < 1:
            raise ValueError(f"n_levels must be at least 1, not {n_levels}")
        self.dims, self.n_levels = dims, n_levels
        self.widths = level_widths(base_width, n_levels)
        cins = [1, *self.widths[:-1]]
        self.encoder = nn.ModuleList(
            nn.Sequential(*_conv_norm_relu(dims, cin, w, norm), *_conv_norm_relu(dims, w, w, norm))
            for cin, w in zip(cins, self.widths))
        self.pool = _POOL[dims](2)
        self.decoder = nn.ModuleList(
            nn.Sequential(*_conv_norm_relu(dims, self.widths[i + 1] + self.widths[i], self.widths[i], norm))
            for i in range(n_levels - 1))

    @property
    def multiple(self) -> int:
        return 2 ** (self.n_levels - 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != self.dims + 2 or x.shape[1] != 1:
            raise ValueError(f"expected input (B, 1, {', '.join(['...'] * self.dims)}) for dims={self.dims}, "
                             f"got {tuple(x.shape)}")
        spatial = x.shape[2:]
        skips = []
        x = pad_to_multiple(x, self.multiple)
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        features = [x]
        for i in reversed(range(self.n_levels - 1)):
            up = F.interpolate(features[0], size=skips[i].shape[2:], mode="nearest")
            features.insert(0, self.decoder[i](torch.cat([up, skips[i]], dim=1)))
        return [f[(..., *(slice(0, n) for n in scale_shape(spatial, s)))] for s, f in enumerate(features)]


class CascadeEncoder(nn.Module):
    """CC2D's feature extractor: (B, 1, *spatial) -> list of `n_scales` embedding maps
    (B, embedding_length, *scale_shape(spatial, s)), finest first (map s has stride 2**s)."""

    def __init__(self, dims: int, base_width: int = 8, embedding_length: int = 16, n_scales: int = 5,
                 norm: str = "instance"):
        super().__init__()
        self.config = {"dims": int(dims), "base_width": int(base_width), "embedding_length": int(embedding_length),
                       "n_scales": int(n_scales), "norm": norm}
        self.trunk = UNetTrunk(dims, base_width, n_scales, norm)
        self.heads = nn.ModuleList(CONV[dims](w, embedding_length, 1) for w in self.trunk.widths)

    @property
    def dims(self) -> int:
        return self.config["dims"]

    @property
    def n_scales(self) -> int:
        return self.config["n_scales"]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [head(f) for head, f in zip(self.heads, self.trunk(x))]
