"""The template-matching baselines of Table 3 (GS MSE, GS Cosine, GS NCC, FM MSE, FM Cosine) on
every (support, query) pair of a profile: the patch auto-encoder they need, their predictions in
the prediction cache, their scores, and their times.

Predictions and times are computed separately, on purpose:
- predictions: all five methods for all the supports of a query at once
  (`template_matching.match_all`: one FFT of the query and one cross-correlation per template for
  the three GS scores, one dense encoding of the query for the two FM scores), cached per pair,
  resumable, two single-thread worker processes. The results equal running each method on each
  pair on its own.
- times: shared work is not how anyone would run one method, so each method is timed alone, end
  to end (cutting templates, matching, for FM encoding the query), with `template_method` on a
  few queries (`time_methods`). RPR-Loc is timed the same way beside them (`time_rprloc`).
"""

from __future__ import annotations

import os
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from rprloc_core.baselines.feature_matching import AEConfig, TrainResult, load_autoencoder, train_autoencoder
from rprloc_core.baselines.template_matching import (
    FEATURE_METHODS,
    GRAY_METHODS,
    METHODS,
    cut_templates,
    match,
    match_all,
)
from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.evaluation.jobs import run_jobs, torch_threads
from rprloc_core.evaluation.predictions import PairPredictions, PredictionCache
from rprloc_core.evaluation.protocol import organ_landmarks_mm
from rprloc_core.evaluation.scoring import Method, evaluate, score_points
from rprloc_core.experiments import models
from rprloc_core.experiments.models import load_models
from rprloc_core.experiments.paper import RPRLOC_LABEL, TEMPLATE_LABELS
from rprloc_core.experiments.rprloc_predictions import rprloc_method
from rprloc_core.geometry.volume import Volume
from rprloc_core.rprloc.inference import stack_organ_landmarks


def ae_config(settings) -> AEConfig:
    """The auto-encoder's architecture: its patch is the template (FM compares latents of windows
    of exactly the template's size)."""
    section = settings.template_matching
    return AEConfig(patch_size=section.patch_size, latent_dim=section.autoencoder.latent_dim,
                    channels=section.autoencoder.channels)


# ------------------------------------------------------------------------------- auto-encoder

def encoder_path(settings) -> Path:
    """The released auto-encoder, or data/<dataset>/models/<profile>/autoencoder/checkpoint.pt
    (model, optimizer, history) when the profile trains its own."""
    return models.model_file(settings, models.AUTOENCODER)


def train_encoder(settings, progress: bool = True):
    """The profile's patch auto-encoder: the released one (nothing is trained), or trained here
    (or resumed, or just loaded if finished) on the training split's intensity volumes; no label
    file is opened (dataset.unlabelled_volumes)."""
    ae = settings.template_matching.autoencoder
    if models.uses_release(settings):
        step, history = _encoder_record(settings)
        return TrainResult(model=load_encoder(settings), history=list(history), step=step, stopped="released")
    volumes = dataset.unlabelled_volumes(settings, "train", progress=progress)
    return train_autoencoder(volumes, ae_config(settings), ae.steps, np.random.default_rng(settings.seed),
                             batch_size=ae.batch_size, lr=ae.lr, checkpoint_path=encoder_path(settings),
                             checkpoint_every=ae.checkpoint_every, progress=progress, time_limit_s=ae.time_limit_s)


def encoder_step(settings) -> int:
    """Training steps of the saved auto-encoder (part of the prediction cache's key)."""
    return _encoder_record(settings)[0]


def _encoder_record(settings) -> tuple[int, tuple]:
    path = encoder_path(settings)
    return _read_record(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=2)
def _read_record(path: str, checkpoint_mtime_ns: int) -> tuple[int, tuple]:
    """(training step, loss history) of an auto-encoder checkpoint, read once while it is unchanged."""
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=False)
    return int(saved["step"]), tuple(saved["history"])


@lru_cache(maxsize=2)
def _encoder(path: str, checkpoint_mtime_ns: int):
    """The encoder, loaded once per process (and again if the checkpoint changes)."""
    return load_autoencoder(path)


def load_encoder(settings):
    path = encoder_path(settings)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: train the auto-encoder first (train_encoder)")
    return _encoder(str(path), path.stat().st_mtime_ns)


# ---------------------------------------------------------------------------- cached predictions

