"""One-shot localisation with trained Pnets (METHOD 3.3): move random query positions to the
positions that look like the support landmarks.

For every landmark: draw K random non-air start positions in the query; at every step of the
schedule cut a query patch at each current position on that model's grid (nearest voxel, clamped
inside the volume) and set the position to that patch centre + r * tanh(p_s - p_q), where p_s is
the embedding of the support patch centred on the landmark; clamp it to the query's extent. The
prediction is the mean of the K final positions.

The move starts from the patch centre, not from the unrounded position, because the network was
trained on offsets between patch centres (the authors' code added it to the unrounded position,
which leaves up to half a voxel of error per axis after the fine step). Patches are cut at the
nearest voxel, so a support landmark between voxels of a model's grid is seen at its nearest voxel.

Models. The engine needs from a model only: `model(patches (N, 1, pz, py, px)) -> (N, 3)` embeddings,
and the attributes `patch_size` (3 ints), `r_mm` (scalar or per-axis) and `spacing_mm` (the grid it
works on, an integer multiple of the volumes' spacing; None = the volumes' own grid). A PNet has
them; so can a test oracle.

Grids. Volumes are given on their base grid; each model's grid is built inside (`Volume.downsample`
shares the mm frame, so positions stay in the base volume's mm frame throughout).

Ensembles:
- "mean_position" (default; the paper's text): the K runs move independently through every step;
  the prediction is the mean of their final positions.
- "mean_embedding" (the authors' code): at every step, the K query embeddings are averaged before
  tanh and one move is made from the mean of the K positions: new = mean_k(c_k) + r * tanh(p_s -
  mean_k(p_q(c_k))); all runs then share that position. In the authors' code this happens at the
  first (coarse) step, after which the fine step is made once from the single collapsed position;
  later steps here reduce to exactly that, and are computed once instead of K times.

Few-shot: several (support volume, points) pairs; their support embeddings are averaged per
landmark and model. The default everywhere is one support (one-shot).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from rprloc_core.geometry.patches import (
    PatchCutter,
    as_patch_size,
    clamp_to_volume,
    cut_patch_naive,
    draw_nonair_voxels,
    require_volume_fits_patch,
    round_to_voxel,
)
from rprloc_core.geometry.volume import Volume
from rprloc_core.rprloc.config import AVERAGE, ENSEMBLES, REGROUP_STEPS, SCATTER, STARTS, STEPS

# Bump when a change alters the engine's numbers or timings: cached predictions key on it.
# 2: oneDNN convolutions, pairwise max pooling and per-model batch sizes (benchmarks/rprloc_inference.py).
# 3: batch sizes from each model's activation volume (patch voxels x base width), not voxels alone.
ENGINE_VERSION = 3
# Schedule steps (rprloc.config): the moves (MOVES), AVERAGE (every landmark's K runs -> their mean
# position) and SCATTER (-> K positions uniform within +-scatter_mm per axis of their mean, so that
# the next move is made from K patches and its own error averages out).
POOL_FACTOR = 4                # "pooled" starts: a pool of 4K (2K, 4K, 8K compared in notebook 03)
# Patches per network call when none is asked for. On a CPU the time per patch is lowest while a
# layer's activations stay in the core's cache, so the batch is sized by activation volume: patch
# voxels x base width up to about 65k voxels at width 16 (16 coarse 16^3 patches or 4 fine
# 16x32x32 ones at width 16, 8 fine ones at width 8). Past it a fine patch costs about 2x more
# (benchmarks/rprloc_inference.py prints the sweep: width-16 fine 14 ms per patch at 4 a call and
# 28 at 8 on one thread; the width-8 fine 4.3 ms at 8, 5.3 at 2 and 7.3 at 16). A GPU wants large
# batches.
CPU_BATCH_ACTIVATIONS = 65536 * 16
GPU_BATCH_SIZE = 64


@dataclass
class LocalizationResult:
    points_mm: np.ndarray                 # (P, 3) predicted landmarks, base-grid mm frame
    trajectories_mm: np.ndarray           # (steps + 1, K, P, 3): start positions, then after each step
    schedule: tuple
    ensemble: str
    wall_s: float                         # everything: grids, patch cutting, networks, averaging
    step_wall_s: tuple | None = None      # (setup: support embeddings, grids, starts; then each step)
    organ_of_point: tuple | None = None
    wall_s_per_organ: float | None = None  # wall_s / number of organs (organs are batched together)

    def points_by_organ(self) -> dict[str, np.ndarray]:
        if self.organ_of_point is None:
            raise ValueError("no organ grouping was given to the engine")
        organs = np.asarray(self.organ_of_point)
        return {o: self.points_mm[organs == o] for o in dict.fromkeys(self.organ_of_point)}


# ------------------------------------------------------------------------------ landmark helpers

def drop_missing_landmarks(points_mm, names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drop landmarks with a NaN coordinate (a missing organ or point), warning which ones.
    Returns (kept points (P', 3), boolean keep mask (P,))."""
    points = np.asarray(points_mm, dtype=float).reshape(-1, 3)
    keep = np.all(np.isfinite(points), axis=1)
    if not keep.all():
        dropped = [names[i] if names is not None else str(i) for i in np.flatnonzero(~keep)]
        warnings.warn(f"dropping {len(dropped)} missing landmark(s) with NaN coordinates: {', '.join(dropped)}",
                      stacklevel=2)
    return points[keep], keep


