"""PIN's training settings (no torch here: the settings module imports this)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Settings a resumed run may change: how long it runs and how often it reports, not what it learns.
RESUMABLE_CHANGES = ("steps", "time_limit_s", "checkpoint_every")


@dataclass(frozen=True)
class PINTrainConfig:
    patch_size: int = 32               # pixels per side of each 2.5D plane (a multiple of 32)
    pixel_mm: float = 3.0              # mm per pixel: 32 x 3 mm = a 96 mm field
    width: int = 16
    hidden: int = 128
    loss: str = "C+R"
    alpha: float = 0.5
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 100
    time_limit_s: float | None = None  # pauses the run (resumable); never decides which model is used

    @property
    def val_every(self) -> int:
        """PIN validates at every checkpoint (training_loop.run_training asks for both)."""
        return self.checkpoint_every

    def to_dict(self) -> dict:
        return asdict(self)
