"""CC2D's training crops: a random point, a random crop of fixed size that contains it, rotated by
a small angle in the (y, x) plane and jittered in intensity (numpy only: the data side of training).

Indices are (z, y, x) in 3D and (y, x) in 2D. The rotation turns the (y, x) plane about the
chosen point and leaves z alone: CT slices are thick (3 mm) and patients lie in nearly the same
axial orientation, so in-plane turns are the realistic variation; in 2D it is the ordinary
rotation. Crop voxel q shows image position

    from_crop(q) = p + R(-angle) (q - c)      (only the (y, x) part is rotated)

where p is the point in the image and c its (integer) position in the crop, so the point sits
exactly at c whatever the angle. Values between voxels are bilinear in (y, x); z positions stay
integers. Whatever falls outside the image is 0 (air after the intensity map).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rprloc_core.geometry.patches import draw_nonair_voxels


def _rotation(angle_deg: float) -> np.ndarray:
    """The 2 x 2 matrix turning (y, x) vectors by `angle_deg`."""
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


@dataclass(frozen=True)
class Crop:
    image: np.ndarray           # float32, the crop size
    point: np.ndarray           # (dims,) int64: where the chosen point is in the crop
    source_point: np.ndarray    # (dims,) int64: where it is in the image
    angle_deg: float            # the (y, x) rotation

    def from_crop(self, idx) -> np.ndarray:
        """Image positions (..., dims) float of crop positions (..., dims)."""
        d = np.asarray(idx, dtype=float) - self.point
        d[..., -2:] = d[..., -2:] @ _rotation(-self.angle_deg).T
        return self.source_point + d

    def to_crop(self, idx) -> np.ndarray:
        """Crop positions (..., dims) float of image positions (..., dims): the inverse of from_crop."""
        d = np.asarray(idx, dtype=float) - self.source_point
        d[..., -2:] = d[..., -2:] @ _rotation(self.angle_deg).T
        return self.point + d


def crop_start(point: np.ndarray, image_shape, crop_shape, rng: np.random.Generator) -> np.ndarray:
    """A random crop origin per axis such that the crop holds `point` and stays inside the image
    where it can (a crop longer than the image covers all of it, with air beyond)."""
    point, size, crop = (np.asarray(v, dtype=np.int64) for v in (point, image_shape, crop_shape))
    lo = np.maximum(np.minimum(0, size - crop), point - crop + 1)
    hi = np.minimum(np.maximum(0, size - crop), point)
    return rng.integers(lo, hi + 1)


def sample(image: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Values of `image` at positions (..., dims): bilinear in the last two axes, the leading one
    (z in 3D) rounded; 0 outside the image."""
    image = np.asarray(image, dtype=np.float32)
    positions = np.asarray(positions, dtype=float)
    lead = np.floor(positions[..., :-2] + 0.5).astype(np.int64)
    plane = positions[..., -2:]
    base = np.floor(plane).astype(np.int64)
    frac = plane - base
    lead_inside = np.all((lead >= 0) & (lead < np.asarray(image.shape[:-2])), axis=-1)
    lead = np.clip(lead, 0, np.asarray(image.shape[:-2], dtype=np.int64) - 1)
    out = np.zeros(positions.shape[:-1], dtype=np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            y, x = base[..., 0] + dy, base[..., 1] + dx
            weight = (frac[..., 0] if dy else 1 - frac[..., 0]) * (frac[..., 1] if dx else 1 - frac[..., 1])
            inside = lead_inside & (y >= 0) & (y < image.shape[-2]) & (x >= 0) & (x < image.shape[-1])
            index = (*np.moveaxis(lead, -1, 0), np.clip(y, 0, image.shape[-2] - 1), np.clip(x, 0, image.shape[-1] - 1))
            out += np.where(inside, weight * image[index], 0.0)
    return out.astype(np.float32)


def random_crop(image: np.ndarray, crop_shape, rng: np.random.Generator, max_rotation_deg: float = 0.0,
                intensity_jitter: float = 0.0, point=None, foreground: bool = True) -> Crop:
    """A training crop of `crop_shape` voxels holding `point` (drawn at random if None: among the
    voxels > 0 when `foreground`, else anywhere), rotated by U(-a, a) degrees in the (y, x) plane
    and jittered: crop * (1 + U(-j, j)) + U(-j, j)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected a 2D (y, x) or 3D (z, y, x) image, got shape {image.shape}")
    crop_shape = tuple(int(c) for c in crop_shape)
    if len(crop_shape) != image.ndim:
        raise ValueError(f"crop shape {crop_shape} does not match the image's {image.ndim} axes")
    if point is None:
        point = draw_nonair_voxels(image, 1, rng)[0] if foreground else \
            np.array([rng.integers(s) for s in image.shape])
    point = np.asarray(point, dtype=np.int64).reshape(image.ndim)
    if np.any(point < 0) or np.any(point >= image.shape):
        raise ValueError(f"point {point.tolist()} is outside the image of shape {image.shape}")
    at = point - crop_start(point, image.shape, crop_shape, rng)
    angle = float(rng.uniform(-max_rotation_deg, max_rotation_deg)) if max_rotation_deg > 0 else 0.0
    crop = Crop(np.zeros(crop_shape, np.float32), at, point, angle)
    grid = np.stack(np.meshgrid(*(np.arange(c) for c in crop_shape), indexing="ij"), axis=-1)
    values = sample(image, crop.from_crop(grid))
    if intensity_jitter > 0:
        scale, shift = rng.uniform(-intensity_jitter, intensity_jitter, size=2)
        values = values * np.float32(1 + scale) + np.float32(shift)
    return Crop(values.astype(np.float32), at, point, angle)
