"""CC2D stage 2 (TPL, "training with pseudo-labels"): stage 1 predicts the landmarks of every
training image; a heatmap + offset detector is trained on those predictions as if they were labels.

Targets per landmark (indices (z, y, x) in 3D, (y, x) in 2D; sizes in voxels): a binary disk
(ellipsoid when `radius` differs per axis) of the voxels within `radius` of the landmark, and at
those voxels the offset from the voxel to the landmark. The network predicts offsets in units of
the radius (so targets are within +-1 per axis).

Loss: binary cross-entropy of the heatmap logits, balanced (the mean over the disk's voxels plus
the mean over the others: a disk is a few hundred voxels of millions, unbalanced BCE would learn
"nowhere"), plus `offset_weight` x L1 of the offsets inside the disks.

Prediction: the `top_k` most probable voxels of each landmark each vote for voxel + offset
(rounded, clipped into the image); the position with the most votes wins (ties: the larger
summed probability of its voters).

Training draws crops of `crop_size` voxels (each holding one landmark chosen at random; other
landmarks count where they fall) with intensity jitter, no rotation; it shares training_loop.py with stage 1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rprloc_core.cc2d.augment import random_crop
from rprloc_core.cc2d.config import RESUMABLE_CHANGES, TPLTrainConfig
from rprloc_core.cc2d.inference import as_input, localize_with_vectors, model_device, template_vectors
from rprloc_core.cc2d.network import CONV, UNetTrunk
from rprloc_core.cc2d.training import check_images
from rprloc_core.training_loop import load_weights, resolve_device, run_training


def _radius(radius, dims: int) -> np.ndarray:
    r = np.broadcast_to(np.asarray(radius, dtype=float), (dims,)).copy()
    if np.any(r <= 0):
        raise ValueError(f"radius must be positive, got {radius}")
    return r


def disk_heatmap_and_offsets(shape, points_idx, radius) -> tuple[np.ndarray, np.ndarray]:
    """Targets on a grid of `shape`: heatmap (P, *shape) float32, 1 where sum(((v - p) / r)^2) <= 1,
    and offsets (P, dims, *shape) float32 = p - v in voxels there, 0 elsewhere."""
    shape = tuple(int(s) for s in shape)
    dims = len(shape)
    points = np.asarray(points_idx, dtype=float).reshape(-1, dims)
    r = _radius(radius, dims).reshape(dims, *[1] * dims)
    grid = np.indices(shape, dtype=float)                               # (dims, *shape)
    heatmap = np.zeros((len(points), *shape), np.float32)
    offsets = np.zeros((len(points), dims, *shape), np.float32)
    for i, p in enumerate(points):
        d = p.reshape(dims, *[1] * dims) - grid
        inside = ((d / r) ** 2).sum(0) <= 1
        heatmap[i] = inside
        offsets[i] = d * inside
    return heatmap, offsets


class TPLNet(nn.Module):
    """The detector: the same U-Net trunk as stage 1 (network.UNetTrunk) and one 1x1(x1) conv on its
    finest level: input (B, 1, *spatial) -> heatmap logits (B, P, *spatial) and offsets
    (B, P, dims, *spatial) in units of `radius`."""

    def __init__(self, dims: int, n_landmarks: int, base_width: int = 8, n_scales: int = 4, norm: str = "instance",
                 radius=3.0):
        super().__init__()
        r = _radius(radius, dims)
        self.config = {"dims": int(dims), "n_landmarks": int(n_landmarks), "base_width": int(base_width),
                       "n_scales": int(n_scales), "norm": norm, "radius": [float(v) for v in r]}
        self.trunk = UNetTrunk(dims, base_width, n_scales, norm)
        self.head = CONV[dims](self.trunk.widths[0], n_landmarks * (1 + dims), 1)

    @property
    def radius(self) -> np.ndarray:
        return np.asarray(self.config["radius"])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.trunk(x)[0])
        p, dims = self.config["n_landmarks"], self.config["dims"]
        return out[:, :p], out[:, p:].reshape(len(out), p, dims, *out.shape[2:])


def tpl_loss(logits: torch.Tensor, offsets: torch.Tensor, heatmap: torch.Tensor, target_offsets: torch.Tensor,
             radius, offset_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(balanced BCE, L1 of the offsets inside the disks). Shapes: logits and heatmap (B, P, *S),
    offsets and target_offsets (B, P, dims, *S), targets in voxels; the loss is their
    weighted sum (`offset_weight`), returned as its two parts times their weights."""
    bce = F.binary_cross_entropy_with_logits(logits, heatmap, reduction="none").flatten(2)
    pos, neg = heatmap.flatten(2), 1 - heatmap.flatten(2)
    balanced = (bce * pos).sum(2) / pos.sum(2).clamp(min=1) + (bce * neg).sum(2) / neg.sum(2).clamp(min=1)
    r = torch.as_tensor(np.asarray(radius, dtype=float), dtype=offsets.dtype, device=offsets.device)
    scaled = target_offsets / r.view(1, 1, -1, *[1] * (offsets.ndim - 3))
    inside = heatmap.unsqueeze(2).expand_as(offsets)
    l1 = ((offsets - scaled).abs() * inside).sum() / inside.sum().clamp(min=1)
    return balanced.mean(), offset_weight * l1


