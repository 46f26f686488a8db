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


def with_support_box_size(points, support_points, weight: float) -> np.ndarray:
    """One organ's predicted landmarks (N, 3) redrawn with a size prior from the support: the
    support's landmarks, moved so that their mean sits on the mean of the predicted ones, and
    stretched per axis so that their box's extent is `weight` x the support's + (1 - weight) x the
    predicted. weight 0 keeps the predicted extent (centred on the points' mean, not on their box's
    midpoint); weight 1 keeps the support's box size. The mean of the N points is a steadier centre
    than the box's midpoint, which rests on the two worst points of each axis (notebook 04)."""
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    support_points = np.asarray(support_points, dtype=float).reshape(-1, 3)
    if points.shape != support_points.shape:
        raise ValueError(f"predicted {points.shape} and support {support_points.shape} landmarks differ in shape")
    if not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], got {weight}")
    extent_support = np.ptp(support_points, axis=0)
    extent = float(weight) * extent_support + (1.0 - float(weight)) * np.ptp(points, axis=0)
    # An axis along which the support's landmarks do not spread cannot be stretched: keep it flat.
    scale = np.divide(extent, extent_support, out=np.ones(3), where=extent_support > 0)
    return points.mean(axis=0) + (support_points - support_points.mean(axis=0)) * scale


def size_prior_box_points(points, support_points, weight: float) -> np.ndarray:
    """The points whose box a user gets with a size-prior weight (the CLI and the widget): weight 0
    keeps the predicted points as they are (the paper's box), any other weight redraws them with
    `with_support_box_size`."""
    if weight == 0:
        return np.asarray(points, dtype=float).reshape(-1, 3)
    return with_support_box_size(points, support_points, weight)
