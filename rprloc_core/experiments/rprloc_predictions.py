"""RPR-Loc on every (support, query) pair of a profile, computed once into the prediction cache,
so that Tables 1, 2 and 3 and the figures all read the same predictions (and a long evaluation
resumes where it stopped).

For each pair and landmark strategy, K_max random starts per landmark go through three coarse
steps, and the fine step is taken from the first coarse step's positions with the same starts:

    stage     "start" -> "coarse1" -> "coarse2" -> "coarse3"
                               \\-> "fine"      (Mc + Mf)

The K_max runs are independent draws, so the prediction for a smaller K is the mean of the first K
runs: Table 1's K grid comes from one K_max computation. The authors' variant (average the K query
embeddings, then one fine step; K and starts from the profile: `rprloc.inference.starts`) is run
separately for Mc + Mf.

Diagonal points only serve Table 1 (Mc one step), so only "start" and "coarse1" are computed for
them: the same generator draws the same starts, so these equal the first stages of a full run.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.evaluation.jobs import run_jobs
from rprloc_core.evaluation.predictions import PairPredictions, PredictionCache
from rprloc_core.evaluation.protocol import case_rng, organ_landmarks_mm
from rprloc_core.evaluation.scoring import Method, score_points
from rprloc_core.experiments.models import load_models, models_hash
from rprloc_core.rprloc.inference import localize, stack_organ_landmarks

STAGES = ("start", "coarse1", "coarse2", "coarse3", "fine")
STRATEGY_STAGES = {"extreme": STAGES, "diagonal": STAGES[:2]}
AUTHORS_VARIANT = "fine_mean_embedding"     # Mc + Mf with the K embeddings averaged (authors' code)


def cache(settings, strategy: str) -> PredictionCache:
    """data/<dataset>/predictions/<profile>/rprloc-<strategy>/, keyed by the checkpoints' hash and
    the inference settings the cached predictions depend on."""
    inference = settings.rprloc.inference
    key = {"method": "rprloc", "strategy": strategy, "models": models_hash(settings), "k_max": inference.k_max,
           "k_authors": inference.k, "starts_authors": [inference.starts, inference.pool_factor],
           "seed": settings.seed, "stages": list(STRATEGY_STAGES[strategy])}
    return PredictionCache.for_method(settings, f"rprloc-{strategy}", key)


@lru_cache(maxsize=4)
def main_models(settings):
    """The profile's Mc and Mf, loaded once per process (the worker processes reuse them)."""
    return load_models(settings, ["coarse", "fine"])


def compute_pair(settings, support_id: str, query_id: str, strategy: str, organs=HAN_ORGANS) -> None:
    """Run one pair into the cache (a no-op when it is cached under the current key)."""
    store = cache(settings, strategy)
    if store.has(support_id, query_id):
        return
    inference = settings.rprloc.inference
    models = main_models(settings)
    support, query = dataset.load_case(settings, support_id), dataset.load_case(settings, query_id)
    wanted = [o for o in organs if o in query.labels]
    points, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(support, wanted, strategy))
    rng = case_rng(settings.seed, query_id, support_id)
    common = dict(organ_of_point=organ_of_point, k=inference.k_max)
    if strategy == "diagonal":
        coarse = localize(query.volume, (support.volume, points), models["coarse"], rng=rng, schedule=("coarse",),
                          **common)
        store.write(support_id, query_id, organ_of_point, trajectories_mm=coarse.trajectories_mm.astype(np.float32),
                    wall_s_coarse1=coarse.wall_s)
        return
    coarse = localize(query.volume, (support.volume, points), models["coarse"], rng=rng,
                      schedule=("coarse", "coarse", "coarse"), **common)
    fine = localize(query.volume, (support.volume, points), models["coarse"], models["fine"], rng=rng,
                    schedule=("fine",), start_mm=coarse.trajectories_mm[1], **common)
    authors = localize(query.volume, (support.volume, points), models["coarse"], models["fine"],
                       rng=case_rng(settings.seed, query_id, support_id), schedule=("coarse", "fine"),
                       ensemble="mean_embedding", starts=inference.starts, pool_factor=inference.pool_factor,
                       organ_of_point=organ_of_point, k=inference.k)
    trajectories = np.concatenate([coarse.trajectories_mm, fine.trajectories_mm[1:]])   # (5, K, P, 3)
    store.write(support_id, query_id, organ_of_point, trajectories_mm=trajectories.astype(np.float32),
                authors_points_mm=authors.points_mm, wall_s_coarse3=coarse.wall_s, wall_s_fine=fine.wall_s,
                wall_s_authors=authors.wall_s)