def _batch(images, points, chosen, config: TPLTrainConfig, rng: np.random.Generator, jitter: float, device):
    """Network input and targets for crops (one per (image, landmark) in `chosen`)."""
    x, heat, offs = [], [], []
    for i, landmark in chosen:
        point = np.floor(np.asarray(points[i][landmark], dtype=float) + 0.5).astype(np.int64)
        point = np.clip(point, 0, np.asarray(images[i].shape) - 1)
        crop = random_crop(images[i], config.crop_shape(), rng, 0.0, jitter, point=point)
        h, o = disk_heatmap_and_offsets(crop.image.shape, crop.to_crop(points[i]), config.radius)
        x.append(crop.image)
        heat.append(h)
        offs.append(o)
    x, heat, offs = (torch.from_numpy(np.stack(arrays)).to(device) for arrays in (x, heat, offs))
    return x[:, None], heat, offs


@torch.inference_mode()
def predict_tpl(model: TPLNet, image, top_k: int = 16) -> np.ndarray:
    """Landmark voxels (P, dims) int64 by the majority vote of each landmark's `top_k` most
    probable voxels (each votes for its voxel + predicted offset)."""
    was_training = model.training
    model.eval()
    try:
        logits, offsets = model(as_input(image, model_device(model)))
    finally:
        model.train(was_training)
    shape = np.asarray(np.shape(image))
    prob = torch.sigmoid(logits[0]).flatten(1)                                      # (P, N)
    offsets = offsets[0].flatten(2) * torch.as_tensor(model.radius, dtype=offsets.dtype,
                                                      device=offsets.device).view(1, -1, 1)   # (P, dims, N)
    k = min(int(top_k), prob.shape[1])
    found = []
    for p in range(len(prob)):
        top_prob, top = prob[p].topk(k)
        voxels = np.stack(np.unravel_index(top.cpu().numpy(), tuple(shape)), axis=1)
        votes = np.floor(voxels + offsets[p][:, top].T.cpu().numpy() + 0.5).astype(np.int64)
        votes = np.clip(votes, 0, shape - 1)
        positions, which, counts = np.unique(votes, axis=0, return_inverse=True, return_counts=True)
        weight = np.bincount(which.reshape(-1), weights=top_prob.cpu().numpy(), minlength=len(positions))
        found.append(positions[np.lexsort((weight, counts))[-1]])
    return np.asarray(found, dtype=np.int64).reshape(len(prob), len(shape))