def cache(settings) -> PredictionCache:
    """data/<dataset>/predictions/<profile>/template_matching/, keyed by the template size, the
    stride and the encoder (architecture and training step)."""
    section = settings.template_matching
    key = {"method": "template_matching", "patch_size": list(section.patch_size), "stride": section.stride,
           "autoencoder": {"latent_dim": section.autoencoder.latent_dim,
                           "channels": list(section.autoencoder.channels)},
           "encoder_step": encoder_step(settings), "methods": list(METHODS)}
    return PredictionCache.for_method(settings, "template_matching", key)


def compute_query(settings, query_id: str, support_ids, organs=HAN_ORGANS) -> None:
    """All five methods on one query from each of several supports, into the cache (one entry per
    pair). The templates of all the supports go through `match_all` together, so the query-side work
    (the query's FFT and window sums, its dense encoding) is done once per query rather than once per
    pair; each template's result is independent of the others, so every pair's entry equals what
    that pair alone gives. Templates are cut around the support's extreme points of every organ the
    query has, as `template_method` does."""
    store = cache(settings)
    support_ids = [s for s in support_ids if not store.has(s, query_id)]
    if not support_ids:
        return
    section = settings.template_matching
    encoder = load_encoder(settings)
    query = dataset.load_case(settings, query_id)
    wanted = [o for o in organs if o in query.labels]
    templates, parts = [], []
    for support_id in support_ids:
        support = dataset.load_case(settings, support_id)
        points_mm, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(support, wanted, "extreme"))
        templates.append(cut_templates(support.volume, support.mm_to_idx(points_mm), section.patch_size))
        parts.append((support_id, organ_of_point))
    templates = np.concatenate(templates)
    walls, results = {}, {}
    for part, methods in (("gray", GRAY_METHODS), ("features", FEATURE_METHODS)):
        start = time.perf_counter()
        results.update(match_all(query.volume, templates, methods, stride=section.stride, encoder=encoder))
        walls[part] = time.perf_counter() - start
    first = 0
    for support_id, organ_of_point in parts:
        rows = slice(first, first + len(organ_of_point))
        first = rows.stop
        # wall_s_query_*: the shared computation for all the supports of this query (not a method's time)
        store.write(support_id, query_id, organ_of_point, methods=np.array(METHODS),
                    points_mm=np.stack([results[m].centre_mm[rows] for m in METHODS]),
                    scores=np.stack([results[m].score[rows] for m in METHODS]),
                    wall_s_query_gray=walls["gray"], wall_s_query_features=walls["features"],
                    n_supports_sharing=len(parts))


def compute_pair(settings, support_id: str, query_id: str, organs=HAN_ORGANS) -> None:
    """One pair into the cache (`compute_query` with a single support)."""
    compute_query(settings, query_id, [support_id], organs)


def predict_all(settings, protocol, parallel: bool = True, progress: bool = True) -> None:
    """Compute every missing or out-of-date pair, one job per query with all its missing supports
    (two single-thread processes when `parallel`). Needs the trained encoder (`train_encoder`)."""
    by_query: dict[str, list[str]] = {}
    for support_id, query_id in cache(settings).missing(protocol.pairs):
        by_query.setdefault(query_id, []).append(support_id)
    jobs = [(settings, q, supports) for q, supports in by_query.items()]
    run_jobs(compute_query, jobs, "template-matching predictions (per query)", parallel, progress)


def read(settings, support_id: str, query_id: str) -> PairPredictions:
    return cache(settings).read(support_id, query_id)


def method_points(run: PairPredictions, method: str) -> np.ndarray:
    """One method's predicted points (P, 3) of a cached pair."""
    return run["points_mm"][run["methods"].tolist().index(method)].astype(float)


def score(settings, protocol, methods=METHODS) -> pd.DataFrame:
    """Per (method, support, query, organ) metrics from the cache, methods under the paper's
    names. time_s is NaN: times come from `time_methods`."""
    rows = []
    store = cache(settings)
    for support_id, query_id in protocol.pairs:
        run = store.read(support_id, query_id)
        for method in methods:
            rows += score_points(settings, query_id, run.organ_of_point, method_points(run, method),
                                 method=TEMPLATE_LABELS[method], strategy="extreme", support=support_id)
    frame = pd.DataFrame(rows)
    frame["time_s"] = np.nan
    return frame


