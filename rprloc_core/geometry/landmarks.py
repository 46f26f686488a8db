"""The landmarks RPR-Loc localizes: an organ's six extreme points or its two diagonal corners,
as (z, y, x) voxel indices (float) of the mask's grid."""

from __future__ import annotations

import numpy as np

from rprloc_core.geometry.boxes import bounding_box, nonempty_voxels

# Order of the six extreme points everywhere in the project.
EXTREME_POINT_NAMES = ("z_min", "z_max", "y_min", "y_max", "x_min", "x_max")
STRATEGIES = ("extreme", "diagonal")


def extreme_point_axis(point_name: str) -> int:
    """The axis (0 z, 1 y, 2 x) along which an extreme point ("z_min", ...) bounds its organ's box."""
    return EXTREME_POINT_NAMES.index(point_name) // 2


def extreme_points(mask: np.ndarray, rule: str = "median", name: str | None = None) -> np.ndarray:
    """The six extreme points (6, 3), in EXTREME_POINT_NAMES order, as voxel indices.

    For each face of the bounding box, the mask voxels lying on that face are collected in raster
    (C) order; rule "median" takes the middle one of that list (the authors' choice; always a
    real organ voxel), rule "centroid" takes their mean (may fall between voxels).
    """
    if rule not in ("median", "centroid"):
        raise ValueError(f"rule must be 'median' or 'centroid', not {rule!r}")
    voxels = nonempty_voxels(mask, name)  # argwhere returns raster order already
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


def landmarks(mask: np.ndarray, strategy: str, rule: str = "median", name: str | None = None) -> np.ndarray:
    """The landmarks of one organ for a strategy: 6 extreme points or 2 diagonal corners."""
    if strategy == "extreme":
        return extreme_points(mask, rule=rule, name=name)
    if strategy == "diagonal":
        return diagonal_points(mask, name=name)
    raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
