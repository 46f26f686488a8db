"""CC2D (`rprloc_core.cc2d`) in the project's protocol: trained here, released with a manifest, its
predictions cached and scored like RPR-Loc's, on the same supports and queries.

    python -m rprloc_core.experiments.cc2d_predictions --profile demo            # train (resumable)
    python -m rprloc_core.experiments.cc2d_predictions --profile demo --publish [--overwrite]

Two methods come out of it:
    CC2D-SSL (one-shot)      stage 1: the multi-scale embeddings, learnt from the training split's
                             intensity volumes (no mask is read), search each support's landmarks
                             (the six extreme points of each organ) in the query
    CC2D (one-shot, TPL)     stage 2: a heatmap + offset detector trained on stage 1's answers for
                             the training volumes, with one template

Everything runs on the working grid pooled `cc2d.downsample` times (6 x 4 x 4 mm in demo); the
predicted voxels go back to the case's mm frame through the pooled volume's own frame.

The TPL detector learns the landmarks of its template: the first support of the one-shot protocol
(a validation patient, its masks read for its landmarks, as any support's are). It answers for that
template only, so its rows carry that one support; it is not run for the other supports, because
it would answer with the template's landmarks whatever the support shows (one detector per support
would cost a TPL training per support). Its "SD over supports" is therefore empty, like the
detector's.

Files: stage 1 in data/.../models/<profile>/cc2d/ssl/, stage 2 in cc2d/tpl-<key>/, where the key
names what its pseudo-labels came from (stage 1's checkpoint, the template, the patients): a
retrained stage 1 or another template starts a new stage-2 folder instead of resuming one made
with other targets.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.errors import DataError
from rprloc_core.evaluation.jobs import run_jobs
from rprloc_core.evaluation.predictions import PredictionCache
from rprloc_core.evaluation.protocol import landmark_names, one_shot_protocol, organ_landmarks_mm, true_landmarks
from rprloc_core.evaluation.scoring import score_points, summarize
from rprloc_core.experiments import models, training_cli, weights
from rprloc_core.geometry.volume import Volume

NAME = "cc2d"
STAGES = ("ssl", "tpl")
SSL_LABEL = "CC2D-SSL (one-shot)"
TPL_LABEL = "CC2D (one-shot, TPL)"
LABELS = {"ssl": SSL_LABEL, "tpl": TPL_LABEL}
# Part of every cached prediction's key: raise it when the way predictions are made changes.
PREDICTION_VERSION = 2


# ----------------------------------------------------------------------------------------- grid

def pooled(settings, volume: Volume) -> Volume:
    """The volume on CC2D's grid; its frame is the case's, so its idx_to_mm gives case mm."""
    return volume.downsample(settings.cc2d.downsample)


def to_index(grid: Volume, points_mm) -> np.ndarray:
    """Positions (P, 3) mm -> fractional voxels of `grid`, clipped into it (a support's extreme
    point may lie half a pooled voxel beyond the outer voxel centres)."""
    return np.clip(grid.mm_to_idx(points_mm), 0, np.asarray(grid.shape) - 1)


def to_case_mm(grid: Volume, case_volume: Volume, idx) -> np.ndarray:
    """Voxels (P, 3) of the pooled grid -> mm in the case's frame, clipped to the case's voxel
    extent (a pooled voxel's centre at the high end can lie beyond the last full-grid voxel)."""
    low, high = case_volume.extent_mm()
    return np.clip(grid.idx_to_mm(idx), low, high)


def support_points(settings, case) -> np.ndarray:
    """The six extreme points of each organ, stacked (24, 3) mm in the case's frame (organ order
    HAN_ORGANS, points as `landmark_names`)."""
    points = organ_landmarks_mm(case, HAN_ORGANS, "extreme")
    missing = [o for o in HAN_ORGANS if o not in points]
    if missing:
        raise DataError(None, f"{case.case_id} lacks {', '.join(missing)}: a CC2D template needs every organ")
    return np.concatenate([points[o] for o in HAN_ORGANS])


def organ_of_point() -> list[str]:
    return [name.split()[0] for name in landmark_names()]


# ------------------------------------------------------------------------------------- material

def split_ids(settings, split: str) -> list[str]:
    """The patients of a split CC2D trains or validates on (the first n_train / n_validation)."""
    limit = settings.cc2d.n_train if split == "train" else settings.cc2d.n_validation
    return dataset.case_ids(settings, split)[:limit]


def material(settings, split: str) -> tuple:
    """((case id, pooled intensity array), ...) of a split: volumes only, no mask is read (stage 1
    is self-supervised; stage 2 learns from stage 1's answers). Loaded once per process."""
    return _material(settings, split, str(dataset.cases_root(settings)))


@lru_cache(maxsize=2)
def _material(settings, split: str, cases_root: str) -> tuple:
    ids = split_ids(settings, split)
    return tuple((case_id, pooled(settings, dataset.load_volume(settings, case_id)).array)
                 for case_id in tqdm(ids, desc=f"CC2D: {split} volumes", leave=False))


def arrays(pairs) -> list[np.ndarray]:
    return [array for _, array in pairs]


def template_id(settings) -> str:
    """The TPL template: the release's, or (training here) the one-shot protocol's first support."""
    if models.uses_release(settings):
        return weights.read_manifest(release_dir(settings))["template"]
    return one_shot_protocol(settings).supports[0]


def template(settings, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(pooled intensity array, landmarks (24, 3) in its voxels) of a labelled case."""
    case = dataset.load_case(settings, case_id)
    grid = pooled(settings, case.volume)
    return grid.array, to_index(grid, support_points(settings, case))


# ------------------------------------------------------------------------------------- training

def trained_dir(settings) -> Path:
    return models.models_dir(settings) / NAME


def release_dir(settings) -> Path:
    if not settings.cc2d.release:
        raise DataError(None, f"profile {settings.name!r} names no CC2D release (cc2d.release)")
    return weights.release_dir(settings.cc2d.release)


def saved_checkpoint(path: Path) -> dict | None:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None


def finished(folder: Path, config) -> bool:
    """Whether the run in `folder` reached config.steps with these settings (a run with other
    settings is not finished: training it again refuses, naming what changed)."""
    from rprloc_core.cc2d.config import RESUMABLE_CHANGES

    saved = saved_checkpoint(folder / "last.pt")
    if saved is None or saved["step"] < config.steps:
        return False
    fixed = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES}
    return all(saved["config"].get(k) == v for k, v in fixed.items())


def tpl_key(settings) -> str:
    """What stage 2's targets depend on: stage 1's checkpoint, the template, the grid, the patients."""
    encoder = trained_dir(settings) / "ssl" / "best.pt"
    if not encoder.is_file():
        raise DataError(encoder, "CC2D stage 1 has no checkpoint yet: train it first (python -m "
                                 "rprloc_core.experiments.cc2d_predictions)")
    text = json.dumps({"encoder": weights.file_sha256(encoder),
                       "template": one_shot_protocol(settings).supports[0], "downsample": settings.cc2d.downsample,
                       "train": split_ids(settings, "train"), "validation": split_ids(settings, "validation")})
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def tpl_dir(settings) -> Path:
    return trained_dir(settings) / f"tpl-{tpl_key(settings)}"


def train_stage1(settings, progress: bool = True) -> dict:
    """Train (or resume) the embeddings in cc2d/ssl/ (skipped when finished)."""
    from rprloc_core.cc2d.training import train_ssl

    folder, config = trained_dir(settings) / "ssl", settings.cc2d.train
    if finished(folder, config):
        return {"name": "ssl", "steps": saved_checkpoint(folder / "last.pt")["step"], "stopped": "finished earlier"}
    validation = arrays(material(settings, "validation")) or None
    summary = train_ssl(arrays(material(settings, "train")), config, folder, progress=progress, validation=validation)
    return {"name": "ssl", **summary}


def pseudo_labels(settings, progress: bool = True) -> dict:
    """Stage 1's answers (N, 24, 3) voxels for the training and validation volumes, with the
    template they were searched for: computed once per stage-2 folder (pseudo_labels.npz)."""
    from rprloc_core.cc2d.inference import localize_with_vectors, template_vectors
    from rprloc_core.cc2d.training import load_encoder

    path = tpl_dir(settings) / "pseudo_labels.npz"
    if path.is_file():
        with np.load(path) as saved:
            return {k: saved[k] for k in saved.files}
    support_id = one_shot_protocol(settings).supports[0]
    image, points = template(settings, support_id)
    encoder, _ = load_encoder(trained_dir(settings) / "ssl" / "best.pt", _device())
    vectors = template_vectors(encoder, image, points)
    out = {"template": np.array(support_id), "template_idx": points}
    for split in ("train", "validation"):
        found = [localize_with_vectors(encoder, array, vectors)
                 for array in tqdm(arrays(material(settings, split)), desc=f"CC2D pseudo-labels ({split})",
                                   disable=not progress, leave=False)]
        out[split] = np.asarray(found, dtype=np.int64).reshape(len(found), len(points), 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out


def train_stage2(settings, progress: bool = True) -> dict:
    """Train (or resume) the TPL detector on stage 1's pseudo-labels, in cc2d/tpl-<key>/."""
    from rprloc_core.cc2d.tpl import train_tpl

    folder, config = tpl_dir(settings), settings.cc2d.tpl
    if finished(folder, config):
        return {"name": "tpl", "steps": saved_checkpoint(folder / "last.pt")["step"], "stopped": "finished earlier"}
    labels = pseudo_labels(settings, progress)
    validation = (arrays(material(settings, "validation")), list(labels["validation"])) \
        if len(labels["validation"]) else None
    summary = train_tpl(arrays(material(settings, "train")), list(labels["train"]), config, folder,
                        progress=progress, validation=validation, top_k=settings.cc2d.top_k)
    return {"name": "tpl", "template": str(labels["template"]), **summary}


def train(settings, parallel: bool = False, progress: bool = True) -> list[dict]:
    """Train or resume stage 1, then (once it has all its steps, and with cc2d.use_tpl) stage 2.
    One process: stage 2 needs stage 1's result. Never touches a release."""
    summaries = [train_stage1(settings, progress)]
    if not settings.cc2d.use_tpl:
        return summaries
    if not finished(trained_dir(settings) / "ssl", settings.cc2d.train):
        return summaries + [{"name": "tpl", "stopped": "waits for stage 1 to finish (run again to resume)"}]
    return summaries + [train_stage2(settings, progress)]


def stages(settings) -> tuple[str, ...]:
    return STAGES if settings.cc2d.use_tpl else STAGES[:1]


def model_file(settings, stage: str) -> Path:
    """The checkpoint of a stage the profile's results use: the release's (sha256 checked) or the
    best one trained here."""
    if models.uses_release(settings):
        folder = release_dir(settings)
        released = weights.read_manifest(folder)["cc2d"]["downsample"]
        if released != settings.cc2d.downsample:
            raise DataError(folder, f"the CC2D release works on the grid pooled {released}x, the profile asks "
                                    f"for {settings.cc2d.downsample}x (cc2d.downsample)")
        return weights.released_file(folder, stage)
    path = (trained_dir(settings) / "ssl" if stage == "ssl" else tpl_dir(settings)) / "best.pt"
    if not path.is_file():
        raise DataError(path, "no trained CC2D model: train it first (python -m rprloc_core.experiments."
                              "cc2d_predictions)")
    return path


def ensure_models(settings, progress: bool = True) -> dict[str, Path]:
    """stage -> checkpoint of every stage the profile uses: released, or trained here (trained or
    resumed first)."""
    if not models.uses_release(settings):
        train(settings, progress=progress)
    return {stage: model_file(settings, stage) for stage in stages(settings)}


def history(settings) -> pd.DataFrame:
    """Both stages' validation history: one row per check (stage, step, losses, error in voxels)."""
    rows = []
    for stage in stages(settings):
        if models.uses_release(settings):
            entries = weights.read_manifest(release_dir(settings))["models"][stage]["history"]
        elif stage == "tpl" and not (trained_dir(settings) / "ssl" / "best.pt").is_file():
            entries = []                     # stage 2 cannot have started
        else:
            folder = trained_dir(settings) / "ssl" if stage == "ssl" else tpl_dir(settings)
            saved = saved_checkpoint(folder / "last.pt")
            entries = saved["history"] if saved else []
        rows += [{"stage": stage, **entry} for entry in entries]
    return pd.DataFrame(rows)


def ablation_table_path(settings) -> Path:
    """The training ablation's table (experiments.cc2d_ablation writes it; `publish` releases it)."""
    return trained_dir(settings) / "ablation" / "training_ablation.csv"


def training_ablation(settings) -> pd.DataFrame | None:
    """The training ablation's table: the release's (its manifest) or the one made here; None when
    there is none."""
    if models.uses_release(settings):
        rows = weights.read_manifest(release_dir(settings)).get("training_ablation")
        return pd.DataFrame(rows) if rows else None
    path = ablation_table_path(settings)
    return pd.read_csv(path) if path.is_file() else None


# ------------------------------------------------------------------------------------- release

def _stage_entry(settings, stage: str, folder: Path, staging: Path, extra: dict) -> dict:
    """A stage's release entry: its best checkpoint (weights only, plus `extra`) and a summary."""
    from rprloc_core.checkpoints import atomic_torch_save, calls_so_far

    config = settings.cc2d.train if stage == "ssl" else settings.cc2d.tpl
    last, best = saved_checkpoint(folder / "last.pt"), saved_checkpoint(folder / "best.pt")
    if last is None or best is None or last["step"] < config.steps:
        raise DataError(folder, f"CC2D {stage} is not trained to its {config.steps} steps: train or resume it "
                                "before publishing")
    payload = {key: best[key] for key in ("model", "net_config", "config", "step", "val_loss")} | extra
    atomic_torch_save(payload, staging / f"{stage}.pt")
    provenance = models.provenance_entry(folder)
    summary = {"steps": int(last["step"]), "best_step": int(best["step"]), "best_val_loss": best["val_loss"],
               "train_time_s": float(last["train_time_s"]),
               "parameters": int(sum(v.numel() for v in best["model"].values())),
               "resumed": models.paused_and_resumed(calls_so_far(last), provenance)}
    return {"source": staging / f"{stage}.pt", "kind": f"cc2d-{stage}", "architecture": best["net_config"],
            "training": last["config"], "summary": summary, "history": last["history"], **provenance}


def publish(settings, overwrite: bool = False) -> dict:
    """Copy the stages trained here into `cc2d.release` with a manifest; an existing release is
    replaced only with `overwrite`."""
    staging, grid = Path(tempfile.mkdtemp()), {"downsample": settings.cc2d.downsample}
    entries = {"ssl": _stage_entry(settings, "ssl", trained_dir(settings) / "ssl", staging, {"cc2d": grid})}
    support_id = one_shot_protocol(settings).supports[0]
    if settings.cc2d.use_tpl:
        case = dataset.load_case(settings, support_id)
        extra = {"cc2d": grid | {"template": support_id, "landmarks": landmark_names(),
                                 "template_landmarks_mm": support_points(settings, case).tolist()}}
        entries["tpl"] = _stage_entry(settings, "tpl", tpl_dir(settings), staging, extra) | {"template": support_id}
    spacing = np.asarray(settings.preprocess.spacing_zyx, float) * settings.cc2d.downsample
    about = {"profile": settings.name, "dataset": settings.data.dataset,
             "preprocess_spacing_zyx_mm": list(settings.preprocess.spacing_zyx),
             "cc2d": grid | {"spacing_zyx_mm": spacing.tolist()},
             "template": support_id if settings.cc2d.use_tpl else None,
             "data_split": {"labels_used": "stage 1: none (intensity volumes only); stage 2: the organ masks of "
                                           "one template (the first one-shot support, a validation patient)",
                            "train": split_ids(settings, "train"), "validation": split_ids(settings, "validation")},
             "cc2d_settings": {k: v for k, v in settings.to_dict()["cc2d"].items() if k != "release"}}
    if ablation_table_path(settings).is_file():
        about["training_ablation"] = pd.read_csv(ablation_table_path(settings)).to_dict("records")
    return weights.write_release(release_dir(settings), entries, about, overwrite=overwrite)


# ----------------------------------------------------------------------------------- inference

def _device():
    from rprloc_core.training_loop import resolve_device

    return resolve_device(None)


@lru_cache(maxsize=8)
def _load(path: str, sha: str, stage: str):
    if stage == "ssl":
        from rprloc_core.cc2d.training import load_encoder

        return load_encoder(path, _device())[0]
    from rprloc_core.cc2d.tpl import load_detector

    return load_detector(path, _device())[0]


def load(settings, stage: str):
    """The network of a stage (eval mode), loaded once per process and file version."""
    path = model_file(settings, stage)
    return _load(str(path), weights.file_sha256(path), stage)


@lru_cache(maxsize=16)
def support_vectors(settings, support_id: str, sha: str):
    """A support's 24 landmark embeddings per scale: computed once per process and support, reused
    for all its queries (not part of a pair's time, as RPR-Loc's support embeddings are not)."""
    from rprloc_core.cc2d.inference import template_vectors

    image, points = template(settings, support_id)
    return template_vectors(load(settings, "ssl"), image, points)


def cache(settings, stage: str) -> PredictionCache:
    """data/<dataset>/predictions/<profile>/cc2d-<stage>/, keyed by the checkpoint's sha256 and the
    settings the predictions depend on."""
    key = {"method": f"{NAME}-{stage}", "model_sha256": weights.file_sha256(model_file(settings, stage)),
           "downsample": settings.cc2d.downsample, "strategy": "extreme", "version": PREDICTION_VERSION}
    if stage == "tpl":
        key |= {"top_k": settings.cc2d.top_k, "template": template_id(settings)}
    return PredictionCache.for_method(settings, f"{NAME}-{stage}", key)


def pairs(settings, stage: str, protocol=None) -> list[tuple[str, str]]:
    """The (support, query) pairs a stage answers: every pair of the protocol for CC2D-SSL; the
    template with every query for CC2D (TPL)."""
    protocol = protocol or one_shot_protocol(settings)
    if stage == "ssl":
        return protocol.pairs
    return [(template_id(settings), q) for q in protocol.queries]


def scale_subsets(settings) -> dict[str, tuple[int, ...]]:
    """The scale ablation (the paper's Table 3): label -> scales (0 = finest) multiplied. All
    scales, then each one left out; labels give the cell size of the scale left out."""
    n = load(settings, "ssl").n_scales
    spacing = np.asarray(settings.preprocess.spacing_zyx, float) * settings.cc2d.downsample
    subsets = {"all scales": tuple(range(n))}
    for s in range(n):
        cell = " x ".join(f"{v:g}" for v in spacing * 2 ** s)
        subsets[f"without scale {s + 1} ({cell} mm cells)"] = tuple(i for i in range(n) if i != s)
    return subsets


def predict_ssl(settings, support_id: str, query_id: str) -> tuple[np.ndarray, float, np.ndarray]:
    """The support's 24 landmarks found in the query by stage 1: (mm (24, 3), wall seconds from the
    full-grid query to mm, the support's embeddings already made; the scale ablation's answers
    (n_subsets, 24, 3) mm from the same query maps, not timed)."""
    from rprloc_core.cc2d.inference import embed, locate, locate_subsets

    model = load(settings, "ssl")
    vectors = support_vectors(settings, support_id, weights.file_sha256(model_file(settings, "ssl")))
    volume = dataset.load_case(settings, query_id).volume
    start = time.perf_counter()
    grid = pooled(settings, volume)
    maps = embed(model, grid.array)
    points = to_case_mm(grid, volume, locate(maps, vectors, grid.shape))
    wall = time.perf_counter() - start
    ablation = locate_subsets(maps, vectors, grid.shape, list(scale_subsets(settings).values()))
    return points, wall, np.stack([to_case_mm(grid, volume, found) for found in ablation])


def predict_tpl_query(settings, query_id: str) -> tuple[np.ndarray, float]:
    """The template's 24 landmarks in the query by the TPL detector: (mm (24, 3), wall seconds)."""
    from rprloc_core.cc2d.tpl import predict_tpl

    model = load(settings, "tpl")
    volume = dataset.load_case(settings, query_id).volume
    start = time.perf_counter()
    grid = pooled(settings, volume)
    points = to_case_mm(grid, volume, predict_tpl(model, grid.array, settings.cc2d.top_k))
    return points, time.perf_counter() - start


def predict_query(settings, query_id: str, supports) -> None:
    """Cache one query's missing predictions: CC2D-SSL for every support, CC2D for the template."""
    store = cache(settings, "ssl")
    for support_id in supports:
        if not store.has(support_id, query_id):
            points, wall, ablation = predict_ssl(settings, support_id, query_id)
            store.write(support_id, query_id, organ_of_point(), points_mm=points, wall_s=np.array(wall),
                        ablation_points_mm=ablation)
    if settings.cc2d.use_tpl:
        store = cache(settings, "tpl")
        if not store.has(template_id(settings), query_id):
            points, wall = predict_tpl_query(settings, query_id)
            store.write(template_id(settings), query_id, organ_of_point(), points_mm=points, wall_s=np.array(wall))


def predict_all(settings, protocol=None, parallel: bool = True, progress: bool = True) -> None:
    """Cache every pair not cached yet, one job per query (two single-thread workers when `parallel`)."""
    protocol = protocol or one_shot_protocol(settings)
    missing = {q for _, q in cache(settings, "ssl").missing(pairs(settings, "ssl", protocol))}
    if settings.cc2d.use_tpl:
        missing |= {q for _, q in cache(settings, "tpl").missing(pairs(settings, "tpl", protocol))}
    jobs = [(settings, q, protocol.supports) for q in protocol.queries if q in missing]
    if jobs:
        run_jobs(predict_query, jobs, "CC2D queries", parallel=parallel, progress=progress)


def similarity_example(settings, support_id: str, query_id: str, landmark: str) -> dict:
    """What the similarity-maps figure draws for one of the support's landmarks in a query, all on
    the pooled grids: the support's image and the landmark (voxels), the query's image, the clipped
    upsampled cosine map of every scale (n_scales, *shape; finest first), the prediction and the
    query's true landmark (voxels)."""
    from rprloc_core.cc2d.inference import localize_landmarks

    index = landmark_names().index(landmark)
    support_image, support_idx = template(settings, support_id)
    query = dataset.load_case(settings, query_id)
    grid = pooled(settings, query.volume)
    found, maps = localize_landmarks(load(settings, "ssl"), grid.array, support_image, support_idx[index:index + 1],
                                     return_maps_for=0)
    truth = true_landmarks(settings, query_id).get(landmark)
    return {"landmark": landmark, "support": support_id, "query": query_id, "support_image": support_image,
            "support_idx": support_idx[index], "query_image": grid.array, "maps": maps, "found_idx": found[0],
            "true_idx": None if truth is None else to_index(grid, truth[None])[0],
            "spacing": grid.spacing, "error_mm": None if truth is None else
            float(np.linalg.norm(to_case_mm(grid, query.volume, found)[0] - truth))}


# ------------------------------------------------------------------------------------- scoring

def stage_runs(settings, protocol=None):
    """(method label, support, query, organ of each point, points (24, 3) mm, seconds per organ) of
    every cached pair of every stage."""
    for stage in stages(settings):
        store = cache(settings, stage)
        for support_id, query_id in pairs(settings, stage, protocol):
            run = store.read(support_id, query_id)
            yield (LABELS[stage], support_id, query_id, np.asarray(run.organ_of_point), run["points_mm"],
                   float(run["wall_s"]) / len(run.organs))


def ablation_runs(settings, protocol=None):
    """The scale ablation's answers as `stage_runs` does (label: the subset's; no time)."""
    labels, store = list(scale_subsets(settings)), cache(settings, "ssl")
    for support_id, query_id in pairs(settings, "ssl", protocol):
        run = store.read(support_id, query_id)
        for label, points in zip(labels, run["ablation_points_mm"]):
            yield label, support_id, query_id, np.asarray(run.organ_of_point), points, np.nan


def score(settings, protocol=None, runs=None) -> pd.DataFrame:
    """Per (method, support, query, organ) box metrics of the predicted extreme points, like
    RPR-Loc's rows; time_s = the pair's wall time / the organs predicted (four). `runs`: what to
    score (default: `stage_runs`)."""
    rows = []
    runs = stage_runs(settings, protocol) if runs is None else runs
    for label, support_id, query_id, organs, points, time_s in runs:
        case = dataset.load_case(settings, query_id)
        keep = np.array([organ in case.labels for organ in organs])
        if keep.any():
            rows += score_points(settings, query_id, list(organs[keep]), points[keep], method=label,
                                 strategy="extreme", support=support_id, time_s=time_s)
    return pd.DataFrame(rows)


def landmark_errors(settings, protocol=None, runs=None) -> pd.DataFrame:
    """One row per (method, support, query, landmark) whose organ the query has: the Euclidean
    error in mm between the predicted and the query's true extreme point."""
    rows, names, truths = [], landmark_names(), {}
    runs = stage_runs(settings, protocol) if runs is None else runs
    for label, support_id, query_id, _, points, _ in runs:
        if query_id not in truths:                 # the ablation reads each query six times per support
            truths[query_id] = true_landmarks(settings, query_id)
        truth = truths[query_id]
        rows += [{"method": label, "support": support_id, "query": query_id, "landmark": name,
                  "error_mm": float(np.linalg.norm(point - truth[name]))}
                 for name, point in zip(names, points) if name in truth]
    return pd.DataFrame(rows)


def scale_ablation(settings, protocol=None) -> pd.DataFrame:
    """The paper's Table 3 on OpenKBP: per subset of scales, box IoU and AWD (averaged as the
    methods table's "Mean" rows: per organ over the queries, over the organs, over the supports)
    and the landmark MRE / SDR, from the answers cached with CC2D-SSL's."""
    runs = list(ablation_runs(settings, protocol))                 # read the cache once for both scores
    means = summarize(score(settings, runs=runs), keys=("method",), organs=HAN_ORGANS)
    table = means[means.organ == "Mean"].set_index("method")[["iou_pct", "awd_mm"]]
    errors = landmark_errors(settings, runs=runs)
    table = table.join(landmark_table(errors, settings.cc2d.sdr_radii_mm).set_index("method"))
    return table.rename_axis("scales").reset_index()


def template_comparison(settings, protocol=None) -> pd.DataFrame:
    """CC2D-SSL against CC2D (TPL) with the same template (TPL's, the first support): box IoU and
    AWD (averaged as the methods table's "Mean" rows) and landmark MRE / SDR, so that stage 2 is
    compared with stage 1's answers for the support it learned from."""
    template = template_id(settings)
    runs = [run for run in stage_runs(settings, protocol) if run[1] == template]
    means = summarize(score(settings, runs=runs), keys=("method",), organs=HAN_ORGANS)
    table = means[means.organ == "Mean"].set_index("method")[["iou_pct", "awd_mm"]]
    errors = landmark_errors(settings, runs=runs)
    table = table.join(landmark_table(errors, settings.cc2d.sdr_radii_mm).set_index("method"))
    return table.rename_axis("method").reset_index().assign(template=template)


def sdr_column(radius_mm: float) -> str:
    """'sdr_5mm_pct', 'sdr_2_5mm_pct': the reference tables' naming."""
    return f"sdr_{f'{float(radius_mm):g}'.replace('.', '_')}mm_pct"


def landmark_table(errors: pd.DataFrame, radii_mm) -> pd.DataFrame:
    """Per method: mean radial error (mm), its SD, and the successful detection rate (% of
    landmarks within each radius), the paper's landmark metrics."""
    grouped = errors.groupby("method", sort=False).error_mm
    table = grouped.agg(n_landmarks="size", mre_mm="mean", mre_sd_mm=lambda e: e.std(ddof=0))
    for radius in radii_mm:
        table[sdr_column(radius)] = grouped.apply(lambda e, r=radius: 100.0 * float((e <= r).mean()))
    return table.reset_index()


def main(argv=None) -> int:
    def published(settings, overwrite):
        publish(settings, overwrite=overwrite)
        return [f"published CC2D to {release_dir(settings)}"]

    return training_cli.run(argv, "python -m rprloc_core.experiments.cc2d_predictions", __doc__,
                            lambda settings, parallel: train(settings), published, parallel_option=False)


if __name__ == "__main__":
    sys.exit(main())
