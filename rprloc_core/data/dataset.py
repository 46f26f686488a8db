"""The converted, preprocessed dataset of a profile: where it is, which cases, loading them.

Every function takes the profile's `Settings` (rprloc_core.settings); only its `name`, `data`
and `preprocess` parts are read here."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rprloc_core.data import cases
from rprloc_core.data.preprocess import (
    PreprocessedCase,
    PreprocessParams,
    cache_path,
    intensity_map,
    load_preprocessed,
    preprocess_case,
)
from rprloc_core.errors import DataError
from rprloc_core.geometry.volume import Volume
from rprloc_core.paths import data_dir

CASES_ENV = "RPRLOC_CASES_DIR"


def dataset_root(settings) -> Path:
    dataset = settings.data.dataset
    if dataset == "cases":  # a user's own data, already in the standard layout
        if CASES_ENV not in os.environ:
            raise DataError(None, f"profile {settings.name!r} reads a standard case folder: set ${CASES_ENV}")
        return Path(os.environ[CASES_ENV]).resolve().parent
    return data_dir() / dataset


def cases_root(settings) -> Path:
    if settings.data.dataset == "cases":
        return dataset_root(settings) / Path(os.environ[CASES_ENV]).name
    return dataset_root(settings) / "cases"


def cache_root(settings) -> Path:
    return dataset_root(settings) / "cache"


def preprocess_params(settings) -> PreprocessParams:
    p = settings.preprocess
    return PreprocessParams(spacing_zyx=tuple(float(v) for v in p.spacing_zyx),
                            air_threshold_hu=float(p.air_threshold_hu), ct_interpolator=p.ct_interpolator)


def case_table(settings) -> pd.DataFrame:
    return cases.read_case_table(cases_root(settings))


def case_ids(settings, split: str, organ: str | None = None, table: pd.DataFrame | None = None) -> list[str]:
    """Cases of a split; with `organ`, only those whose mask of that organ exists."""
    table = case_table(settings) if table is None else table
    rows = table[table["split"] == split]
    if organ is not None:
        rows = rows[rows["organs"].map(lambda organs: organ in organs)]
    return rows["case_id"].tolist()


@lru_cache(maxsize=512)
def _load_cached(cases_dir: str, case_id: str, params: PreprocessParams, cache_dir: str) -> PreprocessedCase:
    return load_preprocessed(preprocess_case(cases_dir, case_id, params, cache_dir))


def load_case(settings, case_id: str) -> PreprocessedCase:
    """A preprocessed case (preprocessed now if it is not in the cache yet). Kept in memory."""
    return _load_cached(str(cases_root(settings)), case_id, preprocess_params(settings), str(cache_root(settings)))


def case_geometry(settings, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per case: split, organs, spacing and shape before and after preprocessing."""
    table = case_table(settings) if table is None else table
    params = preprocess_params(settings)
    rows = []
    for row in table.itertuples(index=False):
        out = {"case_id": row.case_id, "split": row.split, "organs": ";".join(row.organs)}
        for axis in "zyx":
            out[f"spacing_{axis}_mm"] = getattr(row, f"spacing_{axis}_mm")
            out[f"shape_{axis}"] = getattr(row, f"shape_{axis}")
        path = cache_path(cache_root(settings), params, row.case_id)
        if path.is_file():
            with np.load(path) as data:
                info = json.loads(str(data["meta"]))
            for axis, spacing, size in zip("zyx", info["spacing_zyx"], info["shape_zyx"]):
                out[f"resampled_spacing_{axis}_mm"] = spacing
                out[f"resampled_shape_{axis}"] = size
            out["organs_lost_in_resampling"] = ";".join(info["organs_lost_in_resampling"])
            coverage = info.get("organ_ct_coverage", {})
            out["min_organ_ct_coverage"] = min(coverage.values()) if coverage else np.nan
        rows.append(out)
    return pd.DataFrame(rows)


def dataset_summary(geometry: pd.DataFrame, organs) -> pd.DataFrame:
    """One row per split (and 'all'): case counts, organ counts, spacing and size statistics."""
    rows = []
    for split, part in [*geometry.groupby("split", sort=False), ("all", geometry)]:
        row = {"split": split, "n_cases": len(part)}
        for organ in organs:
            row[f"n_{organ}"] = int(part["organs"].str.split(";").map(lambda o: organ in o).sum())
        for axis in "zyx":
            s = part[f"spacing_{axis}_mm"]
            row[f"spacing_{axis}_mm_min"] = s.min()
            row[f"spacing_{axis}_mm_median"] = s.median()
            row[f"spacing_{axis}_mm_max"] = s.max()
        for axis in "zyx":
            if f"resampled_spacing_{axis}_mm" in part:
                row[f"resampled_spacing_{axis}_mm"] = part[f"resampled_spacing_{axis}_mm"].median()
        if "min_organ_ct_coverage" in part:
            # cases where some organ lies more than half in voxels without CT tissue
            row["n_organ_ct_coverage_below_50pct"] = int((part["min_organ_ct_coverage"] < 0.5).sum())
        for axis in "zyx":
            if f"resampled_shape_{axis}" in part:
                row[f"resampled_shape_{axis}_median"] = part[f"resampled_shape_{axis}"].median()
        rows.append(row)
    return pd.DataFrame(rows)


def load_volume(settings, case_id: str) -> Volume:
    """Only the intensity volume of a case: no mask is read (what self-supervised training uses)."""
    path = preprocess_case(cases_root(settings), case_id, preprocess_params(settings), cache_root(settings))
    with np.load(path) as data:  # npz members are read lazily: the label arrays are never loaded
        info = json.loads(str(data["meta"]))
        return Volume(intensity_map(data["hu"]), np.asarray(info["spacing_zyx"], float))


def unlabelled_volumes(settings, split: str, progress: bool = True, limit: int | None = None) -> list:
    """The intensity volumes of a split (its first `limit` cases; all with None), without their
    labels (training and Pnet validation)."""
    ids = case_ids(settings, split)[:limit]
    return [load_volume(settings, c) for c in tqdm(ids, desc=f"loading {split} volumes", disable=not progress)]
