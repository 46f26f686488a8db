"""Axis order and physical space: numpy (z, y, x) against SimpleITK (x, y, z), and continuous
voxel indices against physical LPS positions in mm. The only place that converts between them."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


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