def stack_organ_landmarks(points_by_organ: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str], list[str]]:
    """Concatenate the landmarks of several organs for one batched engine call, skipping (with a
    warning) any organ that is missing (None) or has a NaN point: a partial box is meaningless.
    Returns (points (P, 3), organ name of every point, skipped organs)."""
    stacked, organ_of_point, skipped = [], [], []
    for organ, pts in points_by_organ.items():
        pts = None if pts is None else np.asarray(pts, dtype=float).reshape(-1, 3)
        if pts is None or len(pts) == 0 or not np.all(np.isfinite(pts)):
            skipped.append(organ)
            continue
        stacked.append(pts)
        organ_of_point += [organ] * len(pts)
    if skipped:
        warnings.warn(f"skipping organ(s) with missing landmarks: {', '.join(skipped)}", stacklevel=2)
    points = np.concatenate(stacked) if stacked else np.zeros((0, 3))
    return points, organ_of_point, skipped


# ------------------------------------------------------------------------------ models and grids

@dataclass
class _ModelSpec:
    name: str
    model: object
    patch_size: tuple
    r_mm: np.ndarray        # (3,)
    spacing_mm: np.ndarray | None


def _spec(name: str, model) -> _ModelSpec:
    missing = [a for a in ("patch_size", "r_mm") if not hasattr(model, a)]
    if missing or not callable(model):
        raise TypeError(f"the {name} model must be callable and have patch_size, r_mm and spacing_mm "
                        f"attributes (missing: {', '.join(missing) or 'callable'})")
    spacing = getattr(model, "spacing_mm", None)
    return _ModelSpec(name, model, as_patch_size(model.patch_size),
                      np.broadcast_to(np.asarray(model.r_mm, dtype=float), (3,)).copy(),
                      None if spacing is None else np.asarray(spacing, dtype=float).reshape(3))


def grid_for_model(volume: Volume, spacing_mm) -> Volume:
    """The volume on a model's grid: average-pooled by the integer factor spacing_mm / spacing."""
    if spacing_mm is None:
        return volume
    factor = np.asarray(spacing_mm, dtype=float) / volume.spacing
    rounded = np.round(factor)
    if np.any(rounded < 1) or not np.allclose(factor, rounded, rtol=1e-3, atol=1e-3):
        raise ValueError(f"the model works on a {list(spacing_mm)} mm grid, which is not an integer multiple "
                         f"of the volume spacing {list(volume.spacing)} mm; resample the volume first")
    return volume.downsample(rounded.astype(int))


def _model_device(model) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def _model_dtype(model) -> torch.dtype:
    """The dtype the model computes in (its parameters'): patches are cast to it, so a model
    converted with `.to(torch.bfloat16)` or `.double()` runs as it is. float32 for anything else.
    (bfloat16 was tried for speed and not adopted: slower end to end here; README, Speed.)"""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.dtype
    return torch.float32


