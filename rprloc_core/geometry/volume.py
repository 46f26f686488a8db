"""A volume array with the spacing and offset that turn its indices into millimetres.

`pos_mm = origin_mm + idx * spacing`, all (z, y, x). `origin_mm` is relative to the case's base
grid (the preprocessed image), so that a downsampled copy of a volume shares the same mm frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Volume:
    array: np.ndarray                       # float32, (z, y, x)
    spacing: np.ndarray                     # mm, (z, y, x)
    origin_mm: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self):
        self.array = np.ascontiguousarray(self.array, dtype=np.float32)
        self.spacing = np.asarray(self.spacing, dtype=float).reshape(3)
        self.origin_mm = np.asarray(self.origin_mm, dtype=float).reshape(3)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    def idx_to_mm(self, idx) -> np.ndarray:
        return self.origin_mm + np.asarray(idx, dtype=float) * self.spacing

    def mm_to_idx(self, pos_mm) -> np.ndarray:
        return (np.asarray(pos_mm, dtype=float) - self.origin_mm) / self.spacing

    def extent_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """mm positions of the first and last voxel centres."""
        return self.idx_to_mm(np.zeros(3)), self.idx_to_mm(np.asarray(self.shape) - 1)

    def centre_mm(self) -> np.ndarray:
        """mm position (3,) of the middle of the voxel extent."""
        low, high = self.extent_mm()
        return (low + high) / 2.0

    def downsample(self, factor) -> "Volume":
        """Average-pool by an integer factor per axis. A coarse voxel j covers fine voxels
        factor*j .. factor*j + factor - 1, so its centre sits (factor - 1) / 2 fine voxels in."""
        factor = np.broadcast_to(np.asarray(factor, dtype=int), (3,))
        if np.all(factor == 1):
            return self
        t = torch.from_numpy(self.array)[None, None]
        pooled = F.avg_pool3d(t, kernel_size=tuple(int(f) for f in factor),
                              stride=tuple(int(f) for f in factor), ceil_mode=True)
        return Volume(pooled[0, 0].numpy(), self.spacing * factor,
                      self.origin_mm + (factor - 1) / 2.0 * self.spacing)
