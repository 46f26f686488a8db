"""RPR-Loc on every (support, query) pair of a profile, computed once into the prediction cache,
so that Tables 1, 2 and 3 and the figures all read the same predictions (and a long evaluation
resumes where it stopped).

For each pair and landmark strategy, K_max random starts per landmark take Mc's first step (the
only step Table 1 uses, at every K of its grid), and the first K (the profile's `k`) of them go on
through two more coarse steps, and, separately, through the fine step:

    stage     "start" -> "coarse1" -> "coarse2" -> "coarse3"        K_max runs up to coarse1,
                               \\-> "fine"      (Mc + Mf)          K runs after it

The runs are independent draws, so the prediction for a smaller K is the mean of the first K runs:
Table 1's K grid comes from one K_max computation. The profile's default schedule
(`rprloc.inference`: its steps, ensemble and starts, chosen on validation patients) is run
separately with K runs, as the stage "default". Its points are cached as the networks placed them;
with self-calibration (`rprloc.inference.self_calibration` > 0) `read` takes the share of the
support's own bias off them, from each support's bias computed once into a cache of its own
(`support_bias`), so a change of the weight recomputes nothing.

Diagonal points only serve Table 1 (Mc one step), so only "start" and "coarse1" are computed for
them: the same generator draws the same starts, so these equal the first stages of a full run.
A support's embeddings depend on the support and the organs only, so each worker computes them
once per support (`support_landmarks`), not once per query.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.evaluation.jobs import run_jobs, torch_threads
from rprloc_core.evaluation.predictions import PairPredictions, PredictionCache
from rprloc_core.evaluation.protocol import case_rng, organ_landmarks_mm
from rprloc_core.evaluation.scoring import Method, score_points
from rprloc_core.experiments.models import load_models, models_hash
from rprloc_core.rprloc.inference import encode_supports, localize, stack_organ_landmarks
from rprloc_core.rprloc.self_calibration import calibrate, support_bias_mm

STAGES = ("start", "coarse1", "coarse2", "coarse3", "fine")
FIRST_STAGES = STAGES[:2]                   # K_max runs, in "first_step_mm"; the rest: K runs, "later_steps_mm"
STRATEGY_STAGES = {"extreme": STAGES, "diagonal": FIRST_STAGES}
DEFAULT_STAGE = "default"                   # the profile's default schedule, run on its own


def cache(settings, strategy: str) -> PredictionCache:
    """data/<dataset>/predictions/<profile>/rprloc-<strategy>/, keyed by the checkpoints' hash and
    the inference settings the cached predictions depend on."""
    inference = settings.rprloc.inference
    key = {"method": "rprloc", "strategy": strategy, "models": models_hash(settings), "k_max": inference.k_max,
           "default": {"k": inference.k, **inference.default_options}, "seed": settings.seed,
           "stages": list(STRATEGY_STAGES[strategy]),
           "runs": {"first steps": inference.k_max, "later steps": inference.k}}
    return PredictionCache.for_method(settings, f"rprloc-{strategy}", key)


@lru_cache(maxsize=4)
def main_models(settings):
    """The profile's Mc and Mf, loaded once per process (the worker processes reuse them)."""
    return load_models(settings, ["coarse", "fine"])


@lru_cache(maxsize=16)
def support_landmarks(settings, support_id: str, organs: tuple, strategy: str) -> tuple:
    """(points (P, 3) mm, organ of each point, {model: embeddings (P, 3)}) of a support's landmarks
    for these organs: computed once per worker process and support, for all its queries."""
    support = dataset.load_case(settings, support_id)
    points, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(support, list(organs), strategy))
    return points, organ_of_point, encode_supports((support.volume, points), main_models(settings))


