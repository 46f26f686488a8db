"""PIN's update rules, iterated from several initialisations (Li et al., 2018, section 2.3).

The state is a vector s (D,): a landmark's position in mm (D = 3), or the shape parameters b of all
landmarks (D = the shape model's modes). A predictor maps states (N, D) to the network's answer:
class probabilities (N, 2D), class 2j meaning "increase s_j" and 2j + 1 "decrease s_j", and the
displacement (N, D) it regresses towards the target.

    rule A   classification only: s_j += step_j in the most probable direction (T = 350)
    rule B   regression only: s += d (T = 10)
    rule C   both: s += P_max * d, the move damped by the network's confidence (T = 10)

The prediction is the mean of the final states of all initialisations (19 in the paper).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

RULES = ("A", "B", "C")
DEFAULT_ITERATIONS = {"A": 350, "B": 10, "C": 10}
Predictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def direction_class(displacement: np.ndarray) -> np.ndarray:
    """The class (N,) of the largest component of each displacement (N, D): 2j if it is positive,
    2j + 1 if negative; the training target of the classification head."""
    d = np.asarray(displacement, dtype=float)
    j = np.argmax(np.abs(d), axis=-1)
    negative = np.take_along_axis(d, j[..., None], axis=-1)[..., 0] < 0
    return 2 * j + negative.astype(int)


def class_steps(probabilities: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Rule A's move (N, D): one step along the most probable class's axis and sign."""
    probabilities = np.asarray(probabilities)
    n, two_d = probabilities.shape
    best = np.argmax(probabilities, axis=1)
    move = np.zeros((n, two_d // 2))
    sign = np.where(best % 2 == 0, 1.0, -1.0)
    move[np.arange(n), best // 2] = sign * np.broadcast_to(np.asarray(step, float), (two_d // 2,))[best // 2]
    return move


def iterate(predict: Predictor, initial: np.ndarray, rule: str, iterations: int | None = None,
            step=1.0, lower=None, upper=None, return_path: bool = False):
    """Run `rule` from each initial state (N, D) for `iterations` steps (the rule's default when
    None), all states in one batch per step. `lower`/`upper` (D,) clip the states (the volume, or a
    few SDs of each shape mode), so a wild move cannot leave the image. Returns the final states
    (N, D), and with `return_path` also every step's states (T + 1, N, D)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    iterations = DEFAULT_ITERATIONS[rule] if iterations is None else int(iterations)
    state = np.array(initial, dtype=float, copy=True)
    if state.ndim != 2:
        raise ValueError(f"initial states must have shape (N, D), got {state.shape}")
    path = [state.copy()]
    for _ in range(iterations):
        probabilities, displacement = predict(state)
        if rule == "A":
            state = state + class_steps(probabilities, step)
        elif rule == "B":
            state = state + displacement
        else:
            state = state + np.max(probabilities, axis=1, keepdims=True) * displacement
        if lower is not None or upper is not None:
            state = np.clip(state, lower, upper)
        if return_path:
            path.append(state.copy())
    return (state, np.stack(path)) if return_path else state


def memoised(predict: Predictor, decimals: int = 6) -> Predictor:
    """`predict` with a memory: states equal to `decimals` places (1e-6 mm by default) share one
    network answer, and only the states not seen before reach the network. Rule A moves on a
    lattice and ends oscillating between neighbouring voxels, so most of its 350 iterations revisit
    states; rules B and C rarely do."""
    seen: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def predict_new(states: np.ndarray):
        # rounded, and + 0.0 so that -0.0 and 0.0 are one key
        keys = [row.tobytes() for row in np.round(np.asarray(states, dtype=float), decimals) + 0.0]
        new = [i for i, key in enumerate(keys) if key not in seen]
        unique_new = list({keys[i]: i for i in new}.values())
        if unique_new:
            probabilities, displacement = predict(np.asarray(states)[unique_new])
            for row, i in enumerate(unique_new):
                seen[keys[i]] = (probabilities[row], displacement[row])
        return (np.stack([seen[key][0] for key in keys]), np.stack([seen[key][1] for key in keys]))

    return predict_new


def localise(predict: Predictor, initial: np.ndarray, rule: str, **options) -> np.ndarray:
    """The prediction (D,): the mean of the final states of the initialisations (N, D)."""
    return iterate(predict, initial, rule, **options).mean(axis=0)
