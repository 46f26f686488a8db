"""Few-shot RPR-Loc (beyond the paper): what a second and a fifth labelled support buy.

The default schedule (the profile's steps, ensemble and starts) on the test queries, with the
supports fused two ways:
- "embedding mean": one run, the supports' embeddings of each landmark averaged
  (`inference.encode_supports`, the library's few-shot);
- "position mean": one run per support, the predicted points averaged.

The supports are the protocol's plus further draws from the same validation pool (seeded, so the
one-shot supports stay the same). For n supports, the sets are the n-long windows of that list
taken cyclically, one starting at each support: every support is in n of them, and the spread over
the sets is the table's SD. Predictions are cached per (support set, query) and resumable.
Self-calibration (`rprloc.self_calibration`) is left out at every n, one support included, so the
table compares fusions of the same runs; the one-shot tables' default row has it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.evaluation.jobs import run_jobs
from rprloc_core.evaluation.predictions import PredictionCache
from rprloc_core.evaluation.protocol import Protocol, case_rng, choose_supports
from rprloc_core.evaluation.scoring import score_points, summarize
from rprloc_core.experiments import rprloc_predictions
from rprloc_core.experiments.models import models_hash
from rprloc_core.rprloc.inference import localize

FUSIONS = ("embedding mean", "position mean")
SET_SEPARATOR = "+"


def supports(settings, protocol: Protocol) -> list[str]:
    """The protocol's supports, then draws from the rest of the pool up to the largest size."""
    n_total = max(settings.rprloc.inference.few_shot_sizes)
    extra = max(0, n_total - len(protocol.supports))
    more = choose_supports(settings, protocol.organs, n=extra, seed=settings.seed + 1,
                           exclude=protocol.supports) if extra else []
    return [*protocol.supports, *more][:n_total]


def support_sets(ids, n: int) -> list[tuple]:
    """The n-long cyclic windows of `ids` (one set when n is all of them)."""
    if not 1 <= n <= len(ids):
        raise ValueError(f"cannot draw sets of {n} from {len(ids)} supports")
    if n == len(ids):
        return [tuple(ids)]
    return [tuple(ids[(i + j) % len(ids)] for j in range(n)) for i in range(len(ids))]


def _runs(settings, protocol: Protocol) -> list[tuple]:
    """The (support set, query) runs the table needs: every single support (they serve n = 1 and the
    position mean) that the one-shot evaluation has not run already, and every set of more than one
    for the embedding mean."""
    ids = supports(settings, protocol)
    sets = {(s,) for s in ids if not _evaluated(protocol, s)}
    for n in settings.rprloc.inference.few_shot_sizes:
        if n > 1:
            sets.update(support_sets(ids, n))
    return [(SET_SEPARATOR.join(group), q) for group in sorted(sets, key=lambda g: (len(g), g))
            for q in protocol.queries]


def cache(settings) -> PredictionCache:
    inference = settings.rprloc.inference
    key = {"method": "rprloc-few-shot", "models": models_hash(settings), "k": inference.k,
           "options": inference.default_options, "seed": settings.seed,
           "wall_s": "query side (supports embedded once)"}
    return PredictionCache.for_method(settings, "rprloc-few-shot", key)


def compute_pair(settings, support_set: str, query_id: str, organs=HAN_ORGANS) -> None:
    """The default schedule on one query from one set of supports (embeddings averaged), into the
    cache. A single support draws the same starts as the one-shot evaluation's default run."""
    store = cache(settings)
    if store.has(support_set, query_id):
        return
    ids = support_set.split(SET_SEPARATOR)
    models = rprloc_predictions.main_models(settings)
    query = dataset.load_case(settings, query_id)
    wanted = tuple(o for o in organs if o in query.labels)
    stacked, embeddings = [], []
    for support_id in ids:
        # each support's embeddings once per worker; their mean is what localize would compute
        points, organ_of_point, support_embeddings = rprloc_predictions.support_landmarks(
            settings, support_id, wanted, "extreme")
        stacked.append((dataset.load_case(settings, support_id).volume, points))
        embeddings.append(support_embeddings)
    fused = {name: np.mean([e[name] for e in embeddings], axis=0) for name in embeddings[0]}
    inference = settings.rprloc.inference
    result = localize(query.volume, stacked, models["coarse"], models["fine"],
                      rng=case_rng(settings.seed, query_id, *ids), k=inference.k,
                      organ_of_point=organ_of_point, support_embeddings=fused, **inference.default_options)
    store.write(support_set, query_id, organ_of_point, points_mm=result.points_mm, wall_s=result.wall_s)


