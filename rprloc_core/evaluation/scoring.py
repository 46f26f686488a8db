"""Scoring predictions the paper's way, and summarising them over queries and supports.

A *method* is a function `predict(query, support, support_points) -> (points_mm, wall_s)`:
query and support are PreprocessedCase objects, support_points maps organ -> (P, 3) landmark
positions in the support's mm frame, points_mm maps organ -> (P, 3) predicted positions in the
query's mm frame. Every method is scored by the same code on the same supports and queries.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.data.preprocess import PreprocessedCase
from rprloc_core.evaluation.protocol import organ_landmarks_mm
from rprloc_core.geometry.boxes import bounding_box, box_from_landmarks
from rprloc_core.geometry.landmarks import landmarks
from rprloc_core.metrics import box_metrics, point_errors_mm

Method = Callable[[PreprocessedCase, PreprocessedCase, dict], tuple]
METRICS = ("iou_pct", "awd_mm", "iou_physical_pct", "point_error_mm", "time_s")


def true_box_and_landmarks(query: PreprocessedCase, organ: str, strategy: str, rule: str = "median") -> tuple:
    """The organ's true box and landmarks (voxel indices) in the query, computed once per case
    (scoring a mask is most of the cost of scoring a prediction)."""
    key = ("truth", organ, strategy, rule)
    if key not in query.memo:
        query.memo[key] = (bounding_box(query.labels[organ], name=f"{query.case_id}/{organ}"),
                           landmarks(query.labels[organ], strategy, rule))
    return query.memo[key]


def score_prediction(query: PreprocessedCase, organ: str, points_mm: np.ndarray, strategy: str,
                     rule: str = "median") -> dict:
    """Box metrics of predicted landmarks against the query's true box (paper conventions)."""
    pred_idx = query.mm_to_idx(points_mm)
    pred_box = box_from_landmarks(pred_idx, strategy)
    true_box, true_points = true_box_and_landmarks(query, organ, strategy, rule)
    out = box_metrics(pred_box, true_box, query.spacing)
    out["point_error_mm"] = float(np.mean(point_errors_mm(pred_idx, true_points, query.spacing)))
    return out


def score_points(settings, query_id: str, organ_of_point, points_mm: np.ndarray, **columns) -> list[dict]:
    """One row per organ for stacked predictions (P, 3) whose organs are `organ_of_point`; the
    row starts with `columns` (in the caller's order; `strategy` among them), then query, organ
    and the metrics."""
    strategy = columns["strategy"]
    query = dataset.load_case(settings, query_id)
    organ_of_point = np.asarray(organ_of_point)
    return [{**columns, "query": query_id, "organ": organ,
             **score_prediction(query, organ, points_mm[organ_of_point == organ], strategy)}
            for organ in dict.fromkeys(organ_of_point.tolist())]


def evaluate(settings, method: Method, name: str, supports, queries, organs=HAN_ORGANS,
             strategy: str = "extreme", rule: str = "median", progress: bool = True, **columns) -> pd.DataFrame:
    """Per (support, query, organ) metrics of one method, run now (not cached): a tidy frame.
    time_s is the method's wall time for the query divided by its number of organs."""
    rows = []
    pairs = [(s, q) for s in supports for q in queries]
    for support_id, query_id in tqdm(pairs, desc=name, disable=not progress, leave=False):
        support = dataset.load_case(settings, support_id)
        query = dataset.load_case(settings, query_id)
        wanted = [o for o in organs if o in query.labels]
        if not wanted:
            continue
        support_points = organ_landmarks_mm(support, wanted, strategy, rule)
        points, wall_s = method(query, support, support_points)
        for organ in wanted:
            rows.append({"method": name, **columns, "strategy": strategy, "support": support_id,
                         "query": query_id, "organ": organ,
                         **score_prediction(query, organ, points[organ], strategy, rule),
                         "time_s": wall_s / len(wanted)})
    return pd.DataFrame(rows)


def summarize(per_query: pd.DataFrame, keys=("method",), organs=HAN_ORGANS) -> pd.DataFrame:
    """Per organ and 'Mean' (over the organs), averaged over queries for each support, then mean and
    SD over supports (empty where there is one support: one value has no spread): one row per
    keys x organ, metric columns with units in their names."""
    keys = list(keys)
    per_support = per_query.groupby([*keys, "support", "organ"], sort=False)[list(METRICS)].mean().reset_index()
    mean_rows = per_support[per_support.organ.isin(organs)].groupby([*keys, "support"], sort=False)[list(METRICS)] \
        .mean().reset_index().assign(organ="Mean")
    per_support = pd.concat([per_support, mean_rows], ignore_index=True)
    grouped = per_support.groupby([*keys, "organ"], sort=False)
    out = grouped[list(METRICS)].mean()
    spread = grouped[["iou_pct", "awd_mm"]].std(ddof=0).rename(columns=lambda c: f"{c}_sd_over_supports")
    spread = spread.where(grouped.size() > 1, axis=0)
    counts = per_query.groupby([*keys, "organ"], sort=False).agg(n_queries=("query", "nunique"),
                                                                  n_supports=("support", "nunique"))
    out = out.join(spread).join(counts).reset_index()
    # the Mean rows (not in per_query): the queries and supports of their own keys
    whole = per_query.groupby(keys, sort=False).agg(all_queries=("query", "nunique"),
                                                    all_supports=("support", "nunique"))
    out = out.join(whole, on=keys)
    out["n_queries"] = out["n_queries"].fillna(out.pop("all_queries")).astype(int)
    out["n_supports"] = out["n_supports"].fillna(out.pop("all_supports")).astype(int)
    # keep the keys in the order they first appear (the order the caller ran the settings), organs
    # in table order with the mean last
    ranks = {k: {v: i for i, v in enumerate(dict.fromkeys(per_query[k]))} for k in keys}
    ranks["organ"] = {o: i for i, o in enumerate([*organs, "Mean"])}
    return out.sort_values([*keys, "organ"], key=lambda c: c.map(ranks[c.name]), kind="stable").reset_index(drop=True)
