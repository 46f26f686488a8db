"""CC2D stage 1: self-supervised training of the feature extractor on unlabelled images, resumable.

A step draws `batch_size` images (with replacement); in each a random point (a voxel > 0 when
`foreground_points`) and an augmented crop holding it (augment.random_crop). The crops go through
the network as one batch, each whole image on its own (images may differ in size); the loss is
loss.ssl_loss. All randomness comes from one numpy generator seeded by config.seed and saved in
`last.pt`, and the initial weights from config.seed alone, so a paused run continues the same run.

Validation (optional): a fixed sample of `val_samples` (crop, point) draws per validation image,
the same for every run with this seed. It reports the loss (the quantity best.pt is chosen by),
the loss per scale, and the localisation error in voxels when each crop's point is looked up in
its whole image with the inference rule (product of clipped upsampled cosine maps, argmax).

Images are numpy arrays, 2D (y, x) or 3D (z, y, x), float32, already intensity-normalised (air 0);
loading and normalising them is the caller's business. Files: see rprloc_core/training_loop.py.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from rprloc_core.cc2d.augment import Crop, random_crop
from rprloc_core.cc2d.config import RESUMABLE_CHANGES, CC2DTrainConfig
from rprloc_core.cc2d.inference import as_input, locate
from rprloc_core.cc2d.loss import embedding_at, scale_losses
from rprloc_core.cc2d.network import CascadeEncoder
from rprloc_core.training_loop import load_weights, resolve_device, run_training


def build_encoder(config: CC2DTrainConfig) -> CascadeEncoder:
    """A fresh extractor; its weights depend only on config.seed (the global generator is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.SeedSequence([config.seed, 29]).generate_state(1)[0]))
        return CascadeEncoder(config.dims, config.base_width, config.embedding_length, config.n_scales, config.norm)


def check_images(images: Sequence[np.ndarray], dims: int, what: str) -> list[np.ndarray]:
    """float32 arrays of `dims` axes, or ValueError naming the bad one."""
    if len(images) == 0:
        raise ValueError(f"no {what} images")
    out = []
    for i, image in enumerate(images):
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != dims:
            raise ValueError(f"{what} image {i} has shape {image.shape}, expected {dims} axes (dims={dims})")
        out.append(image)
    return out


def draw_crops(images: Sequence[np.ndarray], which, config: CC2DTrainConfig, rng: np.random.Generator) -> list[Crop]:
    """One augmented crop (with its point) of each image images[i], i in `which`."""
    return [random_crop(images[i], config.crop_shape(), rng, config.max_rotation_deg, config.intensity_jitter,
                        foreground=config.foreground_points) for i in which]


def crops_loss(net: CascadeEncoder, images: Sequence[np.ndarray], which, crops: Sequence[Crop],
               config: CC2DTrainConfig, device) -> torch.Tensor:
    """Per-scale losses (n_scales,) averaged over the crops; crop b was cut from images[which[b]]."""
    crop_maps = net(torch.from_numpy(np.stack([c.image for c in crops]))[:, None].to(device))
    vectors = embedding_at(crop_maps, np.stack([c.point for c in crops]))
    losses = []
    for b, (i, crop) in enumerate(zip(which, crops)):
        maps = net(as_input(images[i], device))        # whole images one by one: their sizes may differ
        losses.append(scale_losses(maps, [v[b:b + 1] for v in vectors], crop.source_point[None],
                                   config.temperature, config.local_window))
    return torch.stack(losses).mean(0)


def validation_sample(images: Sequence[np.ndarray], config: CC2DTrainConfig) -> list[tuple[int, list[Crop]]]:
    """The fixed validation draws: per image, `val_samples` crops (the same for every run with this seed)."""
    rng = np.random.default_rng([config.seed, 23])
    return [(i, draw_crops(images, [i] * config.val_samples, config, rng)) for i in range(len(images))]


def validate(net: CascadeEncoder, images: Sequence[np.ndarray], sample, config: CC2DTrainConfig, device) -> dict:
    """Loss, loss per scale and mean localisation error (voxels) on the fixed validation draws;
    each image is embedded once for all its crops."""
    per_scale, errors = [], []
    for i, crops in sample:
        crop_maps = net(torch.from_numpy(np.stack([c.image for c in crops]))[:, None].to(device))
        vectors = embedding_at(crop_maps, np.stack([c.point for c in crops]))
        maps = net(as_input(images[i], device))
        points = np.stack([c.source_point for c in crops])
        per_scale.append(scale_losses([m.expand(len(crops), *m.shape[1:]) for m in maps], vectors, points,
                                      config.temperature, config.local_window))
        found = locate([m[0] for m in maps], vectors, images[i].shape)
        errors.extend(np.linalg.norm(found - points, axis=1))
    per_scale = torch.stack(per_scale).mean(0).cpu().numpy()
    return {"val_loss": float(per_scale.sum()), "val_error_vox": float(np.mean(errors)),
            **{f"val_loss_scale{s}": float(v) for s, v in enumerate(per_scale)}}


def train_ssl(volumes: Sequence[np.ndarray], config: CC2DTrainConfig, out_dir, device=None, progress: bool = True,
              validation: Sequence[np.ndarray] | None = None) -> dict:
    """Train (or resume) the extractor in `out_dir` on `volumes` (2D or 3D numpy images, as
    config.dims says). `validation`: images to score a fixed sample of crops on at every
    `val_every` steps (best.pt keeps the lowest loss). Returns training_loop.run_training's summary."""
    volumes = check_images(volumes, config.dims, "training")
    validation = check_images(validation, config.dims, "validation") if validation is not None else None
    device = resolve_device(device)
    net = build_encoder(config).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    rng = np.random.default_rng([config.seed, 13])

    def train_step(step: int) -> dict:
        which = rng.integers(len(volumes), size=config.batch_size)
        losses = crops_loss(net, volumes, which, draw_crops(volumes, which, config, rng), config, device)
        loss = losses.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach()), **{f"loss_scale{s}": float(v) for s, v in enumerate(losses.detach())}}

    check = None
    if validation:
        sample = validation_sample(validation, config)

        def check() -> dict:
            return validate(net, validation, sample, config, device)

    return run_training(net, optimizer, rng, config, RESUMABLE_CHANGES, out_dir, train_step, check,
                        desc="CC2D self-supervised", progress=progress)


def load_encoder(path, device=None) -> tuple[CascadeEncoder, dict]:
    """The extractor of a `best.pt` or `last.pt` (eval mode) and the config it was trained with."""
    return load_weights(path, CascadeEncoder, device)
