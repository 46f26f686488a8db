"""RPR-Loc on every (support, query) pair of a profile, computed once and cached on disk, so that
Tables 1 and 2 and the figures are all read from the same runs (and a long evaluation resumes).

For each pair and landmark strategy, K_max random starts per landmark go through three coarse
steps, and the fine step is taken from the first coarse step's positions with the same starts:

    stage     "start" -> "coarse1" -> "coarse2" -> "coarse3"
                               \\-> "fine"      (Mc + Mf)

The runs are independent draws, so the prediction for a smaller K is the mean of the first K runs:
Table 1's K = 1, 5, 10, 15, 20 all come from one K_max = 20 computation. The authors' variant
(average the K query embeddings, then one fine step) is run separately for Mc + Mf.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.evaluation.scoring import case_rng, organ_landmarks_mm, run_jobs, score_prediction
from rprloc_core.data.organs import HAN_ORGANS

STAGES = ("start", "coarse1", "coarse2", "coarse3", "fine")
STAGE_LABELS = {"coarse1": "Mc (one step)", "coarse2": "Mc (two steps)", "coarse3": "Mc (three steps)",
                "fine": "Mc + Mf", "fine_mean_embedding": "Mc + Mf (embedding average, authors' code)"}


def runs_dir(cfg: dict, strategy: str) -> Path:
    """data/<dataset>/runs/<profile>/rprloc-<models>/<strategy>/: one .npz per (support, query)
    pair. <models> is a hash of the two checkpoints, so retrained models never reuse old runs."""
    return dataset.dataset_root(cfg) / "runs" / cfg["name"] / f"rprloc-{models_tag(cfg)}" / strategy


def models_tag(cfg: dict) -> str:
    from rprloc_core.experiments.models import models_dir

    files = [models_dir(cfg) / name / "best.pt" for name in ("coarse", "fine")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"trained models missing ({', '.join(missing)}): run notebook 02 first")
    return _file_hash(tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files))


@lru_cache(maxsize=16)
def _file_hash(files) -> str:
    import hashlib

    digest = hashlib.sha1()
    for path, _, _ in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:10]


@lru_cache(maxsize=4)
def _models(profile: str):
    from rprloc_core.settings import load_profile
    from rprloc_core.experiments.models import load_models

    return load_models(load_profile(profile), ["coarse", "fine"])


def compute_pair(profile: str, support_id: str, query_id: str, strategy: str, organs=HAN_ORGANS) -> Path:
    """Run (or read back) one pair; returns its cache file."""
    from rprloc_core.settings import load_profile
    from rprloc_core.rprloc.inference import localize, stack_organ_landmarks

    cfg = load_profile(profile)
    out = runs_dir(cfg, strategy) / f"{support_id}__{query_id}.npz"
    if out.is_file():
        return out
    inference = cfg["rprloc"]["inference"]
    k_max, k = int(inference["k_max"]), int(inference["k"])
    models = _models(profile)
    support, query = dataset.load_case(cfg, support_id), dataset.load_case(cfg, query_id)
    wanted = [o for o in organs if o in query.labels]
    points, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(support, wanted, strategy))
    rng = case_rng(cfg["seed"], query_id, support_id)
    common = dict(organ_of_point=organ_of_point, k=k_max)
    coarse = localize(query.volume, (support.volume, points), models["coarse"], rng=rng,
                      schedule=("coarse", "coarse", "coarse"), **common)
    fine = localize(query.volume, (support.volume, points), models["coarse"], models["fine"], rng=rng,
                    schedule=("fine",), start_mm=coarse.trajectories_mm[1], **common)
    authors = localize(query.volume, (support.volume, points), models["coarse"], models["fine"],
                       rng=case_rng(cfg["seed"], query_id, support_id), schedule=("coarse", "fine"),
                       ensemble="mean_embedding", organ_of_point=organ_of_point, k=k)
    trajectories = np.concatenate([coarse.trajectories_mm, fine.trajectories_mm[1:]])   # (5, K, P, 3)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, trajectories_mm=trajectories.astype(np.float32), organ_of_point=np.array(organ_of_point),
             authors_points_mm=authors.points_mm, wall_s_coarse3=coarse.wall_s, wall_s_fine=fine.wall_s,
             wall_s_authors=authors.wall_s)
    os.replace(tmp, out)
    return out


def run_all(cfg: dict, supports, queries, strategies=("extreme", "diagonal"), parallel: bool = True,
            progress: bool = True) -> None:
    """Compute every missing pair (two single-thread processes when `parallel`)."""
    jobs = [(cfg["name"], s, q, st) for st in strategies for s in supports for q in queries
            if not (runs_dir(cfg, st) / f"{s}__{q}.npz").is_file()]
    run_jobs(compute_pair, jobs, "RPR-Loc runs", parallel, progress)


def score_runs(cfg: dict, supports, queries, strategy: str, settings) -> pd.DataFrame:
    """Per (setting, support, query, organ) metrics. `settings` is a list of (stage, K) where
    stage is one of STAGES[1:] or "fine_mean_embedding" (K is then the profile's k)."""
    rows = []
    folder = runs_dir(cfg, strategy)
    for support_id in supports:
        for query_id in queries:
            path = folder / f"{support_id}__{query_id}.npz"
            with np.load(path) as run:
                traj = run["trajectories_mm"].astype(float)
                organs = run["organ_of_point"].tolist()
                authors = run["authors_points_mm"]
            query = dataset.load_case(cfg, query_id)
            for stage, k in settings:
                if stage == "fine_mean_embedding":
                    points = authors
                else:
                    points = traj[STAGES.index(stage), :k].mean(axis=0)
                for organ in dict.fromkeys(organs):
                    sel = np.array([o == organ for o in organs])
                    rows.append({"method": STAGE_LABELS[stage], "stage": stage, "strategy": strategy, "K": k,
                                 "support": support_id, "query": query_id, "organ": organ,
                                 **score_prediction(query, organ, points[sel], strategy)})
    frame = pd.DataFrame(rows)
    frame["time_s"] = np.nan  # timing comes from the end-to-end benchmark, not from these runs
    return frame


def have_runs(cfg: dict, supports, queries, strategy: str = "extreme") -> bool:
    """Whether every pair has a cached run of the current models (False if no trained models)."""
    try:
        folder = runs_dir(cfg, strategy)
    except FileNotFoundError:
        return False
    return all((folder / f"{s}__{q}.npz").is_file() for s in supports for q in queries)
