"""Spatial augmentation of Pnet training patches: each patch zoomed and turned about its own centre.

Pnet learns offsets between two patches of the same scan, but at inference the support and the query
are two patients whose heads differ in size and pose. Each training patch here gets its own random
zoom (isotropic, in mm) and its own turn about the z axis (yaw, in the y-x plane), so that the two
patches of a pair no longer share one scale and one pose, as a support and a query would not. The
turn is about each patch's centre and the centre is kept, so every pair's true offset is unchanged;
the sampler and its labels do not change. Intensity is left alone: the network's instance norms
remove a patch's affine intensity change anyway.

A patch is sampled from a larger cut around the same centre (`source_size`), trilinearly, on a grid
built in physical mm so that anisotropic voxels are turned and zoomed as tissue would be. With zoom
1 and no turn the sampled points fall on voxel centres and the patch equals the plain cut (to float
rounding).

Measured (notebook 02, 2026-11-28): the released models fine-tuned with a zoom of +-10 % and a turn
of +-10 degrees gained nothing over controls fine-tuned the same way without it, so the profile
leaves it off; it stays as a training option.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from rprloc_core.geometry.patches import as_patch_size


def check_augmentation(zoom: float, yaw_deg: float) -> None:
    if not 0.0 <= zoom < 1.0:
        raise ValueError(f"augment_zoom must be in [0, 1) (a relative change of the patch's extent), got {zoom}")
    if not 0.0 <= yaw_deg <= 45.0:
        raise ValueError(f"augment_yaw_deg must be in [0, 45] degrees, got {yaw_deg}")


def source_size(patch_size, spacing_mm, zoom: float, yaw_deg: float) -> tuple[int, int, int]:
    """The cut (voxels per axis) that holds every point a patch may sample: its extent grown by the
    largest zoom and, in the y-x plane, by the largest turn (a turned square reaches cos + sin
    further along each axis, counted in mm so that unequal y and x spacings are covered). The cut
    grows by the same number of voxels on both sides, so its centre voxel is the patch's."""
    check_augmentation(zoom, yaw_deg)
    size = np.asarray(as_patch_size(patch_size), dtype=float)
    spacing = np.asarray(spacing_mm, dtype=float)
    half_mm = size / 2.0 * spacing * (1.0 + zoom)
    theta = math.radians(yaw_deg)
    reach_y = half_mm[1] * math.cos(theta) + half_mm[2] * math.sin(theta)
    reach_x = half_mm[2] * math.cos(theta) + half_mm[1] * math.sin(theta)
    half_vox = np.array([half_mm[0], reach_y, reach_x]) / spacing
    grow = np.ceil(half_vox - size / 2.0).astype(int) + 1          # + 1: the trilinear neighbour
    return tuple(int(s + 2 * g) for s, g in zip(size.astype(int), np.maximum(grow, 0)))


def draw_transforms(n: int, zoom: float, yaw_deg: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per patch a zoom factor, uniform in [1 - zoom, 1 + zoom], and a yaw in radians, uniform in
    +- yaw_deg. Nothing is drawn for a setting that is 0, so that such runs keep their stream."""
    check_augmentation(zoom, yaw_deg)
    scales = rng.uniform(1.0 - zoom, 1.0 + zoom, size=n) if zoom > 0 else np.ones(n)
    yaws = np.radians(rng.uniform(-yaw_deg, yaw_deg, size=n)) if yaw_deg > 0 else np.zeros(n)
    return scales, yaws


def sample_patches(source: torch.Tensor, patch_size, spacing_mm, scales, yaws) -> torch.Tensor:
    """Patches (N, 1, *patch_size) from larger cuts `source` (N, 1, *source size) around the same
    centres. Output voxel d (voxels from the patch's centre voxel) samples the physical point
    R(yaw) (scale * d * spacing) from the source's centre voxel: scale > 1 takes in more tissue
    (it looks smaller)."""
    size = as_patch_size(patch_size)
    big = source.shape[2:]
    device, dtype = source.device, source.dtype
    spacing = torch.as_tensor(np.asarray(spacing_mm, dtype=float), dtype=dtype, device=device)
    axes = [torch.arange(s, device=device, dtype=dtype) - s // 2 for s in size]
    d = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1) * spacing          # (pz, py, px, 3) mm
    scale = torch.as_tensor(np.asarray(scales, dtype=float), dtype=dtype, device=device).view(-1, 1, 1, 1, 1)
    yaw = torch.as_tensor(np.asarray(yaws, dtype=float), dtype=dtype, device=device).view(-1, 1, 1, 1)
    p = d.unsqueeze(0) * scale                                                          # (N, pz, py, px, 3)
    cos, sin = torch.cos(yaw), torch.sin(yaw)
    y = cos * p[..., 1] - sin * p[..., 2]
    x = sin * p[..., 1] + cos * p[..., 2]
    index = torch.stack([p[..., 0], y, x], dim=-1) / spacing                          # voxels from centre
    centre = torch.as_tensor([s // 2 for s in big], dtype=dtype, device=device)
    extent = torch.as_tensor([s - 1 for s in big], dtype=dtype, device=device)
    normalised = 2.0 * (index + centre) / extent - 1.0                                 # align_corners=True
    grid = normalised.flip(-1)                                                          # grid_sample wants x, y, z
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
