"""Training the detector: losses and a resumable loop that validates as it goes.

Loss per step = soft Dice + binary cross-entropy of the segmentation (soft targets: the fraction
of each coarse voxel inside the organ) + `box_weight` x smooth-L1 of the face distances at the
voxels inside each organ. Organs a case has no mask for add nothing. Augmentation: a random
left-right mirror (left and right organs swapped), a random shift inside the padded canvas and a
small intensity jitter. Steps train on crops around the organs (whole scans are 2-3 times larger and
mostly shoulders and air); validation and inference see whole scans.

The loop is training_loop.run_training (shared with CC2D and PIN): `last.pt` (everything needed to
resume) every `checkpoint_every` steps, `best.pt` (weights only) whenever the validation loss
improves; rerun the same call after an interruption and it continues. `time_limit_s` only pauses a
run.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rprloc_core.detector.boxes import maps, mask_box, vote_box
from rprloc_core.detector.config import RESUMABLE_CHANGES, DetectorTrainConfig
from rprloc_core.detector.network import DetectorNet
from rprloc_core.detector.samples import DetectorSample, make_batch, mirrored
from rprloc_core.metrics import box_iou_voxel
from rprloc_core.training_loop import load_weights, run_training


def build_network(config: DetectorTrainConfig) -> DetectorNet:
    """A fresh network; its weights depend only on config.seed (the global generator is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.SeedSequence([config.seed, 17]).generate_state(1)[0]))
        return DetectorNet(len(config.organs), config.width, config.levels)


def losses(logits, distances, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(segmentation loss, box loss) of one batch, each a mean over the organs present."""
    present = batch["present"].float()                                  # (B, n)
    if present.sum() == 0:
        zero = logits.sum() * 0
        return zero, zero
    target = batch["masks"]
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(2).mean(2)
    prob = torch.sigmoid(logits).flatten(2)
    overlap = (prob * target.flatten(2)).sum(2)
    dice = 1 - (2 * overlap + 1) / (prob.sum(2) + target.flatten(2).sum(2) + 1)
    segmentation = ((bce + dice) * present).sum() / present.sum()
    inside = batch["inside"].unsqueeze(2).expand_as(distances)           # (B, n, 6, ...)
    if inside.any():
        per_voxel = F.smooth_l1_loss(distances, batch["distances"], reduction="none", beta=0.1)
        box = (per_voxel * inside).sum() / inside.sum()
    else:
        box = distances.sum() * 0
    return segmentation, box


def validate(net: DetectorNet, samples, config: DetectorTrainConfig) -> dict:
    """Validation loss and the mean IoU (coarse grid) of both box rules over the organs present."""
    total, ious = [], {"mask": [], "votes": []}
    with torch.no_grad():
        for s in samples:
            batch = make_batch([s], net.multiple)      # the whole image at the canvas origin, as `forward`
            net.eval()
            logits, distances = net(batch["image"])
            seg, box = losses(logits, distances, batch)
            total.append(float(seg + config.box_weight * box))
            probs, distances_mm = maps(logits, distances, s.image.shape)
            for i in np.flatnonzero(s.present):
                truth = (s.lo[i], s.hi[i])
                ious["mask"].append(box_iou_voxel(mask_box(probs[i]), truth))
                ious["votes"].append(box_iou_voxel(vote_box(probs[i], distances_mm[i], s.spacing), truth))
    return {"val_loss": float(np.mean(total)),
            **{f"val_iou_{rule}_pct": 100 * float(np.nanmean(v)) for rule, v in ious.items()}}


def train_detector(config: DetectorTrainConfig, train: list[DetectorSample], validation: list[DetectorSample],
                   out_dir, progress: bool = True) -> dict:
    """Train (or resume) in `out_dir` (training_loop.run_training: last.pt, best.pt by validation
    loss); returns a summary (steps, best step and loss, why it stopped)."""
    if not train:
        raise ValueError("no training cases")
    net = build_network(config)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    rng = np.random.default_rng([config.seed, 19])

    def train_step(step: int) -> dict:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * 0.5 ** (step // config.lr_decay_every)
        chosen = [train[i] for i in rng.integers(len(train), size=config.batch_size)]
        if config.mirror:
            chosen = [mirrored(s, list(config.organs)) if rng.random() < 0.5 else s for s in chosen]
        batch = make_batch(chosen, net.multiple, rng, config.max_shift, config.intensity_jitter, config.crop)
        logits, distances = net(batch["image"])
        seg, box = losses(logits, distances, batch)
        loss = seg + config.box_weight * box
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"seg_loss": float(seg.detach()), "box_loss": float(box.detach())}

    check = (lambda: validate(net, validation, config)) if validation else None
    summary = run_training(net, optimizer, rng, config, RESUMABLE_CHANGES, out_dir, train_step, check,
                           desc="detector training", progress=progress)
    return {k: summary[k] for k in ("steps", "resumed", "calls", "stopped", "train_time_s", "best_step",
                                    "best_val_loss")}


def load_detector(path) -> tuple[DetectorNet, dict]:
    """A trained network (eval mode, CPU) and its training config."""
    return load_weights(path, DetectorNet)
