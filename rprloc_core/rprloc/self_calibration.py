"""Self-calibration: how far off the networks place the support's own landmarks, taken off the query's.

Before a query is localised, the support is localised in itself (the support as its own query,
with the query's schedule, K and kind of starts, starts uniform over the support's non-air voxels
as they are over a query's). Whatever the networks then get wrong cannot come from anatomy: it is
their own error for that landmark's look, and part of it recurs in every query (self-localisation
in notebook 03 shows a signed bias, most of it along z). The mean signed error of a few such runs is
the landmark's bias; `calibrate` subtracts a share of it from the query's prediction.

Chosen on validation patients only (notebook 03): half the bias of 3 runs, which gained on three
sets of training supports x the 33 validation queries, each with its rule written before scoring.
The runs use their own seeded generator, not the query's, so a support gets the same bias whatever
the query, and computing it once per support serves a whole series.
"""

from __future__ import annotations

import numpy as np

from rprloc_core.rprloc.inference import localize

SELF_CALIBRATION_STREAM = 9021     # the generator's stream id: the runs never share the query's starts


def support_bias_mm(support_volume, points_mm, coarse, fine=None, *, schedule, k: int, repeats: int = 3,
                    seed: int = 0, organ_of_point=None, support_embeddings=None, device=None,
                    batch_size: int | None = None, **options) -> np.ndarray:
    """Mean signed error (P, 3) mm of `repeats` localisations of the support's landmarks in the
    support itself (prediction minus landmark). `options`: the query's further `localize` options
    (ensemble, starts, pool_factor), so that the bias is the one of the schedule the query runs."""
    if int(repeats) < 1:
        raise ValueError(f"self-calibration needs at least one run, got repeats = {repeats}")
    points_mm = np.asarray(points_mm, dtype=float)
    errors = []
    for repeat in range(int(repeats)):
        result = localize(support_volume, (support_volume, points_mm), coarse, fine,
                          rng=np.random.default_rng([int(seed), SELF_CALIBRATION_STREAM, repeat]),
                          schedule=tuple(schedule), k=k, organ_of_point=organ_of_point,
                          support_embeddings=support_embeddings, device=device, batch_size=batch_size, **options)
        errors.append(result.points_mm - points_mm)
    return np.mean(errors, axis=0)


def calibrate(points_mm, bias_mm, weight: float) -> np.ndarray:
    """The query's predicted points (P, 3) with `weight` x the support's bias (P, 3) taken off."""
    points_mm, bias_mm = np.asarray(points_mm, dtype=float), np.asarray(bias_mm, dtype=float)
    if points_mm.shape != bias_mm.shape:
        raise ValueError(f"the bias has shape {bias_mm.shape}, the points {points_mm.shape}: "
                         "they must be for the same landmarks")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the self-calibration weight must lie in [0, 1], got {weight}")
    return points_mm - weight * bias_mm
