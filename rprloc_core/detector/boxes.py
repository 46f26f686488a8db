"""A trained detector on a new case -> one box per organ.

Two rules turn the network's outputs into a box (notebook 08 chooses between them on validation
patients):
- "mask": the organ's probability map, upsampled to the case's working grid, thresholded; the box
  of its largest connected component;
- "votes": every coarse voxel of that component votes for the six faces (its position minus or
  plus the regressed distances); each face is the probability-weighted median of the votes.
An organ whose probability never reaches the threshold is still boxed, from the voxels within half
of its highest probability, so that every organ gets a prediction (a miss is scored, not hidden).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from rprloc_core.data.preprocess import PreprocessedCase
from rprloc_core.detector.network import DISTANCE_UNIT_MM, DetectorNet
from rprloc_core.detector.samples import coarse_to_fine_index, padded_shape
from rprloc_core.geometry.boxes import VoxelBox, bounding_box

RULES = ("mask", "votes")


@torch.no_grad()
def forward(net: DetectorNet, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (n, Z, Y, X) and face distances in mm (n, 6, Z, Y, X) for one coarse image."""
    net.eval()
    shape = image.shape
    x = torch.zeros((1, 1, *padded_shape([shape], net.multiple)))
    x[0, 0, : shape[0], : shape[1], : shape[2]] = torch.from_numpy(np.ascontiguousarray(image, np.float32))
    return maps(*net(x), image.shape)


def maps(logits: torch.Tensor, distances: torch.Tensor, shape) -> tuple[np.ndarray, np.ndarray]:
    """The network's outputs for one image placed at the canvas origin, cut to its `shape`:
    probabilities (n, Z, Y, X) and face distances in mm (n, 6, Z, Y, X)."""
    crop = tuple(slice(0, int(n)) for n in shape)
    probs = torch.sigmoid(logits[0][(slice(None), *crop)]).numpy()
    return probs, distances[0][(slice(None), slice(None), *crop)].numpy() * DISTANCE_UNIT_MM


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (the mask itself if empty)."""
    if not mask.any():
        return mask
    labels = sitk.GetArrayFromImage(sitk.RelabelComponent(
        sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True), sortByObjectSize=True))
    return labels == 1


def organ_region(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Voxels taken as the organ: the largest component above the threshold (lowered to half the
    map's maximum where nothing reaches it)."""
    return largest_component(prob >= min(threshold, 0.5 * float(prob.max())))


def mask_box(prob: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    return tuple(bounding_box(organ_region(prob, threshold)))


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def vote_box(prob: np.ndarray, distances_mm: np.ndarray, spacing,
             threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Box (lo, hi) in the coarse grid's voxel indices from the face votes of the organ region."""
    region = organ_region(prob, threshold)
    voxels = np.argwhere(region).astype(float)
    weights = prob[region].astype(float)
    votes = distances_mm[:, region] / np.concatenate([spacing, spacing])[:, None]   # (6, N) in voxels
    lo = [_weighted_median(voxels[:, a] - votes[a], weights) for a in range(3)]
    hi = [_weighted_median(voxels[:, a] + votes[3 + a], weights) for a in range(3)]
    return np.minimum(lo, hi), np.maximum(lo, hi)


def upsample(prob: np.ndarray, factor: int, shape) -> np.ndarray:
    """A coarse map on the fine grid (trilinear; coarse voxel centres land where Volume.downsample
    put them)."""
    if factor == 1:
        return prob
    t = torch.from_numpy(np.ascontiguousarray(prob, np.float32))[None, None]
    fine = F.interpolate(t, scale_factor=factor, mode="trilinear", align_corners=False,
                         recompute_scale_factor=False)[0, 0].numpy()
    return fine[: shape[0], : shape[1], : shape[2]]


def detect(net: DetectorNet, case: PreprocessedCase, organs, downsample: int, rule: str = "votes",
           threshold: float = 0.5) -> dict[str, VoxelBox]:
    """{organ: VoxelBox in the case's working-grid voxel indices} for the organs the net knows."""
    probs, distances = forward(net, case.volume.downsample(downsample).array)
    return boxes_from_maps(probs, distances, case, organs, downsample, rule, threshold)


def boxes_from_maps(probs: np.ndarray, distances: np.ndarray, case: PreprocessedCase, organs, downsample: int,
                    rule: str = "votes", threshold: float = 0.5) -> dict[str, VoxelBox]:
    """The boxes of `detect` from the network's maps on the case's coarse grid (`forward`)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    boxes = {}
    for i, organ in enumerate(organs):
        if rule == "mask":
            lo, hi = mask_box(upsample(probs[i], downsample, case.volume.shape), threshold)
        else:
            lo, hi = vote_box(probs[i], distances[i], case.spacing * downsample, threshold)
            lo, hi = coarse_to_fine_index(lo, downsample), coarse_to_fine_index(hi, downsample)
        top = np.asarray(case.volume.shape, float) - 1
        boxes[organ] = VoxelBox(np.clip(lo, 0, top), np.clip(hi, 0, top))
    return boxes


def face_centres(box: VoxelBox) -> np.ndarray:
    """(6, 3) centres of the box's faces (voxel indices): their per-axis min and max is the box, so
    they are scored as the six extreme points."""
    centre = box.centre
    points = np.repeat(centre[None], 6, axis=0)
    for axis in range(3):
        points[2 * axis, axis], points[2 * axis + 1, axis] = box.lo[axis], box.hi[axis]
    return points
