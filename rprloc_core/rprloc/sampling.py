"""Self-supervised training pairs for Pnet (METHOD 3.2 and 8).

The sampler sees intensity volumes only: no function here takes, reads or needs a label or mask.
The supervision is the known offset between two patches cut from the same volume.

All-pairs trick (METHOD 8): a step takes V volumes and n patch centres per volume ("a group"); the n
patches are embedded once and every ordered pair (i, j), i != j, of a group is a training pair, so n
forward passes give n (n - 1) pairs. In a pair, patch i is the support and patch j the query; the
true offset from query to support is (c_i - c_j) * spacing, in mm.

Modes:
- "coarse": centres uniform over the non-air voxels of the whole volume.
- "fine": an anchor non-air voxel, then n non-air centres within anchor +- floor(range / 2) voxels
  per axis, so every pairwise offset is at most `fine_range_vox` voxels per axis.
- "coarse" with `local_fraction` > 0: that share of the groups is drawn like "fine" groups with
  `local_range_vox`, the rest over the whole volume. Uniform pairs are mostly far apart (a head-and-
  neck scan is long along z), so a coarse model sees few of the short offsets its second step and
  the fine stage's start depend on; local groups put some of the training there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rprloc_core.geometry.patches import draw_nonair_voxels

MODES = ("coarse", "fine")


@dataclass
class PatchGroups:
    """Patch centres in groups; every ordered pair within a group is a pair.

    volume_index: (G,) which volume each group comes from.
    centres: (G, n, 3) int voxel indices on that volume's grid."""
    volume_index: np.ndarray
    centres: np.ndarray

    @property
    def n_groups(self) -> int:
        return len(self.volume_index)


def _array(volume) -> np.ndarray:
    return volume.array if hasattr(volume, "array") else np.asarray(volume)


def _check_mode(mode: str, fine_range_vox) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if mode == "fine" and fine_range_vox is None:
        raise ValueError("mode 'fine' needs fine_range_vox, the largest offset per axis in voxels")


def draw_coarse_centres(array: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n centres (n, 3) uniform over the non-air voxels of the whole volume."""
    return draw_nonair_voxels(array, n, rng)


def draw_fine_centres(array: np.ndarray, n: int, fine_range_vox, rng: np.random.Generator) -> np.ndarray:
    """n non-air centres (n, 3) within anchor +- floor(fine_range_vox / 2) of a random non-air anchor.

    Choosing among the explicit non-air voxels of that small box (a few thousand voxels) is exact and
    never loops: the anchor itself is non-air, so the box always has a candidate."""
    half = np.broadcast_to(np.asarray(fine_range_vox, dtype=np.int64), (3,)) // 2
    if np.any(half < 0):
        raise ValueError(f"fine_range_vox must be >= 0, got {fine_range_vox}")
    anchor = draw_nonair_voxels(array, 1, rng)[0]
    lo = np.maximum(anchor - half, 0)
    hi = np.minimum(anchor + half, np.asarray(array.shape) - 1)
    box = array[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1]
    candidates = np.argwhere(box > 0) + lo
    return candidates[rng.integers(0, len(candidates), size=n)].astype(np.int64)


def draw_centres(array: np.ndarray, n: int, mode: str, rng: np.random.Generator,
                 fine_range_vox=None) -> np.ndarray:
    _check_mode(mode, fine_range_vox)
    if mode == "coarse":
        return draw_coarse_centres(array, n, rng)
    return draw_fine_centres(array, n, fine_range_vox, rng)


def draw_training_groups(volumes: Sequence, volumes_per_step: int, patches_per_volume: int, mode: str,
                         rng: np.random.Generator, fine_range_vox=None, local_fraction: float = 0.0,
                         local_range_vox=None) -> PatchGroups:
    """One training step's groups: `volumes_per_step` volumes (without replacement when there are
    enough), `patches_per_volume` centres in each. `volumes` are Volumes or (z, y, x) arrays.
    Coarse mode: each group is local (within `local_range_vox`) with probability `local_fraction`."""
    _check_mode(mode, fine_range_vox)
    if not 0.0 <= local_fraction <= 1.0:
        raise ValueError(f"local_fraction must be in [0, 1], got {local_fraction}")
    if local_fraction > 0 and (mode != "coarse" or local_range_vox is None):
        raise ValueError("local_fraction needs mode 'coarse' and local_range_vox")
    if len(volumes) == 0:
        raise ValueError("no training volumes")
    if patches_per_volume < 2:
        raise ValueError(f"patches_per_volume must be >= 2 to form pairs, got {patches_per_volume}")
    chosen = rng.choice(len(volumes), size=volumes_per_step, replace=len(volumes) < volumes_per_step)
    # Drawn only when asked, so that runs without local groups keep their random stream.
    local = (rng.random(volumes_per_step) < local_fraction if local_fraction > 0
             else np.zeros(volumes_per_step, dtype=bool))
    centres = np.stack([draw_fine_centres(_array(volumes[v]), patches_per_volume, local_range_vox, rng) if is_local
                        else draw_centres(_array(volumes[v]), patches_per_volume, mode, rng, fine_range_vox)
                        for v, is_local in zip(chosen, local)])
    return PatchGroups(np.asarray(chosen, dtype=np.int64), centres)


def fixed_validation_pairs(volumes: Sequence, n: int, mode: str, rng: np.random.Generator,
                           patches_per_group: int = 8, fine_range_vox=None) -> PatchGroups:
    """A fixed validation set of at least `n` ordered pairs, built once from `rng`, so that the
    validation loss is comparable across epochs (the authors drew new random pairs each time).

    Groups of `patches_per_group` centres cycle over the volumes in a random order."""
    _check_mode(mode, fine_range_vox)
    if len(volumes) == 0:
        raise ValueError("no validation volumes")
    if patches_per_group < 2:
        raise ValueError(f"patches_per_group must be >= 2 to form pairs, got {patches_per_group}")
    per_group = patches_per_group * (patches_per_group - 1)
    n_groups = max(1, -(-int(n) // per_group))
    order = rng.permutation(len(volumes))
    volume_index = order[np.arange(n_groups) % len(volumes)]
    centres = np.stack([draw_centres(_array(volumes[v]), patches_per_group, mode, rng, fine_range_vox)
                        for v in volume_index])
    return PatchGroups(np.asarray(volume_index, dtype=np.int64), centres)


def pair_offsets_mm(centres: np.ndarray, spacing) -> np.ndarray:
    """True offsets (..., n, n, 3) in mm for centres (..., n, 3): [..., i, j] = (c_i - c_j) * spacing,
    the move from query j to support i."""
    centres = np.asarray(centres, dtype=float)
    return (centres[..., :, None, :] - centres[..., None, :, :]) * np.asarray(spacing, dtype=float)


def off_diagonal(n: int) -> np.ndarray:
    """(n, n) boolean mask of the ordered pairs i != j."""
    return ~np.eye(n, dtype=bool)
