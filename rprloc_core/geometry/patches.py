"""Cut fixed-size patches out of a volume, and draw random non-air patch centres.

A patch of size (pz, py, px) centred at voxel c covers indices c - p//2 .. c - p//2 + p - 1 per axis
(for even p the centre is the voxel just after the middle, as in the authors' code). Centres are
rounded to the nearest voxel and clamped inside the volume; the part of a patch that leaves the volume
is zero, i.e. air after the intensity map.

"Non-air" means intensity > 0: the volumes are intensity-mapped to [0, 1] with everything below
-500 HU exactly 0 (METHOD 2.3).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_AXES = ("z", "y", "x")


def as_patch_size(patch_size) -> tuple[int, int, int]:
    size = tuple(int(p) for p in np.broadcast_to(np.asarray(patch_size), (3,)))
    if min(size) < 1:
        raise ValueError(f"patch size must be positive along every axis, got {size}")
    return size


def require_volume_fits_patch(shape, patch_size, what: str = "volume") -> None:
    """Raise ValueError if the volume is smaller than the patch along an axis.

    Zero padding would let us cut such patches, but every patch would then hold the whole extent of
    that axis plus air, which the networks never saw in training; the caller should resample or pad
    the volume on purpose instead."""
    shape = tuple(int(s) for s in shape)
    patch_size = as_patch_size(patch_size)
    small = [f"{ax}: {s} < {p}" for ax, s, p in zip(_AXES, shape, patch_size) if s < p]
    if small:
        raise ValueError(f"{what} of shape {shape} voxels is smaller than the patch {patch_size} "
                         f"along {', '.join(small)}; use a larger volume or a smaller patch")


def round_to_voxel(idx) -> np.ndarray:
    """Nearest voxel, halves rounded up (np.rint would round halves to even)."""
    return np.floor(np.asarray(idx, dtype=float) + 0.5).astype(np.int64)


def clamp_to_volume(idx: np.ndarray, shape) -> np.ndarray:
    return np.clip(idx, 0, np.asarray(shape, dtype=np.int64) - 1)


class PatchCutter:
    """Pads one volume once, then cuts any number of patches from it by indexing a strided view.

    The zero padding is p//2 voxels before and p - p//2 - 1 after each axis, so a patch centred at
    (clamped) voxel c starts at index c of the padded array, and the sliding-window view
    `windows[c]` is exactly that patch.
    """

    def __init__(self, array, patch_size, device=None):
        self.patch_size = as_patch_size(patch_size)
        tensor = torch.as_tensor(np.asarray(array, dtype=np.float32) if not torch.is_tensor(array) else array,
                                 dtype=torch.float32, device=device)
        if tensor.ndim != 3:
            raise ValueError(f"expected a 3-D (z, y, x) array, got shape {tuple(tensor.shape)}")
        self.shape = tuple(tensor.shape)
        self.device = tensor.device
        pad = []
        for p in reversed(self.patch_size):  # F.pad lists the last axis first
            pad += [p // 2, p - p // 2 - 1]
        padded = F.pad(tensor, pad)
        pz, py, px = self.patch_size
        self._windows = padded.unfold(0, pz, 1).unfold(1, py, 1).unfold(2, px, 1)

    def cut(self, centres_idx) -> torch.Tensor:
        """Patches (N, 1, pz, py, px) at float voxel indices (N, 3), rounded and clamped."""
        centres = clamp_to_volume(round_to_voxel(np.asarray(centres_idx).reshape(-1, 3)), self.shape)
        index = torch.as_tensor(centres, device=self.device)
        return self._windows[index[:, 0], index[:, 1], index[:, 2]].unsqueeze(1)


def cut_patches(array, centres_idx, patch_size, device=None) -> torch.Tensor:
    """Patches (N, 1, pz, py, px) float32 centred at float voxel indices (N, 3) of a (z, y, x) array."""
    return PatchCutter(array, patch_size, device).cut(centres_idx)


def cut_patch_naive(array: np.ndarray, centre_idx, patch_size) -> np.ndarray:
    """One patch (pz, py, px), by clipped slicing into a zero buffer.

    The obviously-correct reference that tests compare `cut_patches` with, and what the naive
    inference loop uses (no whole-volume padding per patch)."""
    patch_size = as_patch_size(patch_size)
    shape = np.asarray(array.shape)
    centre = clamp_to_volume(round_to_voxel(np.asarray(centre_idx).reshape(3)), shape)
    start = centre - np.asarray(patch_size) // 2
    stop = start + np.asarray(patch_size)
    src_lo, src_hi = np.maximum(start, 0), np.minimum(stop, shape)
    out = np.zeros(patch_size, dtype=np.float32)
    dst_lo = src_lo - start
    dst_hi = dst_lo + (src_hi - src_lo)
    out[dst_lo[0]:dst_hi[0], dst_lo[1]:dst_hi[1], dst_lo[2]:dst_hi[2]] = \
        array[src_lo[0]:src_hi[0], src_lo[1]:src_hi[1], src_lo[2]:src_hi[2]]
    return out


def draw_nonair_voxels(array: np.ndarray, n: int, rng: np.random.Generator,
                       max_rounds: int = 8) -> np.ndarray:
    """n voxel indices (n, 3) int64, drawn uniformly (with replacement) among non-air voxels.

    Rejection from uniform draws over all voxels: exact, needs no list of the (millions of) non-air
    voxels, and a cropped CT is mostly non-air so a couple of rounds suffice. If the acceptance rate
    is tiny it falls back to choosing among the explicit non-air indices. Raises ValueError if the
    volume has no non-air voxel."""
    array = np.asarray(array)
    flat = array.reshape(-1)
    if n <= 0:
        return np.zeros((0, 3), dtype=np.int64)
    if flat.size == 0:
        raise ValueError(f"volume of shape {array.shape} is empty")
    accepted: list[np.ndarray] = []
    have = 0
    for _ in range(max_rounds):
        candidates = rng.integers(0, flat.size, size=max(2 * (n - have), 64))
        good = candidates[flat[candidates] > 0]
        accepted.append(good)
        have += len(good)
        if have >= n:
            break
    if have >= n:
        chosen = np.concatenate(accepted)[:n]
    else:
        nonair = np.flatnonzero(flat > 0)
        if len(nonair) == 0:
            raise ValueError(f"volume of shape {array.shape} has no non-air voxel (intensity > 0)")
        chosen = nonair[rng.integers(0, len(nonair), size=n)]
    return np.stack(np.unravel_index(chosen, array.shape), axis=1).astype(np.int64)
