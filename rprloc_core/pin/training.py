"""Training PIN, resumable, and the predictor its update rules call.

A state space says what a state is and how it becomes landmark positions:
- `LandmarkSpace`: one landmark, the state is its position in mm (PIN-Single);
- `ShapeSpace`: all landmarks, the state is their shape parameters b (PIN-Multiple).
Training draws a case and a state around the case's true state (uniform within +- `scale` per
dimension), cuts the 2.5D patches of every landmark at the positions that state gives, and learns
the displacement back to the truth (in units of `scale`, so every dimension's target is within
+-1) and its direction class. The same `scale` turns the network's answer back into state units
at inference (`predictor`).

Training runs in training_loop.run_training, the loop the detector and CC2D use: `last.pt` (all a
resumed run and its release need) every `checkpoint_every` steps, where PIN also validates, and
when a run ends or pauses; `best.pt` whenever the validation loss improves. Releases and
inference use the last step's weights (`last.pt`), so `best.pt` is only a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from rprloc_core.geometry.volume import Volume
from rprloc_core.pin.config import RESUMABLE_CHANGES, PINTrainConfig
from rprloc_core.pin.network import PINNet, pin_loss
from rprloc_core.pin.patches25d import cut_25d
from rprloc_core.pin.shape_model import ShapeModel
from rprloc_core.training_loop import run_training


@dataclass(frozen=True)
class LandmarkSpace:
    """PIN-Single: the state is one landmark's position (mm); moves are scaled by `range_mm`."""
    range_mm: tuple = (60.0, 60.0, 60.0)

    @property
    def scale(self) -> np.ndarray:
        return np.asarray(self.range_mm, dtype=float)

    @property
    def n_landmarks(self) -> int:
        return 1

    def landmarks(self, states: np.ndarray) -> np.ndarray:
        return np.asarray(states, dtype=float).reshape(-1, 1, 3)


@dataclass(frozen=True)
class ShapeSpace:
    """PIN-Multiple: the state is the shape parameters b of all landmarks; moves are scaled by
    `n_sd` standard deviations of each mode."""
    model: ShapeModel
    n_sd: float = 1.5

    @property
    def scale(self) -> np.ndarray:
        return self.n_sd * self.model.sd

    @property
    def n_landmarks(self) -> int:
        return self.model.n_landmarks

    def landmarks(self, states: np.ndarray) -> np.ndarray:
        return self.model.decode(np.asarray(states, dtype=float).reshape(-1, self.model.n_modes))


def patches_for_states(volume: Volume, space, states: np.ndarray, config: PINTrainConfig) -> torch.Tensor:
    """Network input (N, 3L, S, S) for states (N, D) in one volume."""
    points = space.landmarks(states)                                    # (N, L, 3)
    n, n_landmarks = points.shape[:2]
    patches = cut_25d(volume, points.reshape(-1, 3), config.patch_size, config.pixel_mm)
    return torch.from_numpy(patches.reshape(n, 3 * n_landmarks, config.patch_size, config.patch_size))


def build_network(space, config: PINTrainConfig) -> PINNet:
    """A fresh network; its weights depend only on config.seed (the global generator is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.SeedSequence([config.seed, 11]).generate_state(1)[0]))
        return PINNet(3 * space.n_landmarks, config.patch_size, len(space.scale), config.width, config.hidden)


def _samples(pairs, space, config: PINTrainConfig, rng: np.random.Generator):
    """Network inputs and targets for (case, state) pairs: each state is the case's truth moved by
    up to +- `space.scale` per dimension; the target is the way back, in units of the scale."""
    scale = space.scale
    inputs, targets, states = [], [], []
    for volume, truth in pairs:
        state = truth + rng.uniform(-1.0, 1.0, size=len(scale)) * scale
        inputs.append(patches_for_states(volume, space, state[None], config))
        targets.append((truth - state) / scale)
        states.append(state)
    return torch.cat(inputs), torch.as_tensor(np.stack(targets), dtype=torch.float32), np.stack(states)


def _batch(cases, space, config: PINTrainConfig, rng: np.random.Generator):
    which = rng.integers(len(cases), size=config.batch_size)
    x, target, _ = _samples([cases[i] for i in which], space, config, rng)
    return x, target


def validation_set(space, config: PINTrainConfig, cases, per_case: int = 4) -> dict:
    """A fixed validation sample (the same for every run with this seed): `per_case` displaced
    states per case, their inputs, targets, and the true landmarks (to report the error in mm)."""
    rng = np.random.default_rng([config.seed, 17])
    pairs = [case for case in cases for _ in range(per_case)]
    x, target, states = _samples(pairs, space, config, rng)
    truth = space.landmarks(np.stack([t for _, t in pairs]))
    return {"x": x, "target": target, "states": states, "truth_mm": truth}


@torch.no_grad()
def validate(net: PINNet, space, config: PINTrainConfig, validation: dict) -> dict:
    """The loss on the validation sample and the landmark error (mm) after one rule-B move."""
    was_training = net.training
    net.eval()
    logits, displacement = net(validation["x"])
    loss = float(pin_loss(logits, displacement, validation["target"], config.loss, config.alpha))
    moved = validation["states"] + displacement.numpy().astype(float) * space.scale
    error = np.linalg.norm(space.landmarks(moved) - validation["truth_mm"], axis=-1).mean()
    net.train(was_training)
    return {"val_loss": loss, "val_error_mm": float(error)}


def train_pin(space, config: PINTrainConfig, cases: Sequence[tuple[Volume, np.ndarray]], out_dir,
              progress: bool = True, validation_cases: Sequence | None = None, desc: str = "PIN training") -> dict:
    """Train (or resume) in `out_dir` with training_loop.run_training (the detector's and CC2D's
    loop). `cases`: (volume, true state (D,)) per training case; `validation_cases` likewise (a
    fixed sample of them is scored at every checkpoint: loss and the landmark error in mm after one
    regression move). Returns a summary (steps done, last loss, why it stopped, seconds trained)."""
    if not cases:
        raise ValueError("no training cases")
    net = build_network(space, config)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    rng = np.random.default_rng([config.seed, 13])
    validation = validation_set(space, config, validation_cases) if validation_cases else None

    def train_step(step: int) -> dict:
        x, target = _batch(cases, space, config, rng)
        logits, displacement = net(x)
        loss = pin_loss(logits, displacement, target, config.loss, config.alpha)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach())}

    check = (lambda: validate(net, space, config, validation)) if validation else None
    summary = run_training(net, optimizer, rng, config, RESUMABLE_CHANGES, out_dir, train_step, check,
                           desc=desc, progress=progress)
    return {**{k: summary[k] for k in ("steps", "resumed", "calls", "stopped", "wall_s", "train_time_s")},
            "last_loss": (summary["last_row"] or {}).get("loss")}


def load_network(path) -> PINNet:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    net = PINNet(**saved["net_config"])
    net.load_state_dict(saved["model"])
    return net.eval()


def predictor(net: PINNet, space, volume: Volume, config: PINTrainConfig):
    """The function the update rules call: states (N, D) -> (class probabilities (N, 2D),
    displacement (N, D) in state units)."""
    scale = space.scale

    @torch.no_grad()
    def predict(states: np.ndarray):
        net.eval()
        logits, displacement = net(patches_for_states(volume, space, states, config))
        return torch.softmax(logits, dim=1).numpy().astype(float), displacement.numpy().astype(float) * scale
    return predict
