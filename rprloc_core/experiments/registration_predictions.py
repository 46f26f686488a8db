"""Atlas registration (`baselines.registration`) on every (support, query) pair, cached like the
other methods: one registration per pair serves every organ, whose support mask is resampled into
the query; the extreme points of the warped mask are the prediction. Seconds per organ = the
pair's wall time (registration + warping) / its organs.

A warped mask can leave the query (a bad registration); the organ is then predicted from the
support's extreme points mapped through the inverse transform, so every organ gets a box.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from rprloc_core.baselines.registration import RegistrationConfig, register, warp_mask
from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.evaluation.jobs import run_jobs
from rprloc_core.evaluation.predictions import PredictionCache
from rprloc_core.evaluation.protocol import Protocol
from rprloc_core.evaluation.scoring import Method, score_points
from rprloc_core.geometry.landmarks import extreme_points
from rprloc_core.geometry.space import xyz_to_zyx, zyx_to_xyz

# Candidates compared on validation patients (notebook 08); labels name them in the tables.
CANDIDATES = {
    "Registration: translation": RegistrationConfig("translation"),
    "Registration: rigid": RegistrationConfig("rigid"),
    "Registration: affine": RegistrationConfig("affine"),
    "Registration: affine, two levels (4, 2)": RegistrationConfig("affine", shrink_factors=(4, 2),
                                                                  smoothing_vox=(2.0, 1.0)),
}


def cache(settings, config: RegistrationConfig) -> PredictionCache:
    levels = "-".join(str(f) for f in config.shrink_factors)
    folder = f"registration-{config.transform}-{config.metric}-{levels}"
    return PredictionCache.for_method(settings, folder, {"method": "registration", **config.to_dict()})


def predict_organs(query, support, organs, config: RegistrationConfig) -> tuple[dict, float]:
    """{organ: extreme points (6, 3) in the query's mm frame}, wall seconds (all organs)."""
    start = time.perf_counter()
    transform = register(query.volume, support.volume, config)
    points = {}
    for organ in organs:
        warped = warp_mask(support.labels[organ], support.volume, query.volume, transform)
        if warped.any():
            points[organ] = query.idx_to_mm(extreme_points(warped))
        else:   # the warped organ left the query: map the support's extreme points instead
            inverse = transform.GetInverse()
            support_mm = support.idx_to_mm(extreme_points(support.labels[organ]))
            mapped = np.array([xyz_to_zyx(inverse.TransformPoint(tuple(float(v) for v in zyx_to_xyz(p))))
                               for p in support_mm])
            lo, hi = query.volume.extent_mm()
            points[organ] = np.clip(mapped, lo, hi)
    return points, time.perf_counter() - start


def registration_method(config: RegistrationConfig) -> Method:
    """Registration as an evaluation method, run now (for timing it alone)."""
    def predict(query, support, support_points):
        return predict_organs(query, support, list(support_points), config)

    return predict


def compute_pair(settings, support_id: str, query_id: str, config: RegistrationConfig, organs=HAN_ORGANS) -> None:
    store = cache(settings, config)
    if store.has(support_id, query_id):
        return
    support, query = dataset.load_case(settings, support_id), dataset.load_case(settings, query_id)
    wanted = [o for o in organs if o in query.labels and o in support.labels]
    points, wall = predict_organs(query, support, wanted, config)
    organ_of_point = [o for o in wanted for _ in range(len(points[o]))]
    stacked = np.concatenate([points[o] for o in wanted]) if wanted else np.zeros((0, 3))
    store.write(support_id, query_id, organ_of_point, points_mm=stacked, wall_s=np.array(wall))


def predict_all(settings, protocol: Protocol, configs, parallel: bool = True, progress: bool = True) -> None:
    jobs = [(settings, s, q, config) for config in configs for s, q in cache(settings, config).missing(protocol.pairs)]
    run_jobs(compute_pair, jobs, "atlas registration", parallel, progress)


def score(settings, protocol: Protocol, configs: dict) -> pd.DataFrame:
    """Per (method, support, query, organ) metrics; `configs`: label -> RegistrationConfig."""
    rows = []
    for label, config in configs.items():
        store = cache(settings, config)
        for support_id, query_id in protocol.pairs:
            run = store.read(support_id, query_id)
            if not run.organs:
                continue
            rows += score_points(settings, query_id, run.organ_of_point, run["points_mm"], method=label,
                                 strategy="extreme", support=support_id,
                                 time_s=float(run["wall_s"]) / len(run.organs))
    return pd.DataFrame(rows)
