"""Choosing RPR-Loc's inference schedule on validation patients (never on the test queries).

A schedule is the sequence of steps the K runs of every landmark take (coarse or fine model moves,
"average": the K runs replaced by their mean, after which each step costs one patch per landmark,
and "scatter": the K runs restarted around their mean), how the runs start (independent uniform
starts per landmark, or the same K starts shared by every landmark) and how the runs are combined
(the paper's mean of positions, or the authors' code's mean of embeddings).

The validation protocol (`evaluation.protocol.validation_protocol`): supports drawn (seeded) from
the training patients, queries = every validation patient with at least one of the organs. The
test supports are validation patients too, so they appear here as queries, which tunes nothing
about the test queries. Each candidate runs from a fresh generator seeded by the pair, so
candidates with the same starts share them: the comparison is paired. A self-calibrated schedule is
its uncalibrated candidate's cached points with the support's bias taken off (the profile's default
gets a row of its own when it is calibrated); its time adds the bias's, computed once per pair.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.evaluation.jobs import run_jobs
from rprloc_core.evaluation.predictions import PredictionCache
from rprloc_core.evaluation.protocol import Protocol, case_rng
from rprloc_core.evaluation.scoring import score_points
from rprloc_core.experiments.models import models_hash
from rprloc_core.experiments.rprloc_predictions import (main_models, support_bias, support_bias_seconds_per_organ,
                                                        support_landmarks)
from rprloc_core.rprloc.inference import POOL_FACTOR, localize
from rprloc_core.rprloc.self_calibration import calibrate


@dataclass(frozen=True)
class Schedule:
    steps: tuple
    starts: str = "independent"
    ensemble: str = "mean_position"
    pool_factor: int = POOL_FACTOR
    self_calibration: float = 0.0     # share of the support's own bias taken off (rprloc.self_calibration)
    scatter_mm: float = 0.0           # a "scatter" step's half-width per axis

    @property
    def label(self) -> str:
        names = {"coarse": "Mc", "fine": "Mf", "average": "avg", "scatter": f"scatter ±{self.scatter_mm:g} mm"}
        text = " > ".join(names[s] for s in self.steps)
        starts = {"independent": None, "shared": "shared starts",
                  "pooled": f"pooled starts x{self.pool_factor}"}[self.starts]
        calibration = self.self_calibration > 0 and f"self-calibration {self.self_calibration:g}"
        extras = [e for e in (starts, self.ensemble == "mean_embedding" and "embedding mean", calibration) if e]
        return text + (f" ({', '.join(extras)})" if extras else "")

    def options(self) -> dict:
        """Its `localize` options (self-calibration is applied to localize's points afterwards)."""
        return {"ensemble": self.ensemble, "starts": self.starts, "pool_factor": self.pool_factor,
                "scatter_mm": self.scatter_mm}

    @property
    def uncalibrated(self) -> "Schedule":
        return replace(self, self_calibration=0.0)


# The candidates, in the order the table lists them. The first is the paper's Mc + Mf.
# Two more were measured once (results of commit d19936b) and dropped, since together they cost
# a third of this comparison's time in `make reproduce` and decided nothing: Mc > Mf with shared
# starts and the mean of positions (-1.4 +- 0.8 IoU points against Mc > Mf), and
# Mc > Mc > avg > Mf > Mf with shared starts (+0.2 +- 1.4).
CANDIDATES = (
    Schedule(("coarse", "fine")),
    Schedule(("coarse",)),
    Schedule(("coarse", "coarse")),
    Schedule(("coarse", "fine"), "independent", "mean_embedding"),
    Schedule(("coarse", "fine"), "shared", "mean_embedding"),
    Schedule(("coarse", "fine"), "pooled", "mean_embedding", 2),
    Schedule(("coarse", "fine"), "pooled", "mean_embedding", 4),
    Schedule(("coarse", "fine"), "pooled", "mean_embedding", 8),
    Schedule(("coarse", "average", "fine"), "shared"),
    Schedule(("coarse", "average", "fine", "fine"), "shared"),
    Schedule(("coarse", "scatter", "fine"), "shared", scatter_mm=12.0),
)


def _cache(settings, k: int) -> PredictionCache:
    key = {"method": "rprloc-schedules", "timing": "per step", "models": models_hash(settings), "k": k,
           "seed": settings.seed,
           "candidates": [c.label for c in CANDIDATES]}
    return PredictionCache.for_method(settings, "rprloc-schedules", key)


def run_candidates(query, support_volume, points, organ_of_point, models, embeddings, seed_rng, k: int) -> dict:
    """{candidate label: (points (P, 3), seconds)} for every candidate on one pair.

    A candidate whose steps extend another's with the same starts and ensemble continues from the
    positions that one reached (the state between steps is only the K positions), and its time is
    the prefix's time (setup and its steps, timed step by step) plus the continuation's: Mc, Mc > Mc
    and Mc > Mf share their first step."""
    done: dict[tuple, tuple] = {}       # (starts, pool, ensemble, scatter, steps) -> (positions (K, P, 3), seconds)
    out = {}
    for candidate in CANDIDATES:
        base = (candidate.starts, candidate.pool_factor, candidate.ensemble, candidate.scatter_mm)
        prefix = max((n for n in range(1, len(candidate.steps)) if (*base, candidate.steps[:n]) in done), default=0)
        start, seconds = done[(*base, candidate.steps[:prefix])] if prefix else (None, 0.0)
        result = localize(query.volume, (support_volume, points), models["coarse"], models["fine"],
                          rng=seed_rng(), schedule=candidate.steps[prefix:], k=k, start_mm=start,
                          organ_of_point=organ_of_point, support_embeddings=embeddings, **candidate.options())
        step_times = np.cumsum(result.step_wall_s)                  # setup, then after each step
        for n in range(1, len(candidate.steps) - prefix + 1):
            done[(*base, candidate.steps[:prefix + n])] = (result.trajectories_mm[n], seconds + step_times[n])
        out[candidate.label] = (result.points_mm, seconds + result.wall_s)
    return out


def compute_pair(settings, support_id: str, query_id: str, k: int, organs=HAN_ORGANS) -> None:
    store = _cache(settings, k)
    if store.has(support_id, query_id):
        return
    models = main_models(settings)
    support, query = dataset.load_case(settings, support_id), dataset.load_case(settings, query_id)
    wanted = tuple(o for o in organs if o in query.labels)
    points, organ_of_point, embeddings = support_landmarks(settings, support_id, wanted, "extreme")
    runs = run_candidates(query, support.volume, points, organ_of_point, models, embeddings,
                          lambda: case_rng(settings.seed, query_id, support_id), k)
    arrays = {}
    for i, candidate in enumerate(CANDIDATES):
        arrays[f"points_{i}"], arrays[f"wall_s_{i}"] = runs[candidate.label][0], np.array(runs[candidate.label][1])
    store.write(support_id, query_id, organ_of_point, **arrays)


def predict_all(settings, protocol: Protocol, k: int, parallel: bool = True, progress: bool = True) -> None:
    jobs = [(settings, s, q, k) for s, q in _cache(settings, k).missing(protocol.pairs)]
    run_jobs(compute_pair, jobs, "schedules on validation patients", parallel, progress)


def _calibrated_candidates(settings) -> list[Schedule]:
    default = default_schedule(settings)
    return [default] if default.self_calibration > 0 else []


def _candidate_index(schedule: Schedule) -> int:
    labels = [c.label for c in CANDIDATES]
    if schedule.uncalibrated.label not in labels:
        raise ValueError(f"{schedule.uncalibrated.label!r} is not a cached candidate ({labels})")
    return labels.index(schedule.uncalibrated.label)


def per_query(settings, protocol: Protocol, k: int) -> pd.DataFrame:
    """Per (schedule, support, query, organ) metrics, with each pair's wall time per organ."""
    rows, store = [], _cache(settings, k)
    for support_id, query_id in protocol.pairs:
        run = store.read(support_id, query_id)
        n_organs = len(run.organs)
        for i, candidate in enumerate(CANDIDATES):
            rows += score_points(settings, query_id, run.organ_of_point, run[f"points_{i}"], method=candidate.label,
                                 strategy="extreme", support=support_id,
                                 time_s=float(run[f"wall_s_{i}"]) / n_organs)
        for schedule in _calibrated_candidates(settings):
            i = _candidate_index(schedule)
            points = calibrate(run[f"points_{i}"], support_bias(settings, support_id, run.organ_of_point),
                               schedule.self_calibration)
            rows += score_points(settings, query_id, run.organ_of_point, points, method=schedule.label,
                                 strategy="extreme", support=support_id,
                                 time_s=float(run[f"wall_s_{i}"]) / n_organs
                                 + support_bias_seconds_per_organ(settings, support_id))
    return pd.DataFrame(rows)


def cached_points(settings, k: int, support_id: str, query_id: str, label: str) -> tuple:
    """(organ of each point, predicted points (P, 3)) of one candidate (or the self-calibrated
    default) on one validation pair, from the cache `predict_all` filled."""
    run = _cache(settings, k).read(support_id, query_id)
    for schedule in _calibrated_candidates(settings):
        if schedule.label == label:
            points = run[f"points_{_candidate_index(schedule)}"]
            return run.organ_of_point, calibrate(points, support_bias(settings, support_id, run.organ_of_point),
                                                 schedule.self_calibration)
    return run.organ_of_point, run[f"points_{[c.label for c in CANDIDATES].index(label)}"]


def schedule_table(per_query_frame: pd.DataFrame, organs=HAN_ORGANS) -> pd.DataFrame:
    """One row per schedule: IoU per organ and mean IoU / AWD / point error (means over supports,
    queries and organs), the IoU difference to the paper's Mc > Mf with its paired 95% interval over
    (support, query, organ), and seconds per organ (one thread, support embeddings computed once
    per pair)."""
    frame = per_query_frame[per_query_frame.organ.isin(organs)]
    by_method = frame.groupby("method", sort=False)
    table = frame.pivot_table(index="method", columns="organ", values="iou_pct", sort=False)[
        [o for o in organs if o in set(frame.organ)]].add_suffix(" IoU %")
    table["IoU %"] = by_method.iou_pct.mean()
    table["AWD mm"] = by_method.awd_mm.mean()
    table["point error mm"] = by_method.point_error_mm.mean()
    pairs = ["support", "query", "organ"]
    reference = frame[frame.method == CANDIDATES[0].label].set_index(pairs).iou_pct
    deltas = {}
    for method, rows in by_method:
        diff = (rows.set_index(pairs).iou_pct - reference).dropna()
        half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.nan
        deltas[method] = f"{diff.mean():+.1f} ± {half:.1f}"
    table["IoU vs Mc > Mf (pts)"] = pd.Series(deltas)
    table["s/organ"] = by_method.time_s.mean()
    order = [c.label for c in CANDIDATES if c.label in table.index]
    order += [m for m in table.index if m not in order]          # the self-calibrated default last
    return table.loc[order].round(3).rename_axis("schedule").reset_index()


def default_schedule(settings) -> Schedule:
    """The profile's default schedule (Table 2's "default" row, Table 3's RPR-Loc row, the widget):
    the steps and options of `rprloc.inference`."""
    inference = settings.rprloc.inference
    return Schedule(tuple(inference.steps), inference.starts, inference.ensemble, inference.pool_factor,
                    inference.self_calibration, inference.scatter_mm)
