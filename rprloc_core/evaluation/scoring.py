"""One-shot evaluation shared by every method: supports, queries, landmarks, metrics, tables.

A *method* is a function `predict(query, support, support_points) -> (points_mm, wall_s)` where
query and support are PreprocessedCase objects, support_points maps organ -> (P, 3) landmark
positions in the support's mm frame (index x spacing), and points_mm maps organ -> (P, 3)
predicted positions in the query's mm frame. Every method (RPR-Loc, template matching, ...) is
scored by the same code, on the same supports and queries.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rprloc_core.data import dataset
from rprloc_core.geometry.boxes import bounding_box, box_from_landmarks
from rprloc_core.geometry.landmarks import landmarks
from rprloc_core.metrics import box_metrics, point_errors_mm
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.data.preprocess import PreprocessedCase

Method = Callable[[PreprocessedCase, PreprocessedCase, dict], tuple]


def choose_supports(cfg: dict, organs=HAN_ORGANS, n: int = 1, seed: int = 0) -> list[str]:
    """n validation cases that have every organ, drawn with a seeded generator (the paper used one
    random support; we report the spread over several)."""
    table = dataset.case_table(cfg)
    pool = table[(table.split == "validation") & table.organs.map(lambda o: all(x in o for x in organs))]
    ids = sorted(pool.case_id, key=lambda c: (len(c), c))
    if len(ids) < n:
        raise ValueError(f"only {len(ids)} validation cases have all of {', '.join(organs)}; asked for {n}")
    rng = np.random.default_rng(seed)
    return [ids[i] for i in sorted(rng.choice(len(ids), size=n, replace=False))]


def query_cases(cfg: dict, organs=HAN_ORGANS, limit: int | None = None) -> list[str]:
    """Test cases that have at least one of the organs (each organ is scored where it exists)."""
    table = dataset.case_table(cfg)
    rows = table[(table.split == "test") & table.organs.map(lambda o: any(x in o for x in organs))]
    ids = rows.case_id.tolist()
    return ids[:limit] if limit else ids


def organ_landmarks_mm(case: PreprocessedCase, organs, strategy: str = "extreme", rule: str = "median") -> dict:
    """organ -> (P, 3) landmark positions in mm (index x spacing) for the organs the case has."""
    return {o: landmarks(case.labels[o], strategy, rule, name=f"{case.case_id}/{o}") * case.spacing
            for o in organs if o in case.labels}


def score_prediction(query: PreprocessedCase, organ: str, points_mm: np.ndarray, strategy: str,
                     rule: str = "median") -> dict:
    """Box metrics of predicted landmarks against the query's true box (paper conventions)."""
    pred_idx = np.asarray(points_mm, float) / query.spacing
    pred_box = box_from_landmarks(pred_idx, strategy)
    true_box = bounding_box(query.labels[organ], name=f"{query.case_id}/{organ}")
    out = box_metrics(pred_box, true_box, query.spacing)
    true_points = landmarks(query.labels[organ], strategy, rule)
    out["point_error_mm"] = float(np.mean(point_errors_mm(pred_idx, true_points, query.spacing)))
    return out


def evaluate(cfg: dict, method: Method, name: str, supports, queries, organs=HAN_ORGANS,
             strategy: str = "extreme", rule: str = "median", progress: bool = True, **settings) -> pd.DataFrame:
    """Per (support, query, organ) metrics of one method: a tidy frame."""
    rows = []
    pairs = [(s, q) for s in supports for q in queries]
    for support_id, query_id in tqdm(pairs, desc=name, disable=not progress, leave=False):
        support = dataset.load_case(cfg, support_id)
        query = dataset.load_case(cfg, query_id)
        wanted = [o for o in organs if o in query.labels]
        if not wanted:
            continue
        support_points = organ_landmarks_mm(support, wanted, strategy, rule)
        points, wall_s = method(query, support, support_points)
        for organ in wanted:
            rows.append({"method": name, **settings, "strategy": strategy, "support": support_id,
                         "query": query_id, "organ": organ,
                         **score_prediction(query, organ, points[organ], strategy, rule),
                         "time_s": wall_s / len(wanted)})
    return pd.DataFrame(rows)


METRICS = ("iou_pct", "awd_mm", "iou_physical_pct", "point_error_mm", "time_s")


