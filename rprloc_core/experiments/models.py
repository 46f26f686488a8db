"""The Pnets of a profile: their training settings, where their checkpoints live, training them
(two at a time, one per core), and loading them for inference.

Names: "coarse" (Mc) and "fine" (Mf) are the main models; the r sweep adds "coarse_r<r>" and
"fine_r<r>" models that start from the main model's weights with another offset range r and
train briefly (enough for the r widget of notebook 03, not for the tables).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from rprloc_core.data import dataset
from rprloc_core.evaluation.jobs import run_jobs
from rprloc_core.rprloc.config import TrainConfig
from rprloc_core.rprloc.pnet import load_pnet
from rprloc_core.rprloc.training import train_pnet

MAIN_MODELS = ("coarse", "fine")


def models_dir(settings) -> Path:
    """Checkpoints are data, never committed: data/<dataset>/models/<profile>/<name>/."""
    return dataset.dataset_root(settings) / "models" / settings.name


def train_configs(settings) -> dict[str, TrainConfig]:
    """name -> TrainConfig for every model of the profile, main models first."""
    section = settings.rprloc
    configs = {"coarse": section.coarse, "fine": section.fine}
    sweep = section.sweep
    for name, values in (("coarse", sweep.coarse_r_mm), ("fine", sweep.fine_r_mm)):
        main = configs[name]
        for r in values:
            if float(r) == float(main.r_mm):
                continue
            configs[f"{name}_r{int(r)}"] = replace(
                main, r_mm=float(r), steps=int(sweep.steps if sweep.steps is not None else main.steps),
                time_limit_s=sweep.time_limit_s if sweep.time_limit_s is not None else main.time_limit_s,
                init_from=str(models_dir(settings) / name / "best.pt"))
    return configs


def sweep_r_values(settings, kind: str) -> list[float]:
    """The r values available for `kind` ("coarse" or "fine"), main model's first."""
    configs = train_configs(settings)
    return [float(configs[kind].r_mm)] + [float(c.r_mm) for n, c in configs.items() if n.startswith(f"{kind}_r")]


def model_name(settings, kind: str, r_mm: float) -> str:
    return kind if float(r_mm) == float(train_configs(settings)[kind].r_mm) else f"{kind}_r{int(r_mm)}"


def train_one(settings, name: str, progress: bool = False) -> dict:
    """Train (or resume, or skip if finished) one model of a profile. Reads intensity volumes
    only: no label file is opened (see dataset.unlabelled_volumes)."""
    config = train_configs(settings)[name]
    train = dataset.unlabelled_volumes(settings, "train", progress=progress)
    val = dataset.unlabelled_volumes(settings, "validation", progress=progress)
    summary = train_pnet(config, train, val, models_dir(settings) / name, progress=progress)
    return {"name": name, **summary}


def train_all(settings, names=None, parallel: bool = True, progress: bool = True) -> list[dict]:
    """Train the profile's models. With `parallel`, two processes with one thread each (on this
    2-core CPU two single-thread runs beat one two-thread run, and a busy machine hurts a
    two-thread run far more). Sweep models wait for the main model they start from."""
    names = list(names or train_configs(settings))
    main = [n for n in names if n in MAIN_MODELS]
    sweep = [n for n in names if n not in main]
    summaries = []
    for stage in (main, sweep):
        if stage:
            jobs = [(settings, n, progress and (not parallel or len(stage) == 1)) for n in stage]
            summaries += run_jobs(train_one, jobs, "training Pnets", parallel=parallel, progress=False)
    return summaries


def load_models(settings, names=None, device=None) -> dict:
    """name -> PNet (the best checkpoint by validation loss), in eval mode."""
    names = list(names or train_configs(settings))
    return {name: load_pnet(models_dir(settings) / name / "best.pt", device=device) for name in names}


def models_hash(settings, names=MAIN_MODELS) -> str:
    """A short hash of the main checkpoints' bytes: part of every cached prediction's key, so
    retrained models never reuse old predictions."""
    files = [models_dir(settings) / name / "best.pt" for name in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"trained models missing ({', '.join(missing)}): run notebook 02 first")
    return _file_hash(tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files))


@lru_cache(maxsize=16)
def _file_hash(files) -> str:
    digest = hashlib.sha1()
    for path, _, _ in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:10]
