"""The training settings of one Pnet (METHOD 3.2, 8): a plain dataclass, stored in checkpoints
and read from the profiles by `rprloc_core.settings`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# How the K runs of one landmark are combined (see rprloc_core.rprloc.inference).
ENSEMBLES = ("mean_position", "mean_embedding")
STARTS = ("independent", "shared", "pooled")
# The steps a schedule is made of: a move of the coarse or fine model, "average" (the K runs of
# every landmark replaced by their mean; later steps cost one patch per landmark) or "scatter" (the
# K runs replaced by K positions uniform within +-scatter_mm per axis of their mean).
MOVES = ("coarse", "fine")
AVERAGE, SCATTER = "average", "scatter"
REGROUP_STEPS = (AVERAGE, SCATTER)     # steps that regroup the K runs; the moves move them
STEPS = (*MOVES, *REGROUP_STEPS)

# The released models' inference schedule, chosen on validation patients (notebook 03,
# results/demo/tables/schedule_validation.csv): the CLI's defaults. The demo profile's
# [rprloc.inference] holds the same (tests/test_settings.py keeps them equal).
RELEASE_STEPS = ("coarse", "average", "fine")
RELEASE_ENSEMBLE = "mean_position"
RELEASE_STARTS = "shared"
# The half-width (mm per axis) of a "scatter" step when a schedule asks for one (the CLI's
# --scatter-mm; the demo profile's scatter_mm holds the same). The released schedule has none:
# Mc > scatter > Mf gained +1.3 IoU points on 9 training supports but +0.5 (13 of 20 up) on 20
# others, under the rule written first, at about 10 times the time (notebook 03).
RELEASE_SCATTER_MM = 12.0
# The box around the predicted extreme points, redrawn with the support's box size at this weight
# (`geometry.landmarks.with_support_box_size`; beyond the paper, chosen on validation patients in
# notebook 04; 0 gives the paper's box). The demo profile's size_prior_weight holds the same.
RELEASE_SIZE_PRIOR = 0.5
# Half of the support's own bias (the support localised in itself, 3 runs) taken off the answer
# (`rprloc.self_calibration`; beyond the paper, chosen on validation patients in notebook 03; 0:
# the networks' points as they are). The demo profile's self_calibration(_runs) hold the same.
RELEASE_SELF_CALIBRATION = 0.5
RELEASE_SELF_CALIBRATION_RUNS = 3

# An answer whose fine model would still move its points by more than this (mean over an organ's
# points, mm) is reported with a warning (`rprloc.answer_checks`): the 90th percentile of that move
# for organs found in whole validation scans (notebook 03, results/demo/tables/answer_checks*.csv),
# so about one found organ in ten is warned of (on the test queries 15 %; organs missing: 100 %).
# 13 mm for the release of 2026-11-28 (14 mm for the one before).
RELEASE_REMAINING_MOVE_WARN_MM = 13.0

# Fields a resumed run may change without changing what is being trained.
RESUMABLE_CHANGES = ("steps", "time_limit_s", "val_every")


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "coarse"                      # 'coarse' | 'fine'
    variant: str = "han"                      # 'han' | 'pancreas'
    base_width: int = 16
    first_width: int | None = None            # channels of the first block (None: 2 x base_width)
    patch_size: tuple = (16, 16, 16)
    r_mm: float | tuple = 300.0               # scalar or per-axis (z, y, x)
    downsample: int | tuple = 1               # of the base grid, e.g. 2: 3x2x2 mm -> 6x4x4 mm
    fine_range_vox: tuple | None = None       # fine mode: largest pairwise offset per axis, voxels
    local_fraction: float = 0.0               # coarse mode: share of groups drawn locally ...
    local_range_vox: tuple | None = None      # ... with pairwise offsets up to this, voxels per axis
    train_volumes: int | None = None          # use only the split's first n volumes (None: all) ...
    val_volumes: int | None = None            # ... e.g. what fitted the GPU machine's transfer limit
    volumes_per_step: int = 4
    patches_per_volume: int = 8
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_decay: float = 0.9
    lr_decay_every: int = 500                 # steps
    val_every: int = 100                      # steps
    val_pairs: int = 2000
    seed: int = 0
    time_limit_s: float | None = None         # per call; saves last.pt and stops
    head_activation: str | None = None
    normalise_loss: bool = True               # optimise mse / mean(r^2); report mm^2 either way
    init_from: str | None = None              # start from these weights (e.g. the r sweep starts
                                              # from the main model with another r), not random; a
                                              # wider first block is cut to first_width (pruning.py)
    teacher: str | None = None                # distil: learn this Pnet's offsets, not the true ones
    augment_zoom: float = 0.0                 # each training patch zoomed by up to +- this share ...
    augment_yaw_deg: float = 0.0              # ... and turned about z by up to +- this (augmentation.py)

    def to_dict(self) -> dict:
        """Plain types only (lists, not tuples or arrays), for checkpoints and JSON."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, (tuple, list, np.ndarray)):
                value = [v.item() if isinstance(v, np.generic) else v for v in np.asarray(value).tolist()]
            elif isinstance(value, np.generic):
                value = value.item()
            out[key] = value
        return out
