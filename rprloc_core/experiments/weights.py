"""Released weights: the trained models a profile's results come from, committed to the repository.

    weights/<release>/
        manifest.json     # per model: file, sha256, bytes, architecture, training config, steps,
                          # best step, validation history; the data split, torch version, publishing commit
        MODEL_CARD.md     # data and licence, organs, intended use, measured accuracy
        <name>.pt         # coarse, fine, the r-sweep models, the patch auto-encoder

A profile with `weights.source = "release"` reads its models from here (each file checked against
its sha256 first) and trains nothing. Retraining writes to the data folder
(`python -m rprloc_core.experiments.retrain`), and only `--publish` copies the result here, and
only over an existing release with `--overwrite`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from rprloc_core.errors import DataError
from rprloc_core.paths import PROJECT_ROOT

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "rprloc.weights/1"


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def release_dir(name_or_path) -> Path:
    """A release folder: a path, or a name relative to the project root (weights/openkbp-han-demo)."""
    path = Path(name_or_path)
    return path if path.is_absolute() else PROJECT_ROOT / path


def read_manifest(folder) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataError(path, "no weights manifest: not a release folder")
    manifest = copy.deepcopy(_manifest(str(path), path.stat().st_mtime_ns))
    if manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(path, f"unknown manifest format {manifest.get('format')!r} (expected {MANIFEST_FORMAT})")
    return manifest


def is_release(folder) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def released_file(folder, name: str) -> Path:
    """The file of model `name` in a release, after checking it against the manifest's sha256."""
    folder = Path(folder)
    entry = read_manifest(folder)["models"].get(name)
    if entry is None:
        raise DataError(folder / MANIFEST, f"the release has no model {name!r}")
    path = folder / entry["file"]
    if not path.is_file():
        raise DataError(path, f"released model {name!r} is missing")
    if file_sha256(path) != entry["sha256"]:
        raise DataError(path, f"sha256 does not match the manifest: the file of {name!r} was changed or damaged")
    return path


def file_sha256(path) -> str:
    """sha256 of a file, computed once per process while the file is unchanged."""
    path = Path(path)
    return _sha256_of(str(path), path.stat().st_mtime_ns, path.stat().st_size)


@lru_cache(maxsize=64)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    return sha256(path)


@lru_cache(maxsize=8)
def _manifest(path: str, mtime_ns: int) -> dict:
    """The parsed manifest, read once per process while the file is unchanged (callers get a copy)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_release(folder, models: dict, about: dict, overwrite: bool = False) -> dict:
    """Copy trained checkpoints into a release folder and write its manifest.

    models: name -> {"source": checkpoint path, "kind": "pnet" | "autoencoder", plus any JSON-able
    entries (architecture, training config, steps, history, ...)}. about: release-wide entries
    (profile, data split, ...). An existing release is replaced only with `overwrite`; the new
    files are written next to it first, so a failure leaves the old release whole."""
    folder = Path(folder)
    if is_release(folder) and not overwrite:
        raise DataError(folder, "a release is already there; pass overwrite=True (--overwrite) to replace it")
    staging = folder.with_name(f".{folder.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    entries = {}
    for name, entry in models.items():
        entry = dict(entry)
        source = Path(entry.pop("source"))
        target = staging / f"{name}.pt"
        shutil.copyfile(source, target)
        entries[name] = {"file": target.name, "sha256": sha256(target), "bytes": target.stat().st_size, **entry}
    manifest = {"format": MANIFEST_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "published_from_commit": _git_commit(), "torch": _torch_version(), **about, "models": entries}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    if folder.exists():
        for item in folder.iterdir():          # keep hand-written files (the model card)
            if item.suffix == ".md" and not (staging / item.name).exists():
                shutil.copy2(item, staging / item.name)
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(staging, folder)
        shutil.rmtree(old)
    else:
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, folder)
    return manifest


def _torch_version() -> str:
    import torch

    return torch.__version__


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"
