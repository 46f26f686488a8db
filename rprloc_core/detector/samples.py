"""A labelled case as detector training material, on the coarse grid the detector sees.

The detector works on the preprocessed grid pooled `downsample` times (6 x 4 x 4 mm by default, as
RPR-Loc's coarse model): a whole head-and-neck scan is then about 55 x 65 x 75 voxels, small
enough for a U-Net on a CPU. Targets: each organ's mask as the fraction of each coarse voxel it
covers, and its true box (the paper's inclusive voxel box of the full-resolution mask) in coarse
voxel indices, from which the per-voxel face distances follow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from rprloc_core.data.preprocess import PreprocessedCase
from rprloc_core.detector.network import DISTANCE_UNIT_MM
from rprloc_core.geometry.boxes import bounding_box
from rprloc_core.geometry.volume import Volume

# Organs that swap names when a scan is mirrored left-right (the x axis of the LPS grid).
MIRROR_PAIRS = (("LeftParotid", "RightParotid"),)


@dataclass
class DetectorSample:
    case_id: str
    image: np.ndarray          # (Z, Y, X) float32 intensity on the coarse grid
    masks: np.ndarray          # (n, Z, Y, X) float32: fraction of each coarse voxel inside the organ
    present: np.ndarray        # (n,) bool: the case has a mask for the organ
    lo: np.ndarray             # (n, 3) coarse voxel index of the box's first voxel centre (NaN if absent)
    hi: np.ndarray             # (n, 3) ... of its last voxel centre
    spacing: np.ndarray        # (3,) coarse voxel size, mm


def fine_to_coarse_index(idx, factor: int) -> np.ndarray:
    """A coarse voxel j covers fine voxels factor*j .. factor*j + factor - 1: its centre is fine
    index factor*j + (factor - 1) / 2."""
    return (np.asarray(idx, dtype=float) - (factor - 1) / 2.0) / factor


def coarse_to_fine_index(idx, factor: int) -> np.ndarray:
    return np.asarray(idx, dtype=float) * factor + (factor - 1) / 2.0


def sample_from_case(case: PreprocessedCase, organs, downsample: int) -> DetectorSample:
    coarse = case.volume.downsample(downsample)
    image = coarse.array
    n = len(organs)
    masks = np.zeros((n, *image.shape), np.float32)
    present = np.zeros(n, bool)
    lo, hi = np.full((n, 3), np.nan), np.full((n, 3), np.nan)
    for i, organ in enumerate(organs):
        if organ in case.labels and case.labels[organ].any():
            box = bounding_box(case.labels[organ], name=f"{case.case_id}/{organ}")
            masks[i] = Volume(case.labels[organ], case.spacing).downsample(downsample).array
            present[i] = True
            lo[i], hi[i] = fine_to_coarse_index(box.lo, downsample), fine_to_coarse_index(box.hi, downsample)
    return DetectorSample(case.case_id, image, masks, present, lo, hi, coarse.spacing)


def mirrored(sample: DetectorSample, organs) -> DetectorSample:
    """The sample flipped left-right, with left and right organs swapped."""
    order = list(range(len(organs)))
    for a, b in MIRROR_PAIRS:
        if a in organs and b in organs:
            i, j = organs.index(a), organs.index(b)
            order[i], order[j] = j, i
    width = sample.image.shape[2]
    lo, hi = sample.lo[order].copy(), sample.hi[order].copy()
    lo[:, 2], hi[:, 2] = width - 1 - hi[:, 2], width - 1 - lo[:, 2]
    return replace(sample, image=np.ascontiguousarray(sample.image[:, :, ::-1]),
                   masks=np.ascontiguousarray(sample.masks[order][..., ::-1]), present=sample.present[order],
                   lo=lo, hi=hi)


def padded_shape(shapes, multiple: int, margin: int = 0) -> tuple[int, ...]:
    """The smallest shape holding every shape plus `margin` voxels per axis, in multiples of `multiple`."""
    largest = np.max(np.asarray(shapes), axis=0) + margin
    return tuple(int(-(-s // multiple) * multiple) for s in largest)


def face_distances(lo: np.ndarray, hi: np.ndarray, shape, spacing) -> np.ndarray:
    """(n, 6, Z, Y, X) distances in mm from each voxel centre to the six faces of each box
    (z_lo, y_lo, x_lo, z_hi, y_hi, x_hi), positive inside the box."""
    n = len(lo)
    out = np.empty((n, 6, *shape), np.float32)
    for axis in range(3):
        coords = np.arange(shape[axis], dtype=np.float32) * float(spacing[axis])
        view = [1, 1, 1]
        view[axis] = shape[axis]
        coords = coords.reshape(view)
        for i in range(n):
            out[i, axis] = coords - np.float32(lo[i, axis] * spacing[axis])
            out[i, 3 + axis] = np.float32(hi[i, axis] * spacing[axis]) - coords
    return out


def organ_centre(sample: DetectorSample) -> np.ndarray:
    """Centre (coarse voxel index) of the box around every organ present, or of the image."""
    if not sample.present.any():
        return (np.asarray(sample.image.shape) - 1) / 2.0
    return (np.nanmin(sample.lo, axis=0) + np.nanmax(sample.hi, axis=0)) / 2.0


def crop_start(sample: DetectorSample, crop, rng: np.random.Generator, jitter) -> np.ndarray:
    """First voxel of a training crop: centred on the organs, moved by up to `jitter` voxels per
    axis (organs near the crop's edge get cut, as they may be in a user's scan)."""
    centre = organ_centre(sample) + rng.uniform(-1, 1, 3) * np.asarray(jitter)
    return np.rint(centre - (np.asarray(crop) - 1) / 2.0).astype(int)


def place(sample: DetectorSample, start, shape) -> tuple[np.ndarray, np.ndarray]:
    """Image and masks on a canvas of `shape` whose voxel 0 is the sample's voxel `start` (which
    may lie outside the image: the rest of the canvas is air, 0)."""
    start, shape = np.asarray(start, int), np.asarray(shape, int)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + shape, np.asarray(sample.image.shape))
    source = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    target = tuple(slice(int(a), int(b)) for a, b in zip(lo - start, hi - start))
    image = np.zeros(tuple(shape), np.float32)
    masks = np.zeros((len(sample.masks), *shape), np.float32)
    if np.all(hi > lo):
        image[target] = sample.image[source]
        masks[(slice(None), *target)] = sample.masks[(slice(None), *source)]
    return image, masks


def make_batch(samples, multiple: int, rng: np.random.Generator | None = None, max_shift: int = 0,
               intensity_jitter: float = 0.0, crop=None) -> dict:
    """Tensors for one step: image (B, 1, P...), masks (B, n, P...), present (B, n), distances
    (B, n, 6, P...) in DISTANCE_UNIT_MM, inside (B, n, P...).

    Without `crop`, each whole image is placed at a random offset of up to `max_shift` voxels per
    axis (rng given; none without) on an air canvas. With `crop` (a shape, multiples of
    `multiple`), each sample gives a crop around its organs moved by up to `max_shift` voxels."""
    if crop is None:
        shape = padded_shape([s.image.shape for s in samples], multiple, max_shift)
    else:
        shape = tuple(int(c) for c in crop)
        if any(c % multiple for c in shape):
            raise ValueError(f"crop {shape} must be a multiple of {multiple} on every axis")
    images, masks, distances = [], [], []
    for s in samples:
        if crop is not None:
            start = crop_start(s, shape, rng, max_shift) if rng is not None else \
                np.rint(organ_centre(s) - (np.asarray(shape) - 1) / 2.0).astype(int)
        else:
            room = np.asarray(shape) - np.asarray(s.image.shape)
            start = -(rng.integers(0, np.minimum(room, max_shift) + 1) if rng is not None else np.zeros(3, int))
        image, mask = place(s, start, shape)
        if rng is not None and intensity_jitter:
            image = image * np.float32(1 + rng.uniform(-intensity_jitter, intensity_jitter)) \
                + np.float32(rng.uniform(-intensity_jitter, intensity_jitter) / 2)
        lo, hi = np.nan_to_num(s.lo - start), np.nan_to_num(s.hi - start)
        images.append(image)
        masks.append(mask)
        distances.append(face_distances(lo, hi, shape, s.spacing) / DISTANCE_UNIT_MM)
    masks = torch.from_numpy(np.stack(masks))
    return {"image": torch.from_numpy(np.stack(images))[:, None], "masks": masks,
            "present": torch.from_numpy(np.stack([s.present for s in samples])),
            "distances": torch.from_numpy(np.stack(distances)), "inside": masks >= 0.5}