def template_method(name: str, patch_size, stride: int = 2, encoder=None, device=None) -> Method:
    """A template-matching baseline (gs_mse, gs_cosine, gs_ncc, fm_mse, fm_cosine) as an evaluation
    method, run now: templates of `patch_size` cut around every support landmark, the best window
    centre of the query is the prediction."""
    def predict(query, support, support_points):
        start = time.perf_counter()
        organs = list(support_points)
        points_idx = np.concatenate([support.mm_to_idx(support_points[o]) for o in organs])
        templates = cut_templates(support.volume, points_idx, patch_size)
        result = match(query.volume, templates, name, stride=stride, encoder=encoder, device=device)
        wall = time.perf_counter() - start
        sizes = np.cumsum([0, *(len(support_points[o]) for o in organs)])
        return {o: result.centre_mm[a:b] for o, a, b in zip(organs, sizes[:-1], sizes[1:])}, wall

    return predict


# -------------------------------------------------------------------------------------- timing

def _warm_up(encoder, patch_size, stride: int) -> None:
    """One tiny call of every code path (FFT, box sums, dense encoder), so that no first-call cost
    lands in the first timed query."""
    rng = np.random.default_rng(0)
    volume = Volume(rng.random(tuple(s + 4 for s in patch_size)).astype(np.float32), [1.0, 1.0, 1.0])
    templates = rng.random((2, *patch_size)).astype(np.float32)
    for method in METHODS:
        match(volume, templates, method, stride=stride, encoder=encoder)


def time_methods(settings, support_id: str, query_ids, methods=METHODS, threads=None,
                 progress: bool = False) -> pd.DataFrame:
    """Each method alone, end to end, on one support and the given queries: the per-query frame of
    `evaluate` (time_s = seconds per organ for that query), methods under the paper's names, plus
    the torch threads and the machine's load while timing."""
    import torch

    section = settings.template_matching
    encoder = load_encoder(settings)
    threads = section.timing_threads if threads is None else threads
    frames = []
    with torch_threads(threads):
        _warm_up(encoder, section.patch_size, section.stride)
        load = os.getloadavg()[0]
        for method in methods:
            predict = template_method(method, section.patch_size, stride=section.stride, encoder=encoder)
            frames.append(evaluate(settings, predict, TEMPLATE_LABELS[method], [support_id], query_ids,
                                   progress=progress))
        used = torch.get_num_threads()
    return pd.concat(frames, ignore_index=True).assign(torch_threads=used, load_average_1min=load)


def time_rprloc(settings, support_id: str, query_ids, threads=None, progress: bool = False) -> pd.DataFrame:
    """RPR-Loc (the profile's default schedule: its steps, K, ensemble and starts; all organs in one batched call) timed
    like the baselines: `rprloc_method` on the same support and queries."""
    import torch

    models = load_models(settings, ["coarse", "fine"])
    inference = settings.rprloc.inference
    predict = rprloc_method(models["coarse"], models["fine"], k=inference.k, seed=settings.seed,
                            self_calibration=inference.self_calibration,
                            self_calibration_runs=inference.self_calibration_runs, **inference.default_options)
    threads = settings.template_matching.timing_threads if threads is None else threads
    with torch_threads(threads):
        evaluate(settings, predict, RPRLOC_LABEL, [support_id], query_ids[:1], progress=False)   # warm-up
        load = os.getloadavg()[0]
        frame = evaluate(settings, predict, RPRLOC_LABEL, [support_id], query_ids, progress=progress)
        used = torch.get_num_threads()
    return frame.assign(torch_threads=used, load_average_1min=load)


def seconds_per_organ(timed: pd.DataFrame) -> pd.Series:
    """method -> mean seconds per organ per query (each query's time counted once)."""
    per_query = timed.groupby(["method", "query"], sort=False)["time_s"].first()
    return per_query.groupby(level="method", sort=False).mean()


def largest_difference_from_cache(timed: pd.DataFrame, per_query: pd.DataFrame) -> float:
    """Largest |IoU difference| (percentage points) between the methods timed alone and the shared
    cached predictions on the same (method, support, query, organ): 0 when both predict the same boxes."""
    keys = ["method", "support", "query", "organ"]
    both = timed[keys + ["iou_pct"]].merge(per_query[keys + ["iou_pct"]], on=keys, suffixes=("_alone", "_cached"))
    if len(both) != len(timed):
        raise ValueError(f"{len(timed) - len(both)} timed rows have no cached counterpart")
    return float(np.nanmax(np.abs(both.iou_pct_alone - both.iou_pct_cached))) if len(both) else float("nan")
