"""Box and point metrics, as the RPR-Loc paper computes them, plus a physical-extent variant.

Boxes are inclusive voxel-index boxes (lo, hi), (z, y, x), as returned by `geometry`.
"""

from __future__ import annotations

import numpy as np


def _as_box(box):
    lo, hi = (np.asarray(b, dtype=float) for b in box)
    return lo, hi


def box_iou_voxel(pred_box, true_box) -> float:
    """The paper's IoU: boxes in voxel coordinates of the query image, volume = prod(hi - lo)
    (no +1, so a box is measured between its outermost voxel centres); a negative side means
    no intersection. Returns a fraction in [0, 1] (NaN if both boxes have zero volume)."""
    (plo, phi), (tlo, thi) = _as_box(pred_box), _as_box(true_box)
    side = np.minimum(phi, thi) - np.maximum(plo, tlo)
    inter = 0.0 if np.any(side < 0) else float(np.prod(side))
    vol_p = float(np.prod(np.clip(phi - plo, 0, None)))
    vol_t = float(np.prod(np.clip(thi - tlo, 0, None)))
    union = vol_p + vol_t - inter
    return inter / union if union > 0 else float("nan")


def box_iou_physical(pred_box, true_box, spacing) -> float:
    """IoU of the boxes' physical extents: each voxel-centre box grows by half a voxel on every
    side (so a one-voxel organ has the volume of one voxel), sizes in mm."""
    spacing = np.asarray(spacing, dtype=float)
    (plo, phi), (tlo, thi) = _as_box(pred_box), _as_box(true_box)
    plo, phi = (plo - 0.5) * spacing, (phi + 0.5) * spacing
    tlo, thi = (tlo - 0.5) * spacing, (thi + 0.5) * spacing
    side = np.clip(np.minimum(phi, thi) - np.maximum(plo, tlo), 0, None)
    inter = float(np.prod(side))
    union = float(np.prod(np.clip(phi - plo, 0, None)) + np.prod(np.clip(thi - tlo, 0, None))) - inter
    return inter / union if union > 0 else float("nan")


def awd_mm(pred_box, true_box, spacing) -> float:
    """Absolute wall distance: mean over the six walls of |spacing * (true wall - predicted wall)|."""
    spacing = np.asarray(spacing, dtype=float)
    (plo, phi), (tlo, thi) = _as_box(pred_box), _as_box(true_box)
    walls = np.concatenate([np.abs(tlo - plo) * spacing, np.abs(thi - phi) * spacing])
    return float(walls.mean())


def point_errors_mm(pred_idx, true_idx, spacing) -> np.ndarray:
    """Euclidean distance in mm between predicted and true points given as voxel indices (..., 3)."""
    diff = (np.asarray(pred_idx, dtype=float) - np.asarray(true_idx, dtype=float)) * np.asarray(spacing, float)
    return np.linalg.norm(diff, axis=-1)


def detection_rate(errors_mm, radii_mm=(2.0, 2.5, 3.0, 4.0, 10.0)) -> dict:
    """Fraction of points found within each radius (NaN errors count as misses): the successful
    detection rate (SDR) of the landmark papers (CC2D, PIN), which their tables will report."""
    errors = np.asarray(errors_mm, dtype=float).ravel()
    if errors.size == 0:
        return {float(r): float("nan") for r in radii_mm}
    hit = np.nan_to_num(errors, nan=np.inf)
    return {float(r): float(np.mean(hit <= r)) for r in radii_mm}


def box_metrics(pred_box, true_box, spacing) -> dict:
    """All box metrics for one prediction, in the units the tables use."""
    return {
        "iou_pct": 100.0 * box_iou_voxel(pred_box, true_box),
        "iou_physical_pct": 100.0 * box_iou_physical(pred_box, true_box, spacing),
        "awd_mm": awd_mm(pred_box, true_box, spacing),
    }
