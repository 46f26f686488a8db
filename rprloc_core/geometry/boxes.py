"""The project's one box type, `VoxelBox`, and the functions that make boxes.

A VoxelBox is an *inclusive voxel-index box*: `lo` and `hi` are (z, y, x) float voxel indices of
the first and the last voxel centre inside the box (a one-voxel organ has lo == hi). It is a
named tuple, so `lo, hi = box` works. Metrics (`rprloc_core.metrics`) measure such boxes the way
the RPR-Loc paper does.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rprloc_core.errors import EmptyMaskError


class VoxelBox(NamedTuple):
    lo: np.ndarray      # (z, y, x) voxel index of the first voxel centre in the box
    hi: np.ndarray      # (z, y, x) voxel index of the last voxel centre in the box (inclusive)

    @classmethod
    def of(cls, box) -> "VoxelBox":
        """A VoxelBox from any (lo, hi) pair of 3-vectors."""
        lo, hi = box
        return cls(np.asarray(lo, dtype=float).reshape(3), np.asarray(hi, dtype=float).reshape(3))

    @property
    def centre(self) -> np.ndarray:
        return (self.lo + self.hi) / 2.0


def nonempty_voxels(mask: np.ndarray, name: str | None) -> np.ndarray:
    """(N, 3) indices of the mask's voxels in raster order; EmptyMaskError for an empty mask."""
    voxels = np.argwhere(np.asarray(mask) > 0)
    if len(voxels) == 0:
        raise EmptyMaskError(name, "organ mask is empty")
    return voxels


def mask_centroid(mask: np.ndarray, name: str | None = None) -> np.ndarray:
    """The mean voxel index (3,) of the mask, e.g. where to centre a view of the organ;
    EmptyMaskError for an empty mask."""
    return nonempty_voxels(mask, name).mean(axis=0)


def bounding_box(mask: np.ndarray, name: str | None = None) -> VoxelBox:
    """The mask's VoxelBox; raises EmptyMaskError for an empty mask. Found from the mask's
    projections on each axis, not from a list of its voxels: 5-10x faster on a whole CT."""
    mask = np.asarray(mask) > 0
    lo, hi = np.zeros(3), np.zeros(3)
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if len(present) == 0:
            raise EmptyMaskError(name, "organ mask is empty")
        lo[axis], hi[axis] = present[0], present[-1]
    return VoxelBox(lo, hi)


def box_from_points(points_idx: np.ndarray) -> VoxelBox:
    """Predicted box from predicted landmarks (voxel indices): per-axis min and max over the points."""
    points = np.asarray(points_idx, dtype=float)
    return VoxelBox(points.min(axis=0), points.max(axis=0))


def box_from_landmarks(points_idx: np.ndarray, strategy: str) -> VoxelBox:
    """Box from the points of one strategy: 'extreme' (6 points) or 'diagonal' (2 corners)."""
    points = np.asarray(points_idx, dtype=float)
    if strategy == "diagonal":
        return VoxelBox(points[0].copy(), points[1].copy())
    if strategy == "extreme":
        return box_from_points(points)
    raise ValueError(f"strategy must be 'extreme' or 'diagonal', not {strategy!r}")
