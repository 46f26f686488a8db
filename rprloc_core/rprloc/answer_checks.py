"""Checks of a localisation answer that need no labels, for a user's own scans.

RPR-Loc always answers: a query without the organ still gets a box, wherever the runs stopped.
Two signs tell such an answer apart (notebook 03 measures both on scans cropped so that the organs
are missing or cut):

- points on the scan's edge: the moves are clamped to the query's extent, so a landmark that the
  networks place beyond the scan ends on its outermost voxels. The organ may be cut by the scan's
  field of view (its box is then truncated) or lie outside it.
- the remaining move: from the answer, the fine model would still move each point by
  `remaining_moves_mm`. At a landmark it recognises it asks for a few millimetres; a long move
  (over `RELEASE_REMAINING_MOVE_WARN_MM`, chosen on validation patients) says it does not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rprloc_core.geometry.landmarks import EXTREME_POINT_NAMES
from rprloc_core.geometry.volume import Volume
from rprloc_core.rprloc.config import RELEASE_REMAINING_MOVE_WARN_MM


def points_on_scan_edge(volume: Volume, points_mm) -> np.ndarray:
    """(P,) bool: the point lies within half a voxel of the scan's outermost voxel centres on some
    axis (where the engine clamps a move that would leave the scan)."""
    points_mm = np.asarray(points_mm, dtype=float).reshape(-1, 3)
    lo, hi = volume.extent_mm()
    half = volume.spacing / 2
    return np.any((points_mm - lo < half) | (hi - points_mm < half), axis=1)


def _point_names(n: int) -> list[str]:
    return list(EXTREME_POINT_NAMES) if n == len(EXTREME_POINT_NAMES) else [f"point {i}" for i in range(n)]


def organ_checks(volume: Volume, points_mm, organ_of_point: Sequence[str], moves_mm=None,
                 warn_move_mm: float = RELEASE_REMAINING_MOVE_WARN_MM) -> dict:
    """{organ: {"points_on_scan_edge": names of its points there, "remaining_move_mm": the mean
    length of its points' remaining moves (None without `moves_mm`), "warnings": sentences}}.
    An organ with six points names them as extreme points (z_min ... x_max, the query grid's axes)."""
    points_mm = np.asarray(points_mm, dtype=float).reshape(-1, 3)
    organs = np.asarray(organ_of_point)
    if len(organs) != len(points_mm):
        raise ValueError(f"{len(organs)} organ names for {len(points_mm)} points")
    at_edge = points_on_scan_edge(volume, points_mm)
    lengths = None if moves_mm is None else np.linalg.norm(np.asarray(moves_mm, dtype=float).reshape(-1, 3), axis=1)
    out = {}
    for organ in dict.fromkeys(organs.tolist()):
        rows = np.flatnonzero(organs == organ)
        names = _point_names(len(rows))
        edge = [names[i] for i, row in enumerate(rows) if at_edge[row]]
        move = None if lengths is None else float(lengths[rows].mean())
        warnings = []
        if edge:
            warnings.append(f"{len(edge)} of its {len(rows)} points ({', '.join(edge)}) lie on the scan's edge: "
                            "the organ may extend beyond the scan (its box is then cut there) or lie outside it")
        if move is not None and move > warn_move_mm:
            warnings.append(f"the fine model would still move its points by {move:.0f} mm on average (more than "
                            f"{warn_move_mm:g} mm): the organ may be missing from the scan, or the box wrong")
        out[organ] = {"points_on_scan_edge": edge, "remaining_move_mm": move, "warnings": warnings}
    return out
