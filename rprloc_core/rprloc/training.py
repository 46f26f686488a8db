"""Train a Pnet (coarse or fine) on unlabelled volumes, with checkpoints and resume (METHOD 3.2, 8).

Loss: MSE between predicted and true offsets in mm, averaged over all ordered pairs of every group
and over the three axes (what torch's MSELoss gives). Reported losses are always mm^2; the
optimised loss is optionally divided by mean(r^2), a constant that keeps gradients near 1 (Adam is
almost invariant to it, but weight decay is not, so it is a recorded option). With a `teacher`
(distillation) the training loss compares with that model's offsets instead of the true ones; the
validation loss always compares with the true offsets, so histories stay comparable. With
`augment_zoom` / `augment_yaw_deg` each training patch is zoomed and turned about its own centre
(`augmentation.py`); validation patches never are, for the same reason.

Files in `out_dir`: `best.pt` (lowest validation loss; a plain PNet checkpoint), `last.pt` (model,
optimizer, scheduler, step, RNG state, history: everything a resumed run needs), `history.csv`
(one row per validation; rewritten whole from the history each time, so it always agrees with
`last.pt`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from rprloc_core.allocator import keep_freed_memory
from rprloc_core.checkpoints import atomic_torch_save, calls_so_far
from rprloc_core.errors import DataError
from rprloc_core.geometry.patches import PatchCutter, cut_patches, require_volume_fits_patch
from rprloc_core.geometry.volume import Volume
from rprloc_core.rprloc.augmentation import check_augmentation, draw_transforms, sample_patches, source_size
from rprloc_core.rprloc.config import RESUMABLE_CHANGES, TrainConfig
from rprloc_core.rprloc.pnet import (
    TRAINING_STATE_FORMAT,
    PNet,
    checkpoint_payload,
    load_pnet,
    predict_offset_mm,
    read_checkpoint,
    save_checkpoint,
)
from rprloc_core.rprloc.pruning import first_block_width, narrow_first_block
from rprloc_core.rprloc.sampling import (
    PatchGroups,
    draw_training_groups,
    fixed_validation_pairs,
    off_diagonal,
    pair_offsets_mm,
)
from rprloc_core.training_loop import resolve_device


def model_grids(volumes: Sequence[Volume], downsample, what: str, patch_size) -> list[Volume]:
    """The volumes on the model's grid; they must share one spacing (offsets are index * spacing)."""
    if len(volumes) == 0:
        raise ValueError(f"no {what} volumes")
    grids = [v.downsample(downsample) for v in volumes]
    spacing = grids[0].spacing
    for i, g in enumerate(grids):
        if not np.allclose(g.spacing, spacing):
            raise ValueError(f"{what} volume {i} has spacing {g.spacing} mm, volume 0 has {spacing} mm; "
                             "resample all volumes to one spacing first")
        require_volume_fits_patch(g.shape, patch_size, f"{what} volume {i} on the model grid")
    return grids


def build_model(config: TrainConfig, spacing_mm) -> PNet:
    """A freshly initialised PNet; weights depend only on config.seed (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.SeedSequence([config.seed, 7]).generate_state(1)[0]))
        return PNet(config.variant, config.base_width, config.patch_size, config.r_mm,
                    spacing_mm=spacing_mm, head_activation=config.head_activation, first_width=config.first_width)


class GridPatches:
    """Cuts a step's patches from the model grids. On a GPU every volume is padded and moved to the
    device once (a few GB for 200 scans at 3 x 2 x 2 mm) instead of at every step, which otherwise
    bounds the step rate; on the CPU each group's volume is padded when it is used, as before, so
    that CPU memory stays small and CPU runs keep their exact numbers."""

    def __init__(self, grids: Sequence[Volume], patch_size, device, keep_on_device: bool | None = None):
        self.grids, self.patch_size, self.device = grids, patch_size, torch.device(device)
        self.keep_on_device = self.device.type != "cpu" if keep_on_device is None else keep_on_device
        self._cutters: dict[int, PatchCutter] = {}

    def __call__(self, groups: PatchGroups) -> torch.Tensor:
        return torch.cat([self._cut(int(v), c) for v, c in zip(groups.volume_index, groups.centres)])

    def _cut(self, v: int, centres) -> torch.Tensor:
        if not self.keep_on_device:
            return cut_patches(self.grids[v].array, centres, self.patch_size, self.device)
        if v not in self._cutters:
            self._cutters[v] = PatchCutter(self.grids[v].array, self.patch_size, self.device)
        return self._cutters[v].cut(centres)


def pair_errors_mm(model: PNet, patches: torch.Tensor, groups: PatchGroups, spacing, r_mm,
                   teacher: PNet | None = None) -> torch.Tensor:
    """(pred - target) offsets in mm for every ordered pair, shape (G, n (n - 1), 3). The target is
    the true offset, or with a `teacher` that model's predicted offset (distillation)."""
    g, n = groups.centres.shape[:2]
    pred = _pair_offsets_mm(model, patches, g, n, r_mm)
    if teacher is None:
        target = torch.as_tensor(pair_offsets_mm(groups.centres, spacing), dtype=pred.dtype, device=pred.device)
    else:
        with torch.no_grad():
            target = _pair_offsets_mm(teacher, patches, g, n, teacher.r_mm)
    mask = torch.as_tensor(off_diagonal(n), device=pred.device)
    return (pred - target)[:, mask]