def compute_pair(settings, support_id: str, query_id: str, strategy: str, organs=HAN_ORGANS) -> None:
    """Run one pair into the cache (a no-op when it is cached under the current key)."""
    store = cache(settings, strategy)
    if store.has(support_id, query_id):
        return
    inference = settings.rprloc.inference
    models = main_models(settings)
    support, query = dataset.load_case(settings, support_id), dataset.load_case(settings, query_id)
    wanted = tuple(o for o in organs if o in query.labels)
    points, organ_of_point, embeddings = support_landmarks(settings, support_id, wanted, strategy)
    common = dict(organ_of_point=organ_of_point, support_embeddings=embeddings)
    supports = (support.volume, points)
    first = localize(query.volume, supports, models["coarse"], rng=case_rng(settings.seed, query_id, support_id),
                     schedule=("coarse",), k=inference.k_max, **common)
    first_step = first.trajectories_mm.astype(np.float32)                      # (2, K_max, P, 3)
    if strategy == "diagonal":
        store.write(support_id, query_id, organ_of_point, first_step_mm=first_step, wall_s_coarse1=first.wall_s)
        return
    k, reached = inference.k, first.trajectories_mm[1, :inference.k]
    coarse = localize(query.volume, supports, models["coarse"], rng=None, schedule=("coarse", "coarse"),
                      start_mm=reached, k=k, **common)
    fine = localize(query.volume, supports, models["coarse"], models["fine"], rng=None, schedule=("fine",),
                    start_mm=reached, k=k, **common)
    default = localize(query.volume, supports, models["coarse"], models["fine"],
                       rng=case_rng(settings.seed, query_id, support_id), k=k, **inference.default_options, **common)
    later = np.concatenate([coarse.trajectories_mm[1:], fine.trajectories_mm[1:]])   # (3, K, P, 3)
    store.write(support_id, query_id, organ_of_point, first_step_mm=first_step,
                later_steps_mm=later.astype(np.float32), default_points_mm=default.points_mm,
                wall_s_coarse1=first.wall_s, wall_s_coarse23=coarse.wall_s, wall_s_fine=fine.wall_s,
                wall_s_default=default.wall_s)


def predict_all(settings, protocol, strategies=("extreme", "diagonal"), parallel: bool = True,
                progress: bool = True) -> None:
    """Compute every pair of the protocol that is not cached yet (two single-thread processes
    when `parallel`)."""
    jobs = [(settings, s, q, strategy) for strategy in strategies
            for s, q in cache(settings, strategy).missing(protocol.pairs)]
    run_jobs(compute_pair, jobs, "RPR-Loc predictions", parallel, progress)


def _bias_cache(settings) -> PredictionCache:
    """data/<dataset>/predictions/<profile>/rprloc-self-calibration/: one support's bias per file."""
    inference = settings.rprloc.inference
    key = {"method": "rprloc-self-calibration", "models": models_hash(settings), "k": inference.k,
           "default": inference.default_options, "runs": inference.self_calibration_runs, "seed": settings.seed,
           "timing": "one thread"}
    return PredictionCache.for_method(settings, "rprloc-self-calibration", key)


@lru_cache(maxsize=16)
def _support_bias_file(settings, support_id: str) -> tuple[dict, float]:
    """({organ: bias (6, 3) mm}, seconds per organ it took) of one support, computed into its cache
    file the first time and read once per process (every query of that support reuses it)."""
    store = _bias_cache(settings)
    if not store.has(support_id, support_id):
        inference = settings.rprloc.inference
        support = dataset.load_case(settings, support_id)
        organs = tuple(o for o in HAN_ORGANS if o in support.labels)
        points, organs_of_points, embeddings = support_landmarks(settings, support_id, organs, "extreme")
        models = main_models(settings)
        with torch_threads(1):          # timed as the schedule comparison's workers run: one thread
            start = time.perf_counter()
            bias = support_bias_mm(support.volume, points, models["coarse"], models["fine"], k=inference.k,
                                   repeats=inference.self_calibration_runs, seed=settings.seed,
                                   organ_of_point=organs_of_points, support_embeddings=embeddings,
                                   **inference.default_options)
            seconds = time.perf_counter() - start
        store.write(support_id, support_id, organs_of_points, bias_mm=bias,
                    wall_s_per_organ=np.array(seconds / len(organs)))
    cached = store.read(support_id, support_id)
    blocks = {o: cached.organ_points(cached["bias_mm"], o) for o in cached.organs}
    return blocks, float(cached["wall_s_per_organ"])


def support_bias(settings, support_id: str, organ_of_point) -> np.ndarray:
    """The support's bias (P, 3) mm for these stacked extreme points (`rprloc.self_calibration`),
    computed once per support for all its organs and cached. With shared starts every landmark's
    runs are the same whichever organs are asked for, so one computation serves every query."""
    blocks, _ = _support_bias_file(settings, support_id)
    wanted = list(dict.fromkeys(organ_of_point))
    missing = [o for o in wanted if o not in blocks]
    if missing:
        raise ValueError(f"support {support_id} has no {', '.join(missing)}: no bias to take off")
    return np.concatenate([blocks[o] for o in wanted]) if wanted else np.zeros((0, 3))


