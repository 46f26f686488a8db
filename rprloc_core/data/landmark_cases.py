"""The landmark case layout: 2D images with named landmarks (CC2D's and PIN's own settings, e.g. the
ISBI 2015 cephalograms written by `data_prep.isbi2015`).

    <root>/cases.csv        case_id, split, height_px, width_px, pixel_mm, image
    <root>/landmarks.csv    case_id, index, name, y_mm, x_mm (the ground truth), and optional
                            per-annotator columns
    <root>/images/<case_id>.nii.gz    the image, with its pixel spacing

Coordinates follow the project's convention in 2D: (y, x) = (row, column), mm = index x spacing,
measured from the centre of the first pixel, at the image's original resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from rprloc_core.errors import DataError

CASES_FILE, LANDMARKS_FILE = "cases.csv", "landmarks.csv"


@dataclass
class LandmarkCase:
    case_id: str
    image: np.ndarray            # float32 (height, width)
    spacing: np.ndarray          # mm per pixel, (y, x)
    landmarks_mm: np.ndarray     # (L, 2), (y, x)
    names: list


def read_case_table(root) -> pd.DataFrame:
    path = Path(root) / CASES_FILE
    if not path.is_file():
        raise DataError(path, "no landmark case table; run the dataset adapter first "
                              "(e.g. python -m data_prep.isbi2015)")
    return pd.read_csv(path, dtype={"case_id": str})


def read_landmarks(root) -> pd.DataFrame:
    path = Path(root) / LANDMARKS_FILE
    if not path.is_file():
        raise DataError(path, "no landmark table; run the dataset adapter first")
    return pd.read_csv(path, dtype={"case_id": str})


def load_landmark_case(root, case_id: str, table: pd.DataFrame | None = None,
                       landmarks: pd.DataFrame | None = None) -> LandmarkCase:
    """One case: its image (float32), pixel spacing and ground-truth landmarks in mm."""
    root = Path(root)
    table = read_case_table(root) if table is None else table
    landmarks = read_landmarks(root) if landmarks is None else landmarks
    row = table[table.case_id == case_id]
    if len(row) != 1:
        raise DataError(root / CASES_FILE, f"case {case_id!r} is not in the table")
    row = row.iloc[0]
    image = sitk.ReadImage(str(root / row.image))
    points = landmarks[landmarks.case_id == case_id].sort_values("index")
    if points.empty:
        raise DataError(root / LANDMARKS_FILE, f"case {case_id!r} has no landmarks")
    spacing = np.asarray(image.GetSpacing()[::-1], dtype=float)                 # SimpleITK: (x, y)
    return LandmarkCase(case_id, sitk.GetArrayFromImage(image).astype(np.float32), spacing,
                        points[["y_mm", "x_mm"]].to_numpy(dtype=float), points.name.tolist())
