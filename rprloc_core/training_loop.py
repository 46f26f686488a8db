"""The resumable training loop of the detector, both CC2D stages and PIN (one loop, so they stop,
save, validate and resume alike). The caller gives one training step and, optionally, a validation.

Files in `out_dir`:
- `last.pt`: model, optimizer, step, generator state, history, config, network config, training
  time and how many calls trained the run: all a resumed run and its release need. Written
  atomically every `checkpoint_every` steps, at every validation and when the run ends or pauses
  (so a run stopped by `time_limit_s` continues where it was when called again with the same
  settings).
- `best.pt`: model, network config, step, config, validation loss: the weights with the lowest
  validation loss so far. Without validation data it is written once, when the run reaches its
  steps, with the final weights (nothing else to choose with), so users always load `best.pt`.

The config must have `steps`, `checkpoint_every`, `val_every`, `time_limit_s` and `to_dict()`; a
config that differs from the saved one outside `resumable` is refused (checkpoints.resume).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from rprloc_core.allocator import keep_freed_memory
from rprloc_core.checkpoints import atomic_torch_save, calls_so_far, resume


def resolve_device(device=None) -> torch.device:
    """The device asked for, else CUDA when there is one, else the CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def _cpu_state(net: torch.nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def run_training(net: torch.nn.Module, optimizer: torch.optim.Optimizer, rng: np.random.Generator, config,
                 resumable, out_dir, train_step: Callable[[int], dict], validate: Callable[[], dict] | None = None,
                 desc: str = "training", progress: bool = True) -> dict:
    """Run `train_step(steps done so far)` (one optimiser step with `rng`, returns {loss name:
    float, ...}) until `config.steps`, resuming from `out_dir/last.pt` if it exists. `validate`
    (net in eval mode, no gradients) returns {"val_loss": float, ...}. Returns a summary: steps,
    resumed (this call continued a saved run), calls (how many calls trained the run, this one
    included if it took a step), stopped, train_time_s, wall_s, best_step, best_val_loss, the last
    history row (`last_row`: the losses at the last validation) and the two files' paths."""
    keep_freed_memory()   # no page faults on every step's activations (allocator.py); same numbers
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last, best = out_dir / "last.pt", out_dir / "best.pt"
    step, history, train_time, resumed = 0, [], 0.0, False
    saved = resume(last, config.to_dict(), resumable, net, optimizer, rng)
    if saved is not None:
        step, history, train_time, resumed = saved["step"], saved["history"], saved["train_time_s"], True
    # This call counts once it has taken a step: one that only finds the run finished does not.
    calls_before, step_at_call = calls_so_far(saved), step

    def calls() -> int:
        return calls_before + (step > step_at_call)

    best_loss = min((h["val_loss"] for h in history if "val_loss" in h), default=np.inf)

    def save():
        atomic_torch_save({"model": _cpu_state(net), "optimizer": optimizer.state_dict(), "step": step,
                           "rng": rng.bit_generator.state, "history": history, "config": config.to_dict(),
                           "net_config": net.config, "train_time_s": train_time,
                           "calls": calls()}, last)

    def save_best(val_loss: float | None):
        atomic_torch_save({"model": _cpu_state(net), "net_config": net.config, "step": step,
                           "config": config.to_dict(), "val_loss": val_loss}, best)

    start, stopped, running = time.perf_counter(), "steps", []
    bar = tqdm(total=config.steps, initial=step, desc=desc, disable=not progress)
    while step < config.steps:
        if config.time_limit_s is not None and time.perf_counter() - start >= config.time_limit_s:
            stopped = "time limit (resumable)"
            break
        tick = time.perf_counter()
        net.train()
        running.append(train_step(step))
        step += 1
        train_time += time.perf_counter() - tick
        bar.update()
        if step % config.val_every == 0 or step == config.steps:
            row = {"step": step, "train_time_s": train_time,
                   **{k: float(np.mean([r[k] for r in running])) for k in running[0]}}
            running = []
            if validate is not None:
                net.eval()
                with torch.no_grad():
                    row.update(validate())
                net.train()
                if row["val_loss"] < best_loss:
                    best_loss = row["val_loss"]
                    save_best(best_loss)
            history.append(row)
            shown = [k for k in row if k not in ("step", "train_time_s")][:1] + ["val_loss"]   # first loss
            bar.set_postfix({k: row[k] for k in shown if k in row})
            save()
        elif step % config.checkpoint_every == 0:
            save()
    bar.close()
    save()
    if validate is None and step >= config.steps:
        save_best(None)
    rows = [h for h in history if "val_loss" in h]
    best_row = min(rows, key=lambda h: h["val_loss"]) if rows else {}
    return {"steps": step, "resumed": resumed, "calls": calls(),
            "stopped": stopped, "train_time_s": train_time,
            "wall_s": time.perf_counter() - start, "best_step": best_row.get("step"),
            "best_val_loss": best_row.get("val_loss"), "last_row": history[-1] if history else None,
            "last_path": str(last), "best_path": str(best)}


def load_weights(path, build: Callable[..., torch.nn.Module], device=None) -> tuple[torch.nn.Module, dict]:
    """A network rebuilt with `build(**net_config)` from a `last.pt` or `best.pt`, its weights
    loaded, in eval mode on `device` (default CPU), and the training config it was saved with."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    net = build(**saved["net_config"])
    net.load_state_dict(saved["model"])
    return net.to(device or "cpu").eval(), saved["config"]