def _move_to(models, device) -> None:
    """Move the torch modules among `models` to `device`, skipping those already there: Module.to
    walks and reassigns every tensor even when nothing moves (1-2 % of a default-schedule query
    with the support reused, on this project's CPU)."""
    for m in models:
        if isinstance(m, torch.nn.Module) and any(t.device != device for t in (*m.parameters(), *m.buffers())):
            m.to(device)


@contextmanager
def _eval_mode(models):
    """Eval mode and no autograd inside; afterwards every submodule is back in the mode it had.
    Only submodules in training mode are touched, so a model already in eval mode costs nothing."""
    in_training = [sub for m in models if isinstance(m, torch.nn.Module) for sub in m.modules() if sub.training]
    for sub in in_training:
        sub.training = False
    try:
        with torch.no_grad():
            yield
    finally:
        for sub in in_training:
            sub.training = True


def default_batch_size(patch_size, device, base_width: int = 16) -> int:
    """Patches per network call for a model's patch size and width on `device` (see
    CPU_BATCH_ACTIVATIONS)."""
    if torch.device(device).type != "cpu":
        return GPU_BATCH_SIZE
    return max(1, CPU_BATCH_ACTIVATIONS // (int(np.prod(as_patch_size(patch_size))) * int(base_width)))


def _embed(spec: _ModelSpec, cutter: PatchCutter, idx: np.ndarray, batch_size: int | None) -> np.ndarray:
    """Embeddings (N, 3) of the patches at voxel indices (N, 3), batch_size patches per call.

    Each distinct patch is embedded once: shared starts, runs averaged into one position, or runs
    that met on the same voxel cost one network call, not one per copy. The network sees a patch
    alone in its batch row (InstanceNorm is per sample), so the result does not depend on which
    other patches share the batch."""
    idx = np.asarray(idx, dtype=np.int64).reshape(-1, 3)
    if len(idx) == 0:
        return np.zeros((0, 3))
    unique, inverse = np.unique(idx, axis=0, return_inverse=True)
    batch_size = batch_size or default_batch_size(spec.patch_size, cutter.device,
                                                  getattr(spec.model, "base_width", 16))
    dtype = _model_dtype(spec.model)
    out = [spec.model(cutter.cut(unique[s:s + batch_size]).to(dtype)) for s in range(0, len(unique), batch_size)]
    return torch.cat(out).detach().double().cpu().numpy()[inverse.reshape(-1)]


def encode_supports(supports, models: Mapping[str, object], batch_size: int | None = None, device=None) -> dict:
    """Support embeddings {model name: (P, 3)} (few-shot: averaged over the supports).

    They depend only on the support and the model: compute them once and pass them to `localize`
    (`support_embeddings=`) for every query of that support (the widget, the CLI on a series of
    scans, the evaluation's query loop)."""
    supports = _normalise_supports(supports)
    specs = {name: _spec(name, model) for name, model in models.items() if model is not None}
    device = torch.device(device) if device is not None else _model_device(next(iter(specs.values())).model)
    out = {}
    with _eval_mode([s.model for s in specs.values()]):
        for name, spec in specs.items():
            _move_to([spec.model], device)
            embeddings = []
            for volume, points in supports:
                g = grid_for_model(volume, spec.spacing_mm)
                require_volume_fits_patch(g.shape, spec.patch_size, f"support on the {name} model's grid")
                embeddings.append(_embed(spec, PatchCutter(g.array, spec.patch_size, device),
                                         _patch_centres(g, points)[0], batch_size))
            out[name] = np.mean(embeddings, axis=0)
    return out


# ------------------------------------------------------------------------------ input checks

def _normalise_supports(supports) -> list[tuple[Volume, np.ndarray]]:
    if isinstance(supports, tuple) and len(supports) == 2 and isinstance(supports[0], Volume):
        supports = [supports]
    out = []
    for i, item in enumerate(supports):
        volume, points = item
        points = np.asarray(points, dtype=float)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"support {i}: points must have shape (P, 3), got {points.shape}")
        bad = np.flatnonzero(~np.all(np.isfinite(points), axis=1))
        if len(bad):
            raise ValueError(f"support {i}: landmark(s) {bad.tolist()} are NaN (missing organ or point); "
                             "drop them first with drop_missing_landmarks or stack_organ_landmarks")
        idx = volume.mm_to_idx(points)
        outside = np.flatnonzero(np.any((idx < -0.5) | (idx > np.asarray(volume.shape) - 0.5), axis=1))
        if len(outside):
            lo, hi = volume.extent_mm()
            raise ValueError(f"support {i}: landmark(s) {outside.tolist()} at {points[outside].round(1).tolist()} mm "
                             f"lie outside the support volume (voxel centres {lo.round(1).tolist()} .. "
                             f"{hi.round(1).tolist()} mm)")
        out.append((volume, points))
    if not out:
        raise ValueError("at least one support (volume, points) is needed")
    if len({len(p) for _, p in out}) != 1:
        raise ValueError(f"all supports must give the same landmarks; counts: {[len(p) for _, p in out]}")
    return out


