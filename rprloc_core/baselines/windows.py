"""The sliding-window convention shared by the template-matching (GS) and feature-matching (FM)
baselines, and their method names.

The window of size (pz, py, px) *centred* at integer voxel c covers the voxels
`c - size // 2 ... c - size // 2 + size - 1` of the query, zero outside the query (the patch
convention of `rprloc_core.geometry.patches`).
"""

from __future__ import annotations

import numpy as np
import torch

from rprloc_core.geometry.patches import require_volume_fits_patch

GRAY_METHODS = ("gs_mse", "gs_cosine", "gs_ncc")
FEATURE_METHODS = ("fm_mse", "fm_cosine")
METHODS = GRAY_METHODS + FEATURE_METHODS


def check_window_fits(query_shape, template_size) -> None:
    if len(template_size) != 3:
        raise ValueError(f"templates must be (P, pz, py, px), got template size {tuple(template_size)}")
    require_volume_fits_patch(query_shape, template_size, what="query")


def pad_for_windows(array, size):
    """Zero-pad a (z, y, x) numpy array or torch tensor so that the window centred at voxel c of the
    original starts at voxel c of the padded one (size // 2 before, size - size // 2 - 1 after)."""
    before = [s // 2 for s in size]
    after = [s - s // 2 - 1 for s in size]
    if isinstance(array, torch.Tensor):
        pad = []
        for b, a in zip(reversed(before), reversed(after)):   # F.pad lists the last axis first
            pad += [b, a]
        return torch.nn.functional.pad(array, pad)
    return np.pad(array, list(zip(before, after)))


def default_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