def summarize(per_query: pd.DataFrame, keys=("method",), organs=HAN_ORGANS) -> pd.DataFrame:
    """Per organ and 'Mean' (over the organs), averaged over queries for each support, then mean and
    SD over supports: one row per keys x organ, metric columns with units in their names."""
    keys = list(keys)
    per_support = per_query.groupby([*keys, "support", "organ"], sort=False)[list(METRICS)].mean().reset_index()
    mean_rows = per_support[per_support.organ.isin(organs)].groupby([*keys, "support"], sort=False)[list(METRICS)] \
        .mean().reset_index().assign(organ="Mean")
    per_support = pd.concat([per_support, mean_rows], ignore_index=True)
    grouped = per_support.groupby([*keys, "organ"], sort=False)
    out = grouped[list(METRICS)].mean()
    spread = grouped[["iou_pct", "awd_mm"]].std(ddof=0).rename(columns=lambda c: f"{c}_sd_over_supports")
    counts = per_query.groupby([*keys, "organ"], sort=False).agg(n_queries=("query", "nunique"),
                                                                  n_supports=("support", "nunique"))
    out = out.join(spread).join(counts).reset_index()
    out["n_queries"] = out["n_queries"].fillna(per_query.groupby(keys)["query"].nunique().max()).astype(int)
    out["n_supports"] = out["n_supports"].fillna(per_query["support"].nunique()).astype(int)
    # keep the keys in the order they first appear (the order the caller ran the settings), organs
    # in table order with the mean last
    ranks = {k: {v: i for i, v in enumerate(dict.fromkeys(per_query[k]))} for k in keys}
    ranks["organ"] = {o: i for i, o in enumerate([*organs, "Mean"])}
    return out.sort_values([*keys, "organ"], key=lambda c: c.map(ranks[c.name]), kind="stable").reset_index(drop=True)


def with_paper_columns(table: pd.DataFrame, paper: pd.DataFrame, on: dict) -> pd.DataFrame:
    """Join the paper's numbers (iou_pct, awd_mm) as paper_iou_pct, paper_awd_mm. `on` maps this
    table's key columns to the paper table's columns, e.g. {"method": "method", "organ": "organ"}."""
    right = paper.rename(columns={"iou_pct": "paper_iou_pct", "awd_mm": "paper_awd_mm"})
    right = right.rename(columns={v: k for k, v in on.items()})
    cols = [*on.keys(), "paper_iou_pct", "paper_awd_mm"]
    return table.merge(right[cols], on=list(on.keys()), how="left")


def paper_table(name: str) -> pd.DataFrame:
    """A table of the papers' numbers from ../shared/reference, or the copy in rprloc_core/reference."""
    from rprloc_core.paths import PROJECT_ROOT

    for base in (PROJECT_ROOT / "rprloc_core" / "reference", PROJECT_ROOT.parent / "shared" / "reference"):
        if (base / f"{name}.csv").is_file():
            return pd.read_csv(base / f"{name}.csv")
    raise FileNotFoundError(f"paper table {name}.csv not found")


def case_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator seeded by the run seed and the case names: the same query and support always
    get the same random starts, whatever order they are evaluated in."""
    import zlib

    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def rprloc_method(coarse, fine=None, schedule=("coarse",), k: int = 15, ensemble: str = "mean_position",
                  seed: int = 0, device=None) -> Method:
    """RPR-Loc as an evaluation method: all organs' landmarks localized in one batched call."""
    from rprloc_core.rprloc.inference import localize, stack_organ_landmarks

    def predict(query, support, support_points):
        points, organ_of_point, _ = stack_organ_landmarks(support_points)
        result = localize(query.volume, (support.volume, points), coarse, fine,
                          rng=case_rng(seed, query.case_id, support.case_id), schedule=tuple(schedule), k=k,
                          ensemble=ensemble, organ_of_point=organ_of_point, device=device)
        return result.points_by_organ(), result.wall_s

    return predict


def template_method(name: str, patch_size, stride: int = 2, encoder=None, device=None) -> Method:
    """A template-matching baseline (gs_mse, gs_cosine, gs_ncc, fm_mse, fm_cosine) as an evaluation
    method: templates of `patch_size` cut around every support landmark, the best window centre of
    the query is the prediction."""
    import time

    from rprloc_core.baselines.template_matching import cut_templates, match

    def predict(query, support, support_points):
        start = time.perf_counter()
        organs = list(support_points)
        points_idx = np.concatenate([support_points[o] / support.spacing for o in organs])
        templates = cut_templates(support.volume, points_idx, patch_size)
        result = match(query.volume, templates, name, stride=stride, encoder=encoder, device=device)
        wall = time.perf_counter() - start
        sizes = np.cumsum([0, *(len(support_points[o]) for o in organs)])
        centres = result.centre_idx * query.spacing
        return {o: centres[a:b] for o, a, b in zip(organs, sizes[:-1], sizes[1:])}, wall

    return predict


def _single_thread_worker():
    import torch

    torch.set_num_threads(1)


def run_jobs(function, jobs, desc: str, parallel: bool = True, progress: bool = True) -> None:
    """Call `function(*job)` for every job, with a progress bar. With `parallel`, two worker
    processes with one torch thread each: on this 2-core CPU two single-thread workers beat one
    two-thread process, and a busy machine hurts a two-thread process far more."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    jobs = list(jobs)
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress)
    if parallel and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1), initializer=_single_thread_worker) as pool:
            for _ in pool.map(function, *zip(*jobs)):
                bar.update()
    else:
        for job in jobs:
            function(*job)
            bar.update()
    bar.close()
