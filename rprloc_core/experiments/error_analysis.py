"""Where RPR-Loc's error comes from (issue: released weights that reach the paper).

- `self_localisation`: each validation patient is its own support and query, so every landmark's
  true position is known exactly and nothing but the networks can be wrong: the signed and absolute
  error per axis after the coarse step and after the fine step, and each run's error against how
  far from the landmark it started.
- `oracle_box_transfer`: the ceiling of one-shot box transfer on the real queries: the support's
  box, of the support's size, moved so that its centre sits on the query's true box centre. A
  method that found every organ's centre exactly would score this.

Only validation patients and the protocol's supports and queries are used; nothing here is tuned.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.evaluation.protocol import case_rng, organ_landmarks_mm
from rprloc_core.evaluation.scoring import summarize
from rprloc_core.experiments import models
from rprloc_core.geometry.boxes import VoxelBox, bounding_box
from rprloc_core.geometry.landmarks import EXTREME_POINT_NAMES
from rprloc_core.metrics import box_metrics
from rprloc_core.rprloc.inference import localize, stack_organ_landmarks

AXES = ("z", "y", "x")


def self_localisation(settings, case_ids, organs, k: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per landmark and stage: signed error per axis of the mean of K runs, mm;
        per run: its start's distance from the landmark and its error after each stage, mm)."""
    k = k or settings.rprloc.inference.k
    released = models.load_models(settings, ["coarse", "fine"])
    points_rows, run_rows = [], []
    for case_id in case_ids:
        case = dataset.load_case(settings, case_id)
        truth, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(case, [o for o in organs if o in case.labels]))
        rng = case_rng(settings.seed, case_id, case_id)
        coarse = localize(case.volume, (case.volume, truth), released["coarse"], rng=rng, schedule=("coarse",),
                          k=k, organ_of_point=organ_of_point)
        fine = localize(case.volume, (case.volume, truth), released["coarse"], released["fine"], rng=rng,
                        schedule=("fine",), k=k, start_mm=coarse.trajectories_mm[1], organ_of_point=organ_of_point)
        stages = {"start": coarse.trajectories_mm[0], "Mc (one step)": coarse.trajectories_mm[1],
                  "Mc + Mf": fine.trajectories_mm[1]}
        names = [EXTREME_POINT_NAMES[i % len(EXTREME_POINT_NAMES)] for i in range(len(truth))]
        for stage, runs in stages.items():
            if stage == "start":
                continue
            signed = runs.mean(axis=0) - truth                                  # (P, 3)
            for p, organ in enumerate(organ_of_point):
                points_rows.append({"case": case_id, "organ": organ, "landmark": names[p], "stage": stage,
                                    **{f"signed_{a}_mm": signed[p, i] for i, a in enumerate(AXES)}})
        start_distance = np.linalg.norm(stages["start"] - truth[None], axis=-1)     # (K, P)
        for p, organ in enumerate(organ_of_point):
            for r in range(k):
                run_rows.append({"case": case_id, "organ": organ, "landmark": names[p], "run": r,
                                 "start_distance_mm": start_distance[r, p],
                                 **{f"error_{s}_mm": float(np.linalg.norm(stages[s][r, p] - truth[p]))
                                    for s in ("Mc (one step)", "Mc + Mf")}})
    return pd.DataFrame(points_rows), pd.DataFrame(run_rows)


def axis_error_table(per_point: pd.DataFrame) -> pd.DataFrame:
    """Mean signed and mean absolute error (mm) per stage and axis, over landmarks and cases."""
    rows = []
    for stage, part in per_point.groupby("stage", sort=False):
        for a in AXES:
            values = part[f"signed_{a}_mm"]
            rows.append({"stage": stage, "axis": a, "mean_signed_error_mm": values.mean(),
                         "mean_absolute_error_mm": values.abs().mean(), "n_landmarks": len(values)})
    return pd.DataFrame(rows)


def transferred_box(support_box: VoxelBox, support_spacing, query_box: VoxelBox, query_spacing) -> VoxelBox:
    """The support's box, of its physical size, centred on the query box's centre (query voxels)."""
    half_mm = (np.asarray(support_box.hi) - np.asarray(support_box.lo)) * np.asarray(support_spacing) / 2.0
    half_idx = half_mm / np.asarray(query_spacing)
    return VoxelBox(query_box.centre - half_idx, query_box.centre + half_idx)


def oracle_box_transfer(settings, protocol) -> pd.DataFrame:
    """Per (support, query, organ): the metrics of the support's box moved onto the query's true
    box centre (the position oracle), in the frame `summarize` takes."""
    rows = []
    for support_id, query_id in protocol.pairs:
        support, query = dataset.load_case(settings, support_id), dataset.load_case(settings, query_id)
        for organ in [o for o in protocol.organs if o in query.labels and o in support.labels]:
            true_box = bounding_box(query.labels[organ])
            box = transferred_box(bounding_box(support.labels[organ]), support.spacing, true_box, query.spacing)
            rows.append({"method": "Oracle: support box on the true centre", "support": support_id, "query": query_id,
                         "organ": organ, **box_metrics(box, true_box, query.spacing),
                         "point_error_mm": np.nan, "time_s": np.nan})
    return pd.DataFrame(rows)


def oracle_table(settings, protocol) -> pd.DataFrame:
    """The oracle's IoU and AWD per organ and Mean (mean and SD over supports)."""
    return summarize(oracle_box_transfer(settings, protocol), organs=protocol.organs).drop(columns=["time_s"])
