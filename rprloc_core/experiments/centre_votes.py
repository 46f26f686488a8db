"""Beyond the paper: do more landmarks per organ steady the size-prior box's centre? (notebook 04)

The size-prior box sits on the support's box moved by the mean of the six extreme points' votes
(predicted minus support position). If each point's error were its own, more votes would average
it away: here every organ also gets its mask's centroid and the six points midway between the
centroid and each extreme point, all localised with the default schedule (13 landmarks, about
twice the patches), and the box's centre is moved by the mean vote of each subset. The box's
extent still comes from the six extreme points. Validation patients only; the profile keeps the
six extreme points unless a subset passes the rule of `findings.centre_rule_findings`."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.evaluation.jobs import run_jobs
from rprloc_core.evaluation.predictions import PredictionCache
from rprloc_core.evaluation.protocol import Protocol, case_rng, organ_landmarks_mm
from rprloc_core.evaluation.scoring import score_points
from rprloc_core.experiments import schedules
from rprloc_core.experiments.models import models_hash
from rprloc_core.experiments.rprloc_predictions import main_models
from rprloc_core.experiments.size_prior import RPRLOC_DEFAULT, apply_prior
from rprloc_core.geometry.boxes import mask_centroid
from rprloc_core.rprloc.inference import localize, stack_organ_landmarks

N_EXTREME = 6
# Which of an organ's 13 landmarks (6 extreme, the centroid, 6 midway points) vote for its centre.
VOTES = {
    "six extreme points (profile)": slice(0, 6),
    "organ centroid": slice(6, 7),
    "six midway points": slice(7, 13),
    "centroid + midway points": slice(6, 13),
    "all 13 points": slice(0, 13),
}
PROFILE_VOTE = next(iter(VOTES))


def vote_landmarks_mm(case, organs) -> dict:
    """organ -> (13, 3) mm: the six extreme points, the mask's centroid, and the six points midway
    between the centroid and each extreme point. The centroid of a curved organ (the mandible) lies
    outside it; it is still a position in the support image that the query has too."""
    extreme = organ_landmarks_mm(case, organs, "extreme")
    out = {}
    for organ, points in extreme.items():
        centroid = case.idx_to_mm(mask_centroid(case.labels[organ], f"{case.case_id}/{organ}")[None])[0]
        out[organ] = np.vstack([points, centroid[None], (points + centroid) / 2])
    return out


def voted_boxes(points, support_points, organ_of_point, weight: float, votes: slice) -> np.ndarray:
    """Each organ's size-prior box (`apply_prior` on its six extreme points, which come first of its
    rows) moved so that its centre follows the mean vote of the rows `votes` selects. Returns the six
    box points per organ, stacked in organ order."""
    points, support_points = np.asarray(points, dtype=float), np.asarray(support_points, dtype=float)
    organs = np.asarray(organ_of_point)
    boxes = []
    for organ in dict.fromkeys(organs.tolist()):
        predicted, support = points[organs == organ], support_points[organs == organ]
        if len(predicted) < max(N_EXTREME, votes.stop):
            raise ValueError(f"{organ}: {len(predicted)} landmarks, the votes need {votes.stop}")
        box = apply_prior(predicted[:N_EXTREME], support[:N_EXTREME], [organ] * N_EXTREME, weight)
        vote = (predicted[votes] - support[votes]).mean(axis=0)
        box += vote - (predicted[:N_EXTREME] - support[:N_EXTREME]).mean(axis=0)
        boxes.append(box)
    return np.vstack(boxes)


# The votes compare landmark subsets on the networks' own points (uncalibrated: the 13 landmarks'
# self-calibration would cost four times the runs and changes every subset alike).
def _cache(settings, k: int) -> PredictionCache:
    schedule = schedules.default_schedule(settings).uncalibrated
    key = {"method": "rprloc-centre-votes", "models": models_hash(settings), "k": k, "seed": settings.seed,
           "schedule": schedule.label, "landmarks": "6 extreme, centroid, 6 midway"}
    return PredictionCache.for_method(settings, "rprloc-centre-votes", key)


@lru_cache(maxsize=8)
def _support(settings, support_id: str, organs: tuple) -> tuple:
    support = dataset.load_case(settings, support_id)
    points, organ_of_point, _ = stack_organ_landmarks(vote_landmarks_mm(support, list(organs)))
    points.setflags(write=False)
    return support.volume, points, tuple(organ_of_point)


def compute_pair(settings, support_id: str, query_id: str, k: int, organs=HAN_ORGANS) -> None:
    store = _cache(settings, k)
    if store.has(support_id, query_id):
        return
    query = dataset.load_case(settings, query_id)
    wanted = tuple(o for o in organs if o in query.labels)
    volume, points, organ_of_point = _support(settings, support_id, wanted)
    models, schedule = main_models(settings), schedules.default_schedule(settings).uncalibrated
    # Seeded as the schedule comparison: the same K shared starts as the default schedule's run.
    result = localize(query.volume, (volume, points), models["coarse"], models["fine"],
                      rng=case_rng(settings.seed, query_id, support_id), schedule=schedule.steps, k=k,
                      organ_of_point=organ_of_point, **schedule.options())
    store.write(support_id, query_id, organ_of_point, points=result.points_mm)


def predict_all(settings, protocol: Protocol, k: int, parallel: bool = True, progress: bool = True) -> None:
    jobs = [(settings, s, q, k) for s, q in _cache(settings, k).missing(protocol.pairs)]
    run_jobs(compute_pair, jobs, "13 landmarks per organ on validation patients", parallel, progress)


def per_query(settings, protocol: Protocol, k: int, weight: float) -> pd.DataFrame:
    """Per (vote subset, support, query, organ) metrics of the size-prior box at `weight`; box
    labels as `size_prior.centre_rules_per_query` writes them, so its table and finding apply."""
    store, rows = _cache(settings, k), []
    for support_id, query_id in protocol.pairs:
        run = store.read(support_id, query_id)
        _, support_points, organ_of_point = _support(settings, support_id, tuple(run.organs))
        if list(organ_of_point) != list(run.organ_of_point):
            raise ValueError(f"support {support_id} does not give the landmarks of the cached prediction")
        box_organs = [o for o in run.organs for _ in range(N_EXTREME)]
        for name, votes in VOTES.items():
            boxes = voted_boxes(run["points"], support_points, organ_of_point, weight, votes)
            rows += score_points(settings, query_id, box_organs, boxes, method=RPRLOC_DEFAULT,
                                 box=f"size prior {weight:g}, centre: {name}", weight=weight,
                                 strategy="extreme", support=support_id)
    return pd.DataFrame(rows)