def pseudo_labels(encoder: torch.nn.Module, images: Sequence[np.ndarray], template_image, template_points_idx,
                  landmarks_per_batch: int = 8) -> list[np.ndarray]:
    """Stage 1's predictions (P, dims) for every image: the targets of stage 2 (the template is
    embedded once)."""
    vectors = template_vectors(encoder, template_image, template_points_idx)
    return [localize_with_vectors(encoder, image, vectors, landmarks_per_batch) for image in images]


def build_detector(config: TPLTrainConfig) -> TPLNet:
    """A fresh detector; its weights depend only on config.seed (the global generator is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.SeedSequence([config.seed, 31]).generate_state(1)[0]))
        return TPLNet(config.dims, config.n_landmarks, config.base_width, config.n_scales, config.norm,
                      config.radius)


def _check_points(images, points, config: TPLTrainConfig, what: str) -> list[np.ndarray]:
    if len(points) != len(images):
        raise ValueError(f"{len(images)} {what} images but {len(points)} landmark sets")
    out = [np.asarray(p, dtype=float) for p in points]
    for i, p in enumerate(out):
        if p.shape != (config.n_landmarks, config.dims):
            raise ValueError(f"{what} landmarks {i} have shape {p.shape}, expected ({config.n_landmarks}, "
                             f"{config.dims})")
    return out


def train_tpl(images: Sequence[np.ndarray], points: Sequence[np.ndarray], config: TPLTrainConfig, out_dir,
              device=None, progress: bool = True, validation: tuple | None = None, top_k: int = 16) -> dict:
    """Train (or resume) the detector in `out_dir` on `images` and their landmarks `points`
    ((P, dims) voxel indices each: stage 1's pseudo-labels). `validation`: (images, points) scored
    every `val_every` steps: the loss on a fixed sample of crops (4 per image; best.pt keeps the
    lowest) and the mean error (voxels) of predict_tpl on the whole images. Returns
    training_loop.run_training's summary."""
    images = check_images(images, config.dims, "training")
    points = _check_points(images, points, config, "training")
    device = resolve_device(device)
    net = build_detector(config).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    rng = np.random.default_rng([config.seed, 37])
    radius = net.radius

    def train_step(step: int) -> dict:
        chosen = [(int(i), int(rng.integers(config.n_landmarks))) for i in rng.integers(len(images),
                                                                                          size=config.batch_size)]
        x, heat, offs = _batch(images, points, chosen, config, rng, config.intensity_jitter, device)
        bce, l1 = tpl_loss(*net(x), heat, offs, radius, config.offset_weight)
        optimizer.zero_grad()
        (bce + l1).backward()
        optimizer.step()
        return {"loss": float(bce.detach() + l1.detach()), "bce": float(bce.detach()), "offset_l1": float(l1.detach())}

    check = None
    if validation is not None:
        val_images = check_images(validation[0], config.dims, "validation")
        val_points = _check_points(val_images, validation[1], config, "validation")
        val_rng = np.random.default_rng([config.seed, 41])
        fixed = [_batch(val_images, val_points, [(i, int(val_rng.integers(config.n_landmarks))) for _ in range(4)],
                        config, val_rng, 0.0, device) for i in range(len(val_images))]

        def check() -> dict:
            losses = [sum(tpl_loss(*net(x), heat, offs, radius, config.offset_weight)) for x, heat, offs in fixed]
            errors = [np.linalg.norm(predict_tpl(net, image, top_k) - truth, axis=1).mean()
                      for image, truth in zip(val_images, val_points)]
            return {"val_loss": float(torch.stack(losses).mean()), "val_error_vox": float(np.mean(errors))}

    return run_training(net, optimizer, rng, config, RESUMABLE_CHANGES, out_dir, train_step, check,
                        desc="CC2D TPL", progress=progress)


def load_detector(path, device=None) -> tuple[TPLNet, dict]:
    """The detector of a `best.pt` or `last.pt` (eval mode) and the config it was trained with."""
    return load_weights(path, TPLNet, device)
