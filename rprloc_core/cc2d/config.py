"""CC2D's training settings, stage 1 (self-supervised) and stage 2 (TPL). No torch here: the
settings module may import this.

Sizes are in voxels of the grid the images are given on (OpenKBP: the 3 x 2 x 2 mm working grid;
cephalograms: the paper's grid), per axis (z, y, x) in 3D and (y, x) in 2D.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Settings a resumed run may change: when it stops and how often it reports, not what it learns.
RESUMABLE_CHANGES = ("steps", "time_limit_s", "checkpoint_every", "val_every")

NORMS = ("instance", "batch", "none")

# Crop sizes when the config names none: 96 x 96 mm (3 x 2 x 2 mm voxels) in 3D, 64 x 64 pixels in 2D.
DEFAULT_CROP = {2: (64, 64), 3: (32, 48, 48)}


def _plain(value):
    """Lists, not tuples or numpy values: what JSON and a checkpoint's config comparison need."""
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class _Config:
    def to_dict(self) -> dict:
        return {key: _plain(value) for key, value in asdict(self).items()}

    def crop_shape(self) -> tuple[int, ...]:
        """The crop size as a tuple of `dims` ints (a scalar crop_size is used on every axis)."""
        size = DEFAULT_CROP[self.dims] if self.crop_size is None else self.crop_size
        size = tuple(int(s) for s in np.broadcast_to(np.asarray(size), (self.dims,)))
        if min(size) < 1:
            raise ValueError(f"crop size must be positive, got {size}")
        return size

    def __post_init__(self):
        if self.dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, not {self.dims!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {self.norm!r}")
        coarsest = [-(-c // 2 ** (self.n_scales - 1)) for c in self.crop_shape()]
        if self.norm == "instance" and np.prod(coarsest) < 2:
            # instance norm has nothing to normalise over a single cell (torch refuses to train it)
            raise ValueError(f"crop {self.crop_shape()} has a single cell at the coarsest of {self.n_scales} "
                             "scales; use a larger crop or fewer scales")


@dataclass(frozen=True)
class CC2DTrainConfig(_Config):
    """Stage 1. The encoder: `n_scales` levels of widths base_width x (1, 2, 4, 8, 8, ...), each
    level's embedding map `embedding_length` long (see network.CascadeEncoder)."""
    dims: int = 3
    base_width: int = 8
    embedding_length: int = 16
    n_scales: int = 5
    norm: str = "instance"
    crop_size: int | tuple | None = None     # voxels per axis; None: DEFAULT_CROP[dims]
    temperature: float = 0.1                 # softmax(cosine / temperature)
    local_window: int = 9                    # cells per axis of the window the finer scales' softmax sees
    intensity_jitter: float = 0.1            # crop * (1 + U(-j, j)) + U(-j, j)
    max_rotation_deg: float = 10.0           # crop rotated by U(-a, a) degrees in the (y, x) plane
    foreground_points: bool = True           # points drawn among voxels > 0 (not air)
    steps: int = 2000
    lr: float = 1e-3
    batch_size: int = 2                      # images (each with one crop and one point) per step
    val_samples: int = 8                     # fixed (crop, point) draws per validation image
    seed: int = 0
    checkpoint_every: int = 50
    val_every: int = 100
    time_limit_s: float | None = None        # pauses the run (last.pt saved); rerun to continue


@dataclass(frozen=True)
class TPLTrainConfig(_Config):
    """Stage 2: a heatmap + offset detector trained on stage 1's predictions (pseudo-labels)."""
    dims: int = 3
    n_landmarks: int = 6
    base_width: int = 8
    n_scales: int = 4                        # U-Net levels of the detector
    norm: str = "instance"
    radius: float | tuple = 3.0              # voxels (per axis or one for all) of the disk around a landmark
    offset_weight: float = 1.0               # loss = balanced BCE + offset_weight * L1 (offsets / radius)
    crop_size: int | tuple | None = None     # voxels per axis, each crop holds a random landmark
    intensity_jitter: float = 0.1
    steps: int = 2000
    lr: float = 1e-3
    batch_size: int = 2
    seed: int = 0
    checkpoint_every: int = 50
    val_every: int = 100
    time_limit_s: float | None = None
