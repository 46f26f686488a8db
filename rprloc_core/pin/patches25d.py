"""2.5D patches: three orthogonal 2D patches through a point (axial: y-x, coronal: z-x, sagittal:
z-y), sampled in millimetres with trilinear interpolation, stacked as channels. Sampling in mm
keeps the patch square in the body whatever the voxel spacing (CT slices are thicker than pixels
are wide); outside the volume the value is `fill`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rprloc_core.geometry.volume import Volume

# For each plane, the two volume axes it spans (rows, columns) in (z, y, x) order.
PLANES = {"axial": (1, 2), "coronal": (0, 2), "sagittal": (0, 1)}


def plane_offsets_mm(size: int, pixel_mm: float) -> np.ndarray:
    """Pixel centre offsets (size,) from the patch centre, mm; symmetric (even sizes straddle it)."""
    return (np.arange(size) - (size - 1) / 2.0) * pixel_mm


def patch_grid_mm(centres_mm: np.ndarray, size: int, pixel_mm: float) -> np.ndarray:
    """Sample positions (N, 3 planes, size, size, 3) of the three patches through each centre."""
    centres = np.asarray(centres_mm, dtype=float).reshape(-1, 3)
    offsets = plane_offsets_mm(size, pixel_mm)
    grid = np.repeat(centres[:, None, None, None, :], 3, axis=1).repeat(size, axis=2).repeat(size, axis=3)
    for p, (row_axis, col_axis) in enumerate(PLANES.values()):
        grid[:, p, :, :, row_axis] += offsets[:, None]
        grid[:, p, :, :, col_axis] += offsets[None, :]
    return grid


def cut_25d(volume: Volume, centres_mm: np.ndarray, size: int, pixel_mm: float, fill: float = 0.0) -> np.ndarray:
    """Patches (N, 3, size, size), float32: axial, coronal and sagittal through each centre.
    Trilinear between voxel centres through torch's grid_sample (tests/test_pin.py checks it against
    a plain numpy trilinear interpolation)."""
    if size < 2:
        raise ValueError(f"a 2.5D patch needs at least 2 x 2 pixels, got {size}")
    if pixel_mm <= 0:
        raise ValueError(f"pixel_mm must be positive, got {pixel_mm}")
    grid_mm = patch_grid_mm(centres_mm, size, pixel_mm)                 # (N, 3, S, S, 3) z y x
    idx = volume.mm_to_idx(grid_mm)
    shape = np.asarray(volume.shape, dtype=float)
    # grid_sample wants (x, y, z) in [-1, 1] with -1 and 1 on the outer voxel centres (align_corners)
    normalised = 2.0 * idx / np.maximum(shape - 1, 1) - 1.0
    grid = torch.from_numpy(normalised[..., ::-1].astype(np.float32).copy()).reshape(1, -1, 1, 1, 3)
    image = torch.from_numpy(volume.array)[None, None]
    values = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    values = values.reshape(grid_mm.shape[:-1]).numpy()
    inside = np.all((idx >= 0) & (idx <= shape - 1), axis=-1)
    return np.where(inside, values, np.float32(fill)).astype(np.float32)