def _prepare(query, supports, coarse, fine, schedule, k, ensemble, organ_of_point, device, scatter_mm=0.0, rng=None):
    if not isinstance(query, Volume):
        raise TypeError("query must be a Volume")
    supports = _normalise_supports(supports)
    schedule = tuple(schedule)
    if not schedule:
        raise ValueError("schedule needs at least one step, e.g. ('coarse',)")
    models = {"coarse": coarse, "fine": fine}
    for name in schedule:
        if name not in STEPS:
            raise ValueError(f"schedule steps must be among {STEPS}, not {name!r}")
        if name not in REGROUP_STEPS and models[name] is None:
            raise ValueError(f"the schedule {schedule} uses the {name} model, but none was given")
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, not {ensemble!r}")
    if int(k) < 1:
        raise ValueError(f"k (runs per landmark) must be >= 1, got {k}")
    n_points = len(supports[0][1])
    if organ_of_point is not None and len(organ_of_point) != n_points:
        raise ValueError(f"organ_of_point has {len(organ_of_point)} entries for {n_points} landmarks")
    if all(name in REGROUP_STEPS for name in schedule):
        raise ValueError(f"the schedule {schedule} has no network step")
    if SCATTER in schedule and not (np.isfinite(scatter_mm) and scatter_mm > 0):
        raise ValueError(f"a {SCATTER!r} step needs a finite scatter_mm > 0 (its cube's half-width, mm), "
                         f"got {scatter_mm}")
    if SCATTER in schedule and rng is None:
        raise ValueError(f"a {SCATTER!r} step draws positions: give localize an rng")
    specs = {name: _spec(name, models[name]) for name in dict.fromkeys(schedule) if name not in REGROUP_STEPS}
    device = torch.device(device) if device is not None else _model_device(next(iter(specs.values())).model)
    _move_to([spec.model for spec in specs.values()], device)
    # Model grids, built once per call; the same volume object may serve as query and support.
    grids: dict[tuple, Volume] = {}

    def grid(volume, spec, what):
        key = (id(volume), None if spec.spacing_mm is None else tuple(spec.spacing_mm))
        if key not in grids:
            grids[key] = grid_for_model(volume, spec.spacing_mm)
            require_volume_fits_patch(grids[key].shape, spec.patch_size,
                                      f"{what} on the {spec.name} model's grid")
        return grids[key]

    return supports, schedule, specs, device, grid, n_points


