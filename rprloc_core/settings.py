"""Profiles: named parameter files (smoke, demo, paper) that every notebook reads."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name_or_path: str, overrides: dict | None = None) -> dict:
    """Read a profile by name (rprloc_core/profiles/<name>.toml) or path; `overrides` maps
    dotted keys ("preprocess.workers") to values."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"no profile {name_or_path!r}; available: {', '.join(available_profiles())}")
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    cfg = copy.deepcopy(cfg)
    for dotted, value in (overrides or {}).items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return cfg