def _pair_offsets_mm(model: PNet, patches: torch.Tensor, g: int, n: int, r_mm) -> torch.Tensor:
    p = model(patches).view(g, n, 3)
    return predict_offset_mm(p[:, :, None, :], p[:, None, :, :], r_mm)       # [g, i, j]: query j -> support i


def start_weights(path, model: PNet) -> dict:
    """The state dict `config.init_from` names, for `model`. A checkpoint whose first block is
    wider than the model's is cut to it (`pruning.narrow_first_block`); any other difference
    fails in load_state_dict as before."""
    state = read_checkpoint(path)["state_dict"]
    width = first_block_width(model.state_dict())
    if first_block_width(state) > width:
        state = narrow_first_block(state, width)
    return state


def load_teacher(path, model: PNet, device) -> PNet:
    """The Pnet whose offsets a distilled model learns: it must see the same patches on the same
    grid and predict within the same range, or its offsets would not be the student's to learn."""
    same = {key: model.config[key] for key in ("patch_size", "spacing_mm", "r_mm")}
    return load_pnet(path, device=device, expected=same).requires_grad_(False)


@torch.no_grad()
def validation_loss_mm2(model: PNet, grids: Sequence[Volume], groups: PatchGroups, spacing, r_mm,
                        device, groups_per_batch: int = 8, patches: GridPatches | None = None) -> float:
    """MSE (mm^2) over the fixed validation pairs, in chunks of groups to bound memory."""
    patches = patches or GridPatches(grids, model.patch_size, device)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, groups.n_groups, groups_per_batch):
        chunk = PatchGroups(groups.volume_index[start:start + groups_per_batch],
                            groups.centres[start:start + groups_per_batch])
        err = pair_errors_mm(model, patches(chunk), chunk, spacing, r_mm)
        total += float(err.pow(2).sum())
        count += err.numel()
    model.train(was_training)
    return total / count


class ResumeError(DataError):
    """A training folder holds a run with other settings than the ones asked for."""


def _check_resume_compatible(saved: dict, config: TrainConfig, path: Path) -> None:
    now = config.to_dict()
    defaults = TrainConfig().to_dict()   # a field added later: a run saved before it used the default
    different = [k for k in now if k not in RESUMABLE_CHANGES and saved.get(k, defaults[k]) != now[k]]
    if different:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in different)
        raise ResumeError(path, f"cannot resume, the training config changed ({details}); "
                                "use another output folder or restore the settings")


def _summary(state: dict, config: TrainConfig, out_dir: Path, wall_s: float, stopped: str, resumed: bool) -> dict:
    return {"steps": state["step"], "target_steps": config.steps, "best_val_loss_mm2": state["best_val"],
            "best_step": state["best_step"], "wall_s": wall_s, "train_time_s": state["train_time_s"],
            "pairs_per_s": state["pairs"] / state["train_time_s"] if state["train_time_s"] > 0 else float("nan"),
            "stopped": stopped, "resumed": resumed,
            "best_path": str(out_dir / "best.pt"), "last_path": str(out_dir / "last.pt")}