def _patch_centres(grid: Volume, pos_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel (N, 3) where the patch for each position (N, 3) mm is cut (nearest voxel, clamped
    inside), and that voxel's mm position. Moves start from it: the network measures the offset
    from the patch centre, not from the unrounded position."""
    idx = clamp_to_volume(round_to_voxel(grid.mm_to_idx(pos_mm)), grid.shape)
    return idx, grid.idx_to_mm(idx)


def draw_starts(query: Volume, k: int, n_points: int, rng: np.random.Generator,
                starts: str = "independent", pool_factor: int = POOL_FACTOR) -> np.ndarray:
    """Start positions (K, P, 3) mm, uniform non-air voxels of the query's base grid:
    - "independent": K for every landmark (the paper): the first step embeds K x P query patches;
    - "shared": the same K for every landmark: the first step embeds K patches;
    - "pooled": every landmark takes K distinct starts from one pool of pool_factor x K: each
      landmark's starts are still uniform draws, the first step embeds at most pool_factor x K
      patches, and landmarks share few starts (validation patients: as accurate as independent
      starts, where shared starts lose about a point of IoU; notebook 03)."""
    if starts not in STARTS:
        raise ValueError(f"starts must be one of {STARTS}, not {starts!r}")
    if int(pool_factor) < 1:
        raise ValueError(f"pool_factor must be >= 1, got {pool_factor}")
    drawn = {"independent": k * n_points, "shared": k, "pooled": int(pool_factor) * k}[starts]
    try:
        idx = draw_nonair_voxels(query.array, drawn, rng)
    except ValueError as exc:
        raise ValueError(f"query: {exc}") from exc
    positions = query.idx_to_mm(idx)
    if starts == "independent":
        return positions.reshape(k, n_points, 3)
    if starts == "shared":
        return np.broadcast_to(positions[:, None], (k, n_points, 3))
    picks = np.stack([rng.choice(len(positions), size=k, replace=False) for _ in range(n_points)], axis=1)
    return positions[picks]                                                     # (K, P, 3)


def regroup_runs(pos: np.ndarray, step: str, rng, scatter_mm: float, lo_mm, hi_mm) -> np.ndarray:
    """The K runs (K, P, 3) after an "average" step (all at their mean) or a "scatter" step (K
    positions uniform within +-scatter_mm per axis of their mean, clipped to the query's extent)."""
    mean = pos.mean(axis=0)
    if step == AVERAGE:
        return np.broadcast_to(mean, pos.shape)
    return np.clip(mean + rng.uniform(-scatter_mm, scatter_mm, size=pos.shape), lo_mm, hi_mm)


def _timing(wall_s, organ_of_point):
    if organ_of_point is None:
        return None, None
    return tuple(organ_of_point), wall_s / max(1, len(set(organ_of_point)))


# ------------------------------------------------------------------------------ the engine

def localize(query: Volume, supports, coarse, fine=None, *, rng: np.random.Generator,
             schedule: Sequence[str] = ("coarse",), k: int = 15, ensemble: str = "mean_position",
             organ_of_point: Sequence[str] | None = None, device=None, batch_size: int | None = None,
             start_mm: np.ndarray | None = None, starts: str = "independent", pool_factor: int = POOL_FACTOR,
             support_embeddings: Mapping[str, np.ndarray] | None = None,
             scatter_mm: float = 0.0) -> LocalizationResult:
    """Localise P landmarks (several organs may be concatenated) in `query`.

    supports: (support Volume, points_mm (P, 3)) or a list of them (few-shot: embeddings averaged).
    coarse, fine: models (PNet or any object following the module docstring's model interface).
    schedule: steps, e.g. ("coarse",), ("coarse", "coarse"), ("coarse", "fine"); an "average" step
    replaces the K runs of every landmark by their mean position, so the steps after it cost one
    patch per landmark: ("coarse", "average", "fine", "fine"). A "scatter" step replaces them by K
    positions drawn from `rng` uniformly within +-`scatter_mm` per axis of their mean (clipped to
    the query), so the next move starts from K patches around the mean: ("coarse", "scatter", "fine").
    Every network call is batched over runs, landmarks and organs, in chunks of `batch_size` patches
    (default: `default_batch_size` of each model); each distinct patch is embedded once.
    starts: "independent" (K uniform non-air starts per landmark), "shared" (the same K starts for
    every landmark, so the first step embeds K query patches, not K x P) or "pooled" (K distinct
    starts per landmark from one pool of 4K); see `draw_starts`.
    start_mm: (K, P, 3) start positions to use instead of drawing them (e.g. to run the fine step
    from the positions an earlier coarse call reached, so schedules share their random starts).
    support_embeddings: {model name: (P, 3)} from `encode_supports`, to skip embedding the support.
    """
    t0 = time.perf_counter()
    supports, schedule, specs, device, grid, n_points = _prepare(
        query, supports, coarse, fine, schedule, k, ensemble, organ_of_point, device, scatter_mm, rng)
    lo_mm, hi_mm = query.extent_mm()
    with _eval_mode([s.model for s in specs.values()]):
        if support_embeddings is None:
            support_embeddings = encode_supports(supports, {n: s.model for n, s in specs.items()},
                                                 batch_size, device)
        p_support = {}
        for name in specs:
            if name not in support_embeddings or np.shape(support_embeddings[name]) != (n_points, 3):
                raise ValueError(f"support_embeddings must hold a ({n_points}, 3) array for the {name} model")
            p_support[name] = np.asarray(support_embeddings[name], dtype=float)
        cutters = {}
        for name, spec in specs.items():
            qgrid = grid(query, spec, "query")
            cutters[name] = (qgrid, PatchCutter(qgrid.array, spec.patch_size, device))  # query padded once

        if start_mm is None:
            pos = draw_starts(query, k, n_points, rng, starts, pool_factor)        # (K, P, 3) mm
        else:
            pos = np.asarray(start_mm, dtype=float)
            if pos.shape != (k, n_points, 3):
                raise ValueError(f"start_mm has shape {pos.shape}, expected (K, P, 3) = {(k, n_points, 3)}")
        trajectory = [pos]
        marks = [time.perf_counter()]
        for name in schedule:
            if name in REGROUP_STEPS:
                pos = regroup_runs(pos, name, rng, scatter_mm, lo_mm, hi_mm)
                trajectory.append(pos)
                marks.append(time.perf_counter())
                continue
            spec, (qgrid, cutter) = specs[name], cutters[name]
            idx, centre_mm = _patch_centres(qgrid, pos.reshape(-1, 3))
            centre_mm = centre_mm.reshape(pos.shape)
            p_query = _embed(spec, cutter, idx, batch_size).reshape(pos.shape)
            if ensemble == "mean_position":
                pos = centre_mm + spec.r_mm * np.tanh(p_support[name][None] - p_query)
            else:
                moved = centre_mm.mean(axis=0) + spec.r_mm * np.tanh(p_support[name] - p_query.mean(axis=0))
                pos = np.broadcast_to(moved, pos.shape)
            pos = np.clip(pos, lo_mm, hi_mm)
            trajectory.append(pos)
            marks.append(time.perf_counter())
    points = pos.mean(axis=0)
    wall = time.perf_counter() - t0
    organs, per_organ = _timing(wall, organ_of_point)
    steps = (marks[0] - t0, *np.diff(marks).tolist())
    return LocalizationResult(points, np.stack(trajectory), schedule, ensemble, wall, steps, organs, per_organ)


def remaining_moves_mm(query: Volume, points_mm, model, support_embedding, batch_size: int | None = None,
                       device=None) -> np.ndarray:
    """The move (P, 3) mm that `model` would still make from each answer point: the patch centre's
    position + r tanh(p_s - p_q) - the point, not clamped to the query. At a landmark the networks
    recognise, a fine model asks for a move of a few millimetres; a long one says they do not agree
    that the landmark is here (the organ may be missing from the scan, or the answer wrong).
    `support_embedding`: (P, 3), that model's support embeddings (`encode_supports`)."""
    points_mm = np.asarray(points_mm, dtype=float).reshape(-1, 3)
    p_support = np.asarray(support_embedding, dtype=float)
    if p_support.shape != points_mm.shape:
        raise ValueError(f"support_embedding has shape {p_support.shape}, the points {points_mm.shape}")
    spec = _spec("checking", model)
    device = torch.device(device) if device is not None else _model_device(model)
    _move_to([model], device)
    with _eval_mode([model]):
        qgrid = grid_for_model(query, spec.spacing_mm)
        require_volume_fits_patch(qgrid.shape, spec.patch_size, "query on the checking model's grid")
        idx, centre_mm = _patch_centres(qgrid, points_mm)
        p_query = _embed(spec, PatchCutter(qgrid.array, spec.patch_size, device), idx, batch_size)
    return centre_mm + spec.r_mm * np.tanh(p_support - p_query) - points_mm


def localize_naive(query: Volume, supports, coarse, fine=None, *, rng: np.random.Generator,
                   schedule: Sequence[str] = ("coarse",), k: int = 15, ensemble: str = "mean_position",
                   organ_of_point: Sequence[str] | None = None, device=None,
                   starts: str = "independent", scatter_mm: float = 0.0) -> LocalizationResult:
    """The same algorithm with Python loops: per landmark, per run, one network call per patch
    (no batching, no reuse of a patch embedded before). Only the benchmark (and a consistency test)
    uses it, to measure what batching and reuse buy."""
    t0 = time.perf_counter()
    supports, schedule, specs, device, grid, n_points = _prepare(
        query, supports, coarse, fine, schedule, k, ensemble, organ_of_point, device, scatter_mm, rng)
    lo_mm, hi_mm = query.extent_mm()

    def embed_one(spec, grid_volume, pos_mm):
        """(embedding (3,), mm position of the patch centre) of one patch."""
        idx, centre_mm = _patch_centres(grid_volume, np.asarray(pos_mm).reshape(1, 3))
        patch = torch.from_numpy(cut_patch_naive(grid_volume.array, idx[0], spec.patch_size))[None, None]
        patch = patch.to(device=device, dtype=_model_dtype(spec.model))
        return spec.model(patch)[0].double().cpu().numpy(), centre_mm[0]

    with _eval_mode([s.model for s in specs.values()]):
        p_support = {}
        for name, spec in specs.items():
            p_support[name] = np.zeros((n_points, 3))
            for volume, points in supports:
                g = grid(volume, spec, "support")
                for p in range(n_points):
                    p_support[name][p] += embed_one(spec, g, points[p])[0] / len(supports)
        query_grids = {name: grid(query, spec, "query") for name, spec in specs.items()}

        start = draw_starts(query, k, n_points, rng, starts)
        # the scatter steps' draws, in the order the batched engine takes them from rng
        scatter = {step: rng.uniform(-scatter_mm, scatter_mm, size=(k, n_points, 3))
                   for step, name in enumerate(schedule, start=1) if name == SCATTER}
        trajectory = np.zeros((len(schedule) + 1, k, n_points, 3))
        trajectory[0] = start
        for p in range(n_points):
            runs = [start[r, p].copy() for r in range(k)]
            for step, name in enumerate(schedule, start=1):
                if name == AVERAGE:
                    runs = [np.mean(runs, axis=0)] * k
                    trajectory[step, :, p] = runs
                    continue
                if name == SCATTER:
                    mean = np.mean(runs, axis=0)
                    runs = [np.clip(mean + scatter[step][r, p], lo_mm, hi_mm) for r in range(k)]
                    trajectory[step, :, p] = runs
                    continue
                spec, qgrid = specs[name], query_grids[name]
                if ensemble == "mean_position":
                    for r in range(k):
                        p_q, centre_mm = embed_one(spec, qgrid, runs[r])
                        runs[r] = np.clip(centre_mm + spec.r_mm * np.tanh(p_support[name][p] - p_q), lo_mm, hi_mm)
                else:
                    embedded = [embed_one(spec, qgrid, c) for c in runs]
                    p_q = np.mean([e for e, _ in embedded], axis=0)
                    moved = np.mean([c for _, c in embedded], axis=0) + spec.r_mm * np.tanh(p_support[name][p] - p_q)
                    runs = [np.clip(moved, lo_mm, hi_mm)] * k
                trajectory[step, :, p] = runs
    points = trajectory[-1].mean(axis=0)
    wall = time.perf_counter() - t0
    organs, per_organ = _timing(wall, organ_of_point)
    return LocalizationResult(points, trajectory, schedule, ensemble, wall, None, organs, per_organ)
