"""The trained models of a profile (its Pnets and the patch auto-encoder of the FM baselines):
their training settings, where their checkpoints live (the committed release, or the data folder
when the profile trains), training them (two at a time, one per core), publishing a release, and
loading them.

Names: "coarse" (Mc) and "fine" (Mf) are the main models; the r sweep adds "coarse_r<r>" and
"fine_r<r>" models that start from the main model's weights with another offset range r and
train briefly (enough for the r widget of notebook 03, not for the tables). A profile may add
"fine_teacher", a Pnet that Mf is distilled from: Mf's `teacher` and `init_from` name it, and it
is trained before Mf.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from rprloc_core.checkpoints import atomic_torch_save as torch_save
from rprloc_core.data import dataset
from rprloc_core.errors import DataError
from rprloc_core.evaluation.jobs import run_jobs
from rprloc_core.experiments import weights
from rprloc_core.rprloc.config import TrainConfig
from rprloc_core.rprloc.inference import ENGINE_VERSION
from rprloc_core.rprloc.pnet import load_pnet, read_checkpoint
from rprloc_core.rprloc.training import load_history, train_pnet, training_calls

MAIN_MODELS = ("coarse", "fine")
TEACHER = "fine_teacher"
# Settings of a Pnet that may name another model of the profile (its trained best.pt is meant).
MODEL_REFERENCES = ("init_from", "teacher")
# Optional, next to a model trained elsewhere (e.g. on a lent GPU): where and with what it was
# trained, and how its run ended; copied into the release manifest. Its "resumed": true marks a run
# paused and resumed by a trainer too old to count its calls.
PROVENANCE = "provenance.json"
AUTOENCODER = "autoencoder"


def models_dir(settings) -> Path:
    """Models trained here are data, never committed: data/<dataset>/models/<profile>/<name>/."""
    return dataset.dataset_root(settings) / "models" / settings.name


def uses_release(settings) -> bool:
    return settings.weights.source == "release"


def release_dir(settings) -> Path:
    return weights.release_dir(settings.weights.release)


def trained_file(settings, name: str) -> Path:
    """Where training here writes model `name` (best checkpoint; the auto-encoder's checkpoint)."""
    if name == AUTOENCODER:
        return models_dir(settings) / AUTOENCODER / "checkpoint.pt"
    return models_dir(settings) / name / "best.pt"


def model_file(settings, name: str) -> Path:
    """The checkpoint the profile's results use: the released file (sha256 checked) or the one
    trained here."""
    if uses_release(settings):
        return weights.released_file(release_dir(settings), name)
    return trained_file(settings, name)


def train_configs(settings) -> dict[str, TrainConfig]:
    """name -> TrainConfig for every model of the profile, main models (and a teacher) first. A
    setting of MODEL_REFERENCES that names a model of the profile becomes that model's trained
    checkpoint here."""
    section = settings.rprloc
    configs = {"coarse": section.coarse}
    if section.fine_teacher is not None:
        configs[TEACHER] = section.fine_teacher
    configs["fine"] = section.fine
    configs = {name: replace(config, **{key: str(trained_file(settings, getattr(config, key)))
                                        for key in MODEL_REFERENCES if getattr(config, key) in configs})
               for name, config in configs.items()}
    sweep = section.sweep
    for name, values in (("coarse", sweep.coarse_r_mm), ("fine", sweep.fine_r_mm)):
        main = configs[name]
        for r in values:
            if float(r) == float(main.r_mm):
                continue
            batch = {k: getattr(sweep, k) for k in ("volumes_per_step", "patches_per_volume", "lr_decay_every",
                                                    "val_every") if getattr(sweep, k) is not None}
            configs[f"{name}_r{int(r)}"] = replace(
                main, r_mm=float(r), steps=int(sweep.steps if sweep.steps is not None else main.steps),
                time_limit_s=sweep.time_limit_s if sweep.time_limit_s is not None else main.time_limit_s,
                init_from=str(trained_file(settings, name)), teacher=None, **batch)
    return configs


def dependencies(settings) -> dict[str, set]:
    """name -> the models of the profile whose trained checkpoints its training reads (the model it
    starts from, the teacher it learns from)."""
    configs = train_configs(settings)
    files = {str(trained_file(settings, name)): name for name in configs}
    return {name: {files[getattr(c, key)] for key in MODEL_REFERENCES if getattr(c, key) in files}
            for name, c in configs.items()}


def reference_name(path) -> str | None:
    """The model a MODEL_REFERENCES setting points at, by name: its training folder (…/<name>/best.pt)."""
    return Path(path).parent.name if path else None


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
    train = dataset.unlabelled_volumes(settings, "train", progress=progress, limit=config.train_volumes)
    val = dataset.unlabelled_volumes(settings, "validation", progress=progress, limit=config.val_volumes)
    summary = train_pnet(config, train, val, models_dir(settings) / name, progress=progress)
    return {"name": name, **summary}


def train_all(settings, names=None, parallel: bool = True, progress: bool = True) -> list[dict]:
    """Train the profile's models. With `parallel`, two processes with one thread each (on this
    2-core CPU two single-thread runs beat one two-thread run, and a busy machine hurts a
    two-thread run far more). A model waits for the models it starts from or learns from
    (`dependencies`) when they are trained in the same call."""
    names = list(names or train_configs(settings))
    summaries = []
    for stage in training_stages(settings, names):
        jobs = [(settings, n, progress and (not parallel or len(stage) == 1)) for n in stage]
        summaries += run_jobs(train_one, jobs, "training Pnets", parallel=parallel, progress=False)
    return summaries


def training_stages(settings, names) -> list[list[str]]:
    """`names` in groups that can train side by side: each after the ones it depends on."""
    needs = {name: deps & set(names) for name, deps in dependencies(settings).items() if name in names}
    stages, done = [], set()
    while len(done) < len(needs):
        ready = [n for n in names if n not in done and needs[n] <= done]
        if not ready:
            raise DataError(None, f"the models {sorted(set(needs) - done)} depend on one another in a circle")
        stages.append(ready)
        done.update(ready)
    return stages


def load_models(settings, names=None, device=None) -> dict:
    """name -> PNet (the best checkpoint by validation loss), in eval mode."""
    names = list(names or train_configs(settings))
    return {name: load_pnet(model_file(settings, name), device=device) for name in names}


def training_summaries(settings, parallel: bool = True, progress: bool = True) -> list[dict]:
    """One summary per Pnet (steps, best validation MSE, time, ...): read from the release's
    manifest when the profile uses one (nothing is trained), else from training now."""
    if not uses_release(settings):
        return train_all(settings, parallel=parallel, progress=progress)
    manifest = weights.read_manifest(release_dir(settings))
    return [{"name": name, **manifest["models"][name]["summary"]} for name in train_configs(settings)]


def history(settings, name: str) -> pd.DataFrame:
    """A Pnet's validation history (one row per validation), from the release or the training folder."""
    if uses_release(settings):
        return pd.DataFrame(weights.read_manifest(release_dir(settings))["models"][name]["history"])
    return load_history(models_dir(settings) / name)


def provenance_entry(folder: Path) -> dict:
    """{"provenance": ...} from a run folder's provenance.json (a model trained on another machine
    says where and how), or {} for a run trained here: a release entry's optional part."""
    path = Path(folder) / PROVENANCE
    return {"provenance": json.loads(path.read_text())} if path.is_file() else {}


def paused_and_resumed(calls: int, provenance: dict) -> bool:
    """A release entry's summary.resumed: the run was paused and resumed, counted by its trainer
    (`calls` above one) or said by the provenance (`provenance_entry`) of a run trained elsewhere
    by a trainer too old to count its calls."""
    return calls > 1 or bool(provenance.get("provenance", {}).get("resumed", False))


def release_names(settings) -> list[str]:
    """The models of the profile's RPR-Loc release: every Pnet (main and r-sweep) and the auto-encoder."""
    return [*train_configs(settings), AUTOENCODER]


def check_release_names(settings, names) -> None:
    """Refuse, before any work, a model name that is not in the profile's RPR-Loc release."""
    known = release_names(settings)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise DataError(None, f"no model {', '.join(unknown)} in profile {settings.name!r} "
                              f"(models: {', '.join(known)})")


def publish_release(settings, overwrite: bool = False, names=None) -> dict:
    """Copy the models trained here (every Pnet of the profile and the auto-encoder) into the
    profile's release folder, with a manifest. Replaces an existing release only with `overwrite`.
    `names`: publish only these models (e.g. ["fine"]); every other entry of the existing release is
    kept as it is (file, sha256, history), so one retrained model replaces its predecessor alone."""
    if not settings.weights.release:
        raise ValueError(f"profile {settings.name!r} names no release folder (weights.release)")
    known = release_names(settings)
    names = list(known if names is None else names)
    check_release_names(settings, names)
    folder = release_dir(settings)
    kept = {}
    if set(names) != set(known):
        if not weights.is_release(folder):
            raise DataError(folder, "publishing some models only needs an existing release to keep the others")
        released = weights.read_manifest(folder)["models"]
        kept = {name: _released_entry(folder, name, released[name]) for name in known
                if name not in names and name in released}
    entries = {}
    for name in known:
        if name in kept:
            entries[name] = kept[name]
        elif name == AUTOENCODER:
            if trained_file(settings, AUTOENCODER).is_file():
                entries[name] = _autoencoder_entry(settings)
        else:
            entries[name] = _pnet_entry(settings, name, train_configs(settings)[name])
    table = dataset.case_table(settings)
    split = {s: table[table.split == s].case_id.tolist() for s in ("train", "validation")}
    about = {"profile": settings.name, "dataset": settings.data.dataset,
             "preprocess_spacing_zyx_mm": list(settings.preprocess.spacing_zyx),
             "data_split": {"labels_used": "none: every model trains on intensity volumes only",
                            "train": split["train"], "validation": split["validation"]}}
    return weights.write_release(folder, entries, about, overwrite=overwrite)


def _pnet_entry(settings, name: str, config) -> dict:
    """A trained Pnet's release entry: its best checkpoint, architecture, training config, summary,
    provenance and full validation history."""
    path = trained_file(settings, name)
    payload = read_checkpoint(path)
    folder = models_dir(settings) / name
    rows = load_history(folder)
    best = rows.loc[rows.val_loss_mm2.idxmin()]
    provenance = provenance_entry(folder)
    resumed = paused_and_resumed(training_calls(folder), provenance)
    summary = {"steps": int(rows.step.max()), "target_steps": int(config.steps),
               "best_val_loss_mm2": float(best.val_loss_mm2), "best_step": int(best.step),
               "train_time_s": float(rows.train_time_s.max()), "pairs_per_s": float(rows.pairs_per_s.iloc[-1]),
               "stopped": "released", "resumed": resumed}
    # The checkpoint records where its start and its teacher came from: names, not this machine's paths.
    named = {key: reference_name(getattr(config, key)) for key in MODEL_REFERENCES}
    if any(named.values()):
        extra = dict(payload.get("extra") or {})
        extra["train_config"] = {**extra.get("train_config", {}), **named}
        path = Path(tempfile.mkdtemp()) / "best.pt"
        torch_save({**payload, "extra": extra}, path)
    return {"source": path, "kind": "pnet", "architecture": payload["config"],
            "training": config.to_dict() | named,
            "summary": summary,
            **provenance,
            "history": rows.astype(object).where(rows.notna(), None).to_dict(orient="list")}


def _autoencoder_entry(settings) -> dict:
    """The patch auto-encoder's release entry: weights and history, no optimizer state."""
    import torch

    from rprloc_core.baselines.feature_matching import load_autoencoder, save_checkpoint

    checkpoint = trained_file(settings, AUTOENCODER)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    stripped = Path(tempfile.mkdtemp()) / "autoencoder.pt"
    save_checkpoint(stripped, load_autoencoder(checkpoint), None, saved["step"], saved["history"], None)
    return {"source": stripped, "kind": "autoencoder", "architecture": saved["config"],
            "training": asdict(settings.template_matching.autoencoder), "steps": int(saved["step"])}


def _released_entry(folder: Path, name: str, entry: dict) -> dict:
    """An entry of an existing release, to be written again unchanged (its file checked first)."""
    entry = dict(entry)
    for key in ("file", "sha256", "bytes"):
        entry.pop(key)
    return {"source": weights.released_file(folder, name), **entry}


def models_hash(settings, names=MAIN_MODELS) -> str:
    """A short hash of the main checkpoints' bytes and the inference engine's version: part of every
    cached prediction's key, so neither retrained models nor a changed engine (its numbers or its
    timings) reuse old predictions."""
    files = [model_file(settings, name) for name in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"trained models missing ({', '.join(missing)}): run notebook 02 first")
    text = "".join(weights.file_sha256(f) for f in files) + f"engine {ENGINE_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:10]