def train_pnet(config: TrainConfig, train_volumes: Sequence[Volume], val_volumes: Sequence[Volume],
               out_dir, device=None, progress: bool = True) -> dict:
    """Train (or resume training of) one Pnet. Volumes are on the base grid; the model's grid is
    `config.downsample` of it. Returns a summary dict (steps, best_val_loss_mm2, wall_s,
    pairs_per_s, ...). If `out_dir/last.pt` already reached `config.steps`, returns at once."""
    t_call = time.perf_counter()
    check_augmentation(config.augment_zoom, config.augment_yaw_deg)   # a negative one would be ignored
    device = resolve_device(device)
    keep_freed_memory()   # 2.4-2.7x faster steps on a CPU, the same numbers (allocator.py)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"

    train_grids = model_grids(train_volumes, config.downsample, "training", config.patch_size)
    val_grids = model_grids(val_volumes, config.downsample, "validation", config.patch_size)
    spacing = train_grids[0].spacing
    if not np.allclose(val_grids[0].spacing, spacing):
        raise ValueError(f"validation spacing {val_grids[0].spacing} mm differs from training spacing {spacing} mm")

    train_seq, val_seq = np.random.SeedSequence(config.seed).spawn(2)
    val_groups = fixed_validation_pairs(val_grids, config.val_pairs, config.mode, np.random.default_rng(val_seq),
                                        config.patches_per_volume, config.fine_range_vox)
    rng = np.random.default_rng(train_seq)
    model = build_model(config, [float(s) for s in spacing]).to(device)
    if config.init_from and not last_path.exists():
        model.load_state_dict(start_weights(config.init_from, model))
    teacher = load_teacher(config.teacher, model, device) if config.teacher else None
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_decay_every, gamma=config.lr_decay)
    # "calls": how many calls trained this run; above one, the run was paused and resumed, which a
    # release records (the history alone cannot tell a paused run from one trained in one go).
    state = {"step": 0, "best_val": float("inf"), "best_step": -1, "train_time_s": 0.0, "pairs": 0,
             "history": [], "train_losses": [], "calls": 0}

    resumed = last_path.exists()
    if resumed:
        saved = read_training_state(last_path)
        _check_resume_compatible(saved["train_config"], config, last_path)
        model.load_state_dict(saved["pnet"]["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        rng.bit_generator.state = saved["rng_state"]
        state.update({**saved["progress"], "calls": calls_so_far(saved["progress"])})
        if state["step"] >= config.steps:
            return _summary(state, config, out_dir, time.perf_counter() - t_call, "already_done", True)

    augment = config.augment_zoom > 0 or config.augment_yaw_deg > 0
    # Augmented patches are sampled from larger cuts around the same centres; validation never is.
    cut_size = (source_size(config.patch_size, spacing, config.augment_zoom, config.augment_yaw_deg) if augment
                else config.patch_size)
    train_patches = GridPatches(train_grids, cut_size, device)
    val_patches = GridPatches(val_grids, config.patch_size, device)
    r_mm = model.r_mm
    r2 = float(np.mean(np.square(r_mm))) if config.normalise_loss else 1.0

    def evaluate_and_save(train_loss: float) -> float:
        val = validation_loss_mm2(model, val_grids, val_groups, spacing, r_mm, device, patches=val_patches)
        state["history"].append({"step": state["step"], "lr": optimizer.param_groups[0]["lr"],
                                 "train_loss_mm2": train_loss, "val_loss_mm2": val,
                                 "train_time_s": state["train_time_s"],
                                 "pairs_per_s": (state["pairs"] / state["train_time_s"] if state["train_time_s"]
                                                 else float("nan"))})
        if val < state["best_val"]:
            state["best_val"], state["best_step"] = val, state["step"]
            save_checkpoint(best_path, model, {"step": state["step"], "val_loss_mm2": val,
                                               "train_config": config.to_dict()})
        atomic_torch_save({"format": TRAINING_STATE_FORMAT, "version": 1, "train_config": config.to_dict(),
                           "pnet": checkpoint_payload(model), "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "rng_state": rng.bit_generator.state,
                           "progress": state}, last_path)
        history_frame(state["history"]).to_csv(out_dir / ".history.csv.tmp", index=False)
        (out_dir / ".history.csv.tmp").replace(out_dir / "history.csv")
        return val

    if not resumed:
        evaluate_and_save(float("nan"))   # the untrained model's loss: the baseline of every curve

    state["calls"] += 1
    model.train()
    bar = tqdm(total=config.steps, initial=state["step"], disable=not progress, desc=f"Pnet {config.mode}")
    stopped = "steps"
    since_val: list[float] = []
    pairs_per_step = config.volumes_per_step * config.patches_per_volume * (config.patches_per_volume - 1)
    while state["step"] < config.steps:
        t0 = time.perf_counter()
        groups = draw_training_groups(train_grids, config.volumes_per_step, config.patches_per_volume,
                                      config.mode, rng, config.fine_range_vox, config.local_fraction,
                                      config.local_range_vox)
        patches = train_patches(groups)
        if augment:
            scales, yaws = draw_transforms(len(patches), config.augment_zoom, config.augment_yaw_deg, rng)
            patches = sample_patches(patches, config.patch_size, spacing, scales, yaws)
        err = pair_errors_mm(model, patches, groups, spacing, r_mm, teacher)
        mse_mm2 = err.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        (mse_mm2 / r2).backward()
        optimizer.step()
        scheduler.step()
        state["train_time_s"] += time.perf_counter() - t0
        state["step"] += 1
        state["pairs"] += pairs_per_step
        loss = float(mse_mm2.detach())
        state["train_losses"].append(loss)
        since_val.append(loss)
        bar.update(1)
        out_of_time = config.time_limit_s is not None and time.perf_counter() - t_call >= config.time_limit_s
        if state["step"] % config.val_every == 0 or state["step"] == config.steps or out_of_time:
            val = evaluate_and_save(float(np.mean(since_val)))
            since_val = []
            bar.set_postfix(train_mm2=f"{loss:.0f}", val_mm2=f"{val:.0f}", best=f"{state['best_val']:.0f}")
        else:
            bar.set_postfix(train_mm2=f"{loss:.0f}", best=f"{state['best_val']:.0f}")
        if out_of_time and state["step"] < config.steps:
            stopped = "time_limit"
            break
    bar.close()
    return _summary(state, config, out_dir, time.perf_counter() - t_call, stopped, resumed)


def history_frame(history) -> pd.DataFrame:
    columns = ["step", "lr", "train_loss_mm2", "val_loss_mm2", "train_time_s", "pairs_per_s"]
    return pd.DataFrame(list(history), columns=columns)


def read_training_state(path) -> dict:
    """The saved state of a `train_pnet` run (`last.pt`), refused if something else wrote the file."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != TRAINING_STATE_FORMAT:
        raise ValueError(f"{path}: not a training state written by train_pnet")
    return saved


def training_calls(out_dir) -> int:
    """How many calls of `train_pnet` trained the run in `out_dir` (0 where it has no saved state)."""
    last_path = Path(out_dir) / "last.pt"
    return calls_so_far(read_training_state(last_path)["progress"] if last_path.is_file() else None)


def load_history(out_dir) -> pd.DataFrame:
    return pd.read_csv(Path(out_dir) / "history.csv")


def plot_history(history, ax=None, title: str | None = None, distilled: bool = False):
    """Training (mean since the previous validation) and validation MSE in mm^2 against step, log y.
    `history`: a DataFrame from `load_history` or a run directory. `distilled`: the run learnt a
    teacher's offsets, so its training curve measures the distance to those, not to the truth
    (validation always uses the true offsets)."""
    import matplotlib.pyplot as plt

    if not isinstance(history, pd.DataFrame):
        history = load_history(history)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    target = "teacher's offsets" if distilled else "true offsets"
    ax.plot(history["step"], history["train_loss_mm2"],
            label=f"training pairs vs. {target} (mean since last validation)")
    ax.plot(history["step"], history["val_loss_mm2"], marker="o", ms=3,
            label="fixed validation pairs vs. true offsets")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("offset MSE (mm$^2$)")
    if title:
        ax.set_title(title)
    ax.legend()
    return ax
