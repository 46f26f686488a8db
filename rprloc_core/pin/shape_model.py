"""A PCA shape model of landmark configurations: x = mean + b @ modes, with as many modes as keep
a given share of the variance (PIN keeps 99.5 %). Coordinates are in mm; a configuration of L
landmarks is flattened to 3L numbers (landmark-major, z y x)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ShapeModel:
    mean: np.ndarray            # (3L,)
    modes: np.ndarray           # (M, 3L), orthonormal rows
    sd: np.ndarray              # (M,) standard deviation of each mode's parameter over the fit set

    @property
    def n_modes(self) -> int:
        return len(self.sd)

    @property
    def n_landmarks(self) -> int:
        return self.mean.size // 3

    def encode(self, landmarks_mm: np.ndarray) -> np.ndarray:
        """Shape parameters b (..., M) of configurations (..., L, 3): the projection onto the modes."""
        x = np.asarray(landmarks_mm, dtype=float).reshape(*np.shape(landmarks_mm)[:-2], -1)
        return (x - self.mean) @ self.modes.T

    def decode(self, b: np.ndarray) -> np.ndarray:
        """Configurations (..., L, 3) from shape parameters (..., M)."""
        x = self.mean + np.asarray(b, dtype=float) @ self.modes
        return x.reshape(*x.shape[:-1], self.n_landmarks, 3)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "modes": self.modes.tolist(), "sd": self.sd.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "ShapeModel":
        return cls(np.asarray(data["mean"], float), np.asarray(data["modes"], float), np.asarray(data["sd"], float))


def fit_shape_model(configurations_mm: np.ndarray, keep_variance: float = 0.995) -> ShapeModel:
    """PCA of N configurations (N, L, 3); the fewest modes whose variance reaches `keep_variance`
    of the total (at least one)."""
    x = np.asarray(configurations_mm, dtype=float)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"configurations must have shape (N, L, 3), got {x.shape}")
    if len(x) < 2:
        raise ValueError("a shape model needs at least two configurations")
    if not np.all(np.isfinite(x)):
        raise ValueError("configurations contain NaN: drop the cases that miss a landmark first")
    if not 0 < keep_variance <= 1:
        raise ValueError(f"keep_variance must be in (0, 1], got {keep_variance}")
    flat = x.reshape(len(x), -1)
    mean = flat.mean(axis=0)
    _, singular, vt = np.linalg.svd(flat - mean, full_matrices=False)
    variance = singular ** 2 / (len(x) - 1)
    share = np.cumsum(variance) / variance.sum() if variance.sum() > 0 else np.ones_like(variance)
    m = int(np.searchsorted(share, keep_variance - 1e-12) + 1)
    return ShapeModel(mean, vt[:m], np.sqrt(variance[:m]))
