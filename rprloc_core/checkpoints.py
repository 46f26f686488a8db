"""Checkpoints: written atomically, and a training run resumed from its last one (shared by every
trainer)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from rprloc_core.errors import DataError


def resume(last, config: dict, resumable, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
           rng: np.random.Generator) -> dict | None:
    """Load `last` (if it exists) into the network, the optimiser and the generator, and return the
    saved payload; None for a fresh run. A checkpoint written with other settings than `config`
    (apart from the `resumable` ones, which only decide when a run stops) is refused: resuming it
    would silently mix two runs."""
    last = Path(last)
    if not last.is_file():
        return None
    saved = torch.load(last, map_location="cpu", weights_only=False)
    differs = {k for k, v in config.items() if saved["config"].get(k) != v} - set(resumable)
    if differs:
        raise DataError(last, f"was trained with other settings ({', '.join(sorted(differs))}); use another "
                              "folder or delete it to restart")
    net.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    rng.bit_generator.state = saved["rng"]
    return saved


def calls_so_far(saved: dict | None) -> int:
    """How many calls trained the run whose saved state is `saved` (None, a fresh run: 0). Above one,
    the run was paused and resumed, which a release records: its history alone cannot tell a paused
    run from one trained in one go. A state saved before the trainers counted their calls is one."""
    return 0 if saved is None else int(saved.get("calls", 1))


def atomic_torch_save(obj, path) -> None:
    """torch.save to a temporary file next to `path`, then os.replace: a crash never leaves a
    half-written checkpoint under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
