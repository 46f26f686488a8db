"""Index/physical conversions, organ boxes and the landmarks RPR-Loc localizes.

Boxes here are *inclusive voxel-index boxes*: `(lo, hi)`, two (z, y, x) float vectors, both ends
being voxel centres that belong to the organ. Points are (z, y, x) voxel indices (float).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .errors import EmptyMaskError

# Order of the six extreme points everywhere in the project.
EXTREME_POINT_NAMES = ("z_min", "z_max", "y_min", "y_max", "x_min", "x_max")
DIAGONAL_POINT_NAMES = ("corner_min", "corner_max")


def xyz_to_zyx(v) -> np.ndarray:
    """SimpleITK order (x, y, z) -> numpy order (z, y, x). Works on (..., 3) arrays."""
    return np.asarray(v, dtype=float)[..., ::-1].copy()


def zyx_to_xyz(v) -> np.ndarray:
    """numpy order (z, y, x) -> SimpleITK order (x, y, z). Works on (..., 3) arrays."""
    return np.asarray(v, dtype=float)[..., ::-1].copy()


def spacing_zyx(image: sitk.Image) -> np.ndarray:
    return xyz_to_zyx(image.GetSpacing())


def shape_zyx(image: sitk.Image) -> tuple[int, int, int]:
    return tuple(int(s) for s in image.GetSize()[::-1])


def index_to_lps(image: sitk.Image, idx_zyx) -> np.ndarray:
    """Continuous voxel indices (..., 3) in (z, y, x) -> physical LPS points (..., 3) in (x, y, z)."""
    idx_xyz = zyx_to_xyz(idx_zyx)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    origin = np.asarray(image.GetOrigin(), dtype=float)
    return origin + (idx_xyz * spacing) @ direction.T


def lps_to_index(image: sitk.Image, pos_lps_xyz) -> np.ndarray:
    """Physical LPS points (..., 3) in (x, y, z) -> continuous voxel indices (..., 3) in (z, y, x)."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    origin = np.asarray(image.GetOrigin(), dtype=float)
    idx_xyz = ((np.asarray(pos_lps_xyz, dtype=float) - origin) @ direction) / spacing
    return xyz_to_zyx(idx_xyz)


def _nonempty_voxels(mask: np.ndarray, name: str | None) -> np.ndarray:
    voxels = np.argwhere(np.asarray(mask) > 0)
    if len(voxels) == 0:
        raise EmptyMaskError(name, "organ mask is empty")
    return voxels


def bounding_box(mask: np.ndarray, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive voxel-index box (lo, hi) of a mask; raises EmptyMaskError for an empty mask."""
    voxels = _nonempty_voxels(mask, name)
    return voxels.min(axis=0).astype(float), voxels.max(axis=0).astype(float)


def extreme_points(mask: np.ndarray, rule: str = "median", name: str | None = None) -> np.ndarray:
    """The six extreme points (6, 3), in EXTREME_POINT_NAMES order, as voxel indices.

    For each face of the bounding box, the mask voxels lying on that face are collected in raster
    (C) order; rule "median" takes the middle one of that list (the authors' choice; always a
    real organ voxel), rule "centroid" takes their mean (may fall between voxels).
    """
    if rule not in ("median", "centroid"):
        raise ValueError(f"rule must be 'median' or 'centroid', not {rule!r}")
    voxels = _nonempty_voxels(mask, name)  # argwhere returns raster order already
    points = []
    for axis in range(3):
        for extreme in (voxels[:, axis].min(), voxels[:, axis].max()):
            face = voxels[voxels[:, axis] == extreme]
            points.append(face[len(face) // 2] if rule == "median" else face.mean(axis=0))
    return np.asarray(points, dtype=float)


def diagonal_points(mask: np.ndarray, name: str | None = None) -> np.ndarray:
    """The two box corners (min z, min y, min x) and (max z, max y, max x), shape (2, 3)."""
    lo, hi = bounding_box(mask, name)
    return np.stack([lo, hi])


def box_from_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted box from predicted landmarks: per-axis min and max over the points."""
    points = np.asarray(points, dtype=float)
    return points.min(axis=0), points.max(axis=0)


def box_from_landmarks(points: np.ndarray, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """Box from the points of one strategy: 'extreme' (6 points) or 'diagonal' (2 corners)."""
    points = np.asarray(points, dtype=float)
    if strategy == "diagonal":
        return points[0].copy(), points[1].copy()
    if strategy == "extreme":
        return box_from_points(points)
    raise ValueError(f"strategy must be 'extreme' or 'diagonal', not {strategy!r}")


def landmarks(mask: np.ndarray, strategy: str, rule: str = "median", name: str | None = None) -> np.ndarray:
    """The landmarks of one organ for a strategy: 6 extreme points or 2 diagonal corners."""
    if strategy == "extreme":
        return extreme_points(mask, rule=rule, name=name)
    if strategy == "diagonal":
        return diagonal_points(mask, name=name)
    raise ValueError(f"strategy must be 'extreme' or 'diagonal', not {strategy!r}")