def support_bias_seconds_per_organ(settings, support_id: str) -> float:
    """What computing the support's bias took per organ (one thread)."""
    return _support_bias_file(settings, support_id)[1]


def have_predictions(settings, protocol, strategy: str = "extreme") -> bool:
    """Whether every pair is cached for the current models (False if there are no trained models)."""
    try:
        return not cache(settings, strategy).missing(protocol.pairs)
    except FileNotFoundError:
        return False


def read(settings, support_id: str, query_id: str, strategy: str = "extreme",
         calibrated: bool = True) -> PairPredictions:
    """One pair's cached predictions; the default schedule's points with the profile's
    self-calibration taken off (`calibrated=False`: as the networks placed them)."""
    run = cache(settings, strategy).read(support_id, query_id)
    weight = settings.rprloc.inference.self_calibration
    if calibrated and weight > 0 and "default_points_mm" in run.arrays:
        bias = support_bias(settings, support_id, run.organ_of_point)
        run.arrays["default_points_mm"] = calibrate(run["default_points_mm"], bias, weight)
    return run


def stage_points(run: PairPredictions, stage: str, k: int) -> np.ndarray:
    """Predicted points (P, 3) after `stage` (one of STAGES[1:]) with K runs, or of the default schedule
    (DEFAULT_STAGE, run with the profile's K)."""
    if stage == DEFAULT_STAGE:
        return run["default_points_mm"]
    return stage_runs(run, stage, k).mean(axis=0)


def stage_runs(run: PairPredictions, stage: str, k: int) -> np.ndarray:
    """Positions (K, P, 3) of the first K runs after `stage` (or "start")."""
    if stage in FIRST_STAGES:
        runs = run["first_step_mm"][FIRST_STAGES.index(stage)]
    else:
        runs = run["later_steps_mm"][STAGES.index(stage) - len(FIRST_STAGES)]
    if k > len(runs):
        raise ValueError(f"the cache holds {len(runs)} runs after {stage!r}, not {k} "
                         f"(rprloc.inference: k_max runs up to coarse1, k after it)")
    return runs[:k].astype(float)


def score(settings, protocol, strategy: str, stages_and_k, labels: dict) -> pd.DataFrame:
    """Per (setting, support, query, organ) metrics from the cache. `stages_and_k`: (stage, K)
    pairs; `labels`: stage -> the method name its rows get. time_s is NaN: times come from the
    timing harness, not from the cache."""
    rows = []
    for support_id, query_id in protocol.pairs:
        run = read(settings, support_id, query_id, strategy)
        for stage, k in stages_and_k:
            rows += score_points(settings, query_id, run.organ_of_point, stage_points(run, stage, k),
                                 method=labels[stage], stage=stage, strategy=strategy, K=k, support=support_id)
    frame = pd.DataFrame(rows)
    frame["time_s"] = np.nan
    return frame


def rprloc_method(coarse, fine=None, schedule=("coarse",), k: int = 15, seed: int = 0, device=None,
                  self_calibration: float = 0.0, self_calibration_runs: int = 3, **options) -> Method:
    """RPR-Loc as an evaluation method (run now, not cached): all organs' landmarks localized in
    one batched call. `options`: further `localize` options (ensemble, starts, pool_factor). With
    `self_calibration` > 0 the support's bias is computed in every call, as for a single query
    from the CLI, and counts in its time."""
    def predict(query, support, support_points):
        points, organ_of_point, _ = stack_organ_landmarks(support_points)
        start = time.perf_counter()           # as the CLI: the support embedded once, for its runs and the query's
        embeddings = encode_supports((support.volume, points), {"coarse": coarse, "fine": fine}, device=device)
        result = localize(query.volume, (support.volume, points), coarse, fine,
                          rng=case_rng(seed, query.case_id, support.case_id), schedule=tuple(schedule), k=k,
                          organ_of_point=organ_of_point, device=device, support_embeddings=embeddings, **options)
        if self_calibration > 0:
            bias = support_bias_mm(support.volume, points, coarse, fine, schedule=tuple(schedule), k=k,
                                   repeats=self_calibration_runs, seed=seed, organ_of_point=organ_of_point,
                                   support_embeddings=embeddings, device=device, **options)
            result.points_mm = calibrate(result.points_mm, bias, self_calibration)
        return result.points_by_organ(), time.perf_counter() - start

    return predict