def predict_all(settings, protocol, strategies=("extreme", "diagonal"), parallel: bool = True,
                progress: bool = True) -> None:
    """Compute every pair of the protocol that is not cached yet (two single-thread processes
    when `parallel`)."""
    jobs = [(settings, s, q, strategy) for strategy in strategies
            for s, q in cache(settings, strategy).missing(protocol.pairs)]
    run_jobs(compute_pair, jobs, "RPR-Loc predictions", parallel, progress)


def default_stage(settings) -> str:
    """The cached stage that holds the profile's default schedule: Mc + Mf with the mean of
    positions, or the embedding-mean run (computed with the profile's starts)."""
    return "fine" if settings.rprloc.inference.ensemble == "mean_position" else AUTHORS_VARIANT


def have_predictions(settings, protocol, strategy: str = "extreme") -> bool:
    """Whether every pair is cached for the current models (False if there are no trained models)."""
    try:
        return not cache(settings, strategy).missing(protocol.pairs)
    except FileNotFoundError:
        return False


def read(settings, support_id: str, query_id: str, strategy: str = "extreme") -> PairPredictions:
    return cache(settings, strategy).read(support_id, query_id)


def stage_points(run: PairPredictions, stage: str, k: int) -> np.ndarray:
    """Predicted points (P, 3) after `stage` (one of STAGES[1:], or AUTHORS_VARIANT) with K runs."""
    if stage == AUTHORS_VARIANT:
        return run["authors_points_mm"]
    return run["trajectories_mm"][STAGES.index(stage), :k].astype(float).mean(axis=0)


def stage_runs(run: PairPredictions, stage: str, k: int) -> np.ndarray:
    """Positions (K, P, 3) of the first K runs after `stage` (or "start")."""
    return run["trajectories_mm"][STAGES.index(stage), :k].astype(float)


def score(settings, protocol, strategy: str, stages_and_k, labels: dict) -> pd.DataFrame:
    """Per (setting, support, query, organ) metrics from the cache. `stages_and_k`: (stage, K)
    pairs; `labels`: stage -> the method name its rows get. time_s is NaN: times come from the
    timing harness, not from the cache."""
    rows = []
    store = cache(settings, strategy)
    for support_id, query_id in protocol.pairs:
        run = store.read(support_id, query_id)
        for stage, k in stages_and_k:
            rows += score_points(settings, query_id, run.organ_of_point, stage_points(run, stage, k),
                                 method=labels[stage], stage=stage, strategy=strategy, K=k, support=support_id)
    frame = pd.DataFrame(rows)
    frame["time_s"] = np.nan
    return frame


def rprloc_method(coarse, fine=None, schedule=("coarse",), k: int = 15, seed: int = 0, device=None,
                  **options) -> Method:
    """RPR-Loc as an evaluation method (run now, not cached): all organs' landmarks localized in
    one batched call. `options`: further `localize` options (ensemble, starts, pool_factor)."""
    def predict(query, support, support_points):
        points, organ_of_point, _ = stack_organ_landmarks(support_points)
        result = localize(query.volume, (support.volume, points), coarse, fine,
                          rng=case_rng(seed, query.case_id, support.case_id), schedule=tuple(schedule), k=k,
                          organ_of_point=organ_of_point, device=device, **options)
        return result.points_by_organ(), result.wall_s

    return predict
