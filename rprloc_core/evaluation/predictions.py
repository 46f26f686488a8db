"""The prediction cache every method shares: one file per (support, query) pair, read by one reader.

    data/<dataset>/predictions/<profile>/<method>/<support>__<query>.npz

A file holds `organ_of_point` (the organ of every stacked landmark), the method's named arrays
(predicted points in the query's mm frame, trajectories, scores, wall times) and a `key`: a JSON
text of everything the predictions depend on (model hashes, K, template size, ...). A file whose
key differs from the current one is stale and is computed again, never read. Files are written
under a temporary name and renamed into place, so an interrupted evaluation resumes cleanly.

Notebooks never open these files: tables and figures read them through `PredictionCache.read`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rprloc_core.data import dataset


@dataclass
class PairPredictions:
    """What one method predicted for one (support, query) pair."""
    support: str
    query: str
    organ_of_point: tuple                 # organ name of every stacked landmark (P,)
    arrays: dict                          # name -> np.ndarray (points have P as their second-to-last axis)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def organ_points(self, points: np.ndarray, organ: str) -> np.ndarray:
        """The rows of stacked points (..., P, 3) that belong to `organ`."""
        mask = np.asarray(self.organ_of_point) == organ
        return np.asarray(points)[..., mask, :]

    @property
    def organs(self) -> list[str]:
        return list(dict.fromkeys(self.organ_of_point))


class PredictionCache:
    """The cached predictions of one method (and variant) under one key."""

    def __init__(self, folder: Path, key: dict):
        self.folder = Path(folder)
        self.key = json.dumps(key, sort_keys=True)

    @classmethod
    def for_method(cls, settings, method: str, key: dict) -> "PredictionCache":
        """data/<dataset>/predictions/<profile>/<method>/ with the given key."""
        return cls(dataset.dataset_root(settings) / "predictions" / settings.name / method, key)

    def path(self, support: str, query: str) -> Path:
        return self.folder / f"{support}__{query}.npz"

    def has(self, support: str, query: str) -> bool:
        """Whether the pair is cached under the current key."""
        path = self.path(support, query)
        if not path.is_file():
            return False
        with np.load(path) as run:
            return "key" in run.files and str(run["key"]) == self.key

    def missing(self, pairs) -> list[tuple[str, str]]:
        return [(s, q) for s, q in pairs if not self.has(s, q)]

    def write(self, support: str, query: str, organ_of_point, **arrays) -> Path:
        out = self.path(support, query)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.npz")
        np.savez(tmp, key=np.array(self.key), organ_of_point=np.array(list(organ_of_point)), **arrays)
        os.replace(tmp, out)
        return out

    def read(self, support: str, query: str) -> PairPredictions:
        path = self.path(support, query)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: cached prediction does not exist; compute it first (predict_all)")
        with np.load(path) as run:
            if "key" not in run.files or str(run["key"]) != self.key:
                raise FileNotFoundError(f"{path}: cached prediction is stale (computed with other settings or "
                                        "models); compute it again (predict_all)")
            arrays = {name: run[name] for name in run.files if name not in ("key", "organ_of_point")}
            organs = tuple(run["organ_of_point"].tolist())
        return PairPredictions(support, query, organs, arrays)