def predict_all(settings, protocol: Protocol, parallel: bool = True, progress: bool = True) -> None:
    jobs = [(settings, s, q) for s, q in cache(settings).missing(_runs(settings, protocol))]
    run_jobs(compute_pair, jobs, "few-shot RPR-Loc", parallel, progress)


def _evaluated(protocol: Protocol, support_set: str) -> bool:
    """Whether the one-shot evaluation's cache already holds this run: a protocol support alone
    (the cache's separate default run, with the same schedule, K, starts and generator)."""
    return support_set in protocol.supports


def _read(settings, protocol: Protocol, support_set: str, query_id: str) -> tuple:
    """(points (P, 3), seconds, organ_of_point) of one run, from the one-shot evaluation's cache
    where it holds it (`_evaluated`), else from this module's."""
    if _evaluated(protocol, support_set):
        # uncalibrated, like every fused run: self-calibration is defined for one support only
        run = rprloc_predictions.read(settings, support_set, query_id, calibrated=False)
        points = rprloc_predictions.stage_points(run, rprloc_predictions.DEFAULT_STAGE, settings.rprloc.inference.k)
        return points, float(run["wall_s_default"]), run.organ_of_point
    run = cache(settings).read(support_set, query_id)
    return run["points_mm"], float(run["wall_s"]), run.organ_of_point


def per_query(settings, protocol: Protocol) -> pd.DataFrame:
    """Per (n supports, fusion, support set, query, organ) metrics. `support` names the set."""
    ids, rows, kept = supports(settings, protocol), [], {}

    def read(support_set, query_id):           # a single support's run serves several sets: read it once
        if (support_set, query_id) not in kept:
            kept[support_set, query_id] = _read(settings, protocol, support_set, query_id)
        return kept[support_set, query_id]

    for n in settings.rprloc.inference.few_shot_sizes:
        for group in support_sets(ids, n):
            name = SET_SEPARATOR.join(group)
            for query_id in protocol.queries:
                singles = [read(s, query_id) for s in group]
                organ_of_point = singles[0][2]
                fused = read(name, query_id)
                # seconds: the one run of the embedding mean, or one run per support
                predictions = {"embedding mean": fused[:2],
                               "position mean": (np.mean([r[0] for r in singles], axis=0),
                                                 sum(r[1] for r in singles))}
                n_organs = len(dict.fromkeys(organ_of_point))
                for fusion in FUSIONS if n > 1 else FUSIONS[:1]:
                    points, wall_s = predictions[fusion]
                    rows += score_points(settings, query_id, organ_of_point, points, supports_fused=n,
                                         fusion=fusion if n > 1 else "one support", strategy="extreme",
                                         support=name, time_s=wall_s / n_organs)
    return pd.DataFrame(rows)


def few_shot_table(per_query_frame: pd.DataFrame, organs=HAN_ORGANS) -> pd.DataFrame:
    """One row per (supports fused, fusion): IoU per organ, mean IoU and AWD with their SD over the
    support sets, and seconds per organ (one thread, inside the worker processes)."""
    summary = summarize(per_query_frame, keys=("supports_fused", "fusion"), organs=organs)
    keys = ["supports_fused", "fusion"]
    table = summary.pivot_table(index=keys, columns="organ", values="iou_pct", sort=False)[
        [o for o in organs if o in set(summary.organ)]].add_suffix(" IoU %")
    mean = summary[summary.organ == "Mean"].set_index(keys)
    table["IoU %"] = mean.iou_pct
    table["IoU SD over sets"] = mean.iou_pct_sd_over_supports
    table["AWD mm"] = mean.awd_mm
    table["AWD SD over sets"] = mean.awd_mm_sd_over_supports
    table["support sets"] = per_query_frame.groupby(keys, sort=False).support.nunique()
    table["s/organ"] = mean.time_s
    table.columns.name = None
    return table.round(3).reset_index().rename(columns={"supports_fused": "supports"})
