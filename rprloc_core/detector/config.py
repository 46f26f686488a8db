"""The detector's training settings (no torch here: the settings module imports this)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Settings a resumed run may change (they decide when it stops or how often it reports, not what it learns).
RESUMABLE_CHANGES = ("steps", "time_limit_s", "val_every", "checkpoint_every")


@dataclass(frozen=True)
class DetectorTrainConfig:
    organs: tuple = ("Brainstem", "Mandible", "LeftParotid", "RightParotid")
    downsample: int = 2            # the working grid pooled this many times (6 x 4 x 4 mm by default)
    width: int = 8                 # channels of the first U-Net level, doubled at each level
    levels: int = 3
    batch_size: int = 2
    steps: int = 2000
    lr: float = 2e-3
    lr_decay_every: int = 600      # the learning rate halves every so many steps
    box_weight: float = 1.0
    mirror: bool = True
    crop: tuple | None = (32, 48, 64)   # coarse voxels (192 x 192 x 256 mm) around the organs; None: whole scans
    max_shift: int = 8             # coarse voxels the crop (or the whole scan) moves at random
    intensity_jitter: float = 0.1
    val_every: int = 100
    checkpoint_every: int = 50
    seed: int = 0
    time_limit_s: float | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "organs": list(self.organs), "crop": None if self.crop is None else list(self.crop)}
