"""Pnet: the Siamese encoder of RPR-Loc (METHOD 3.1), its offset rule, layer table and checkpoints.

One encoder maps a patch (N, 1, pz, py, px) to a 3-vector p. The offset from a query patch q to a
support patch s is `r * tanh(p_s - p_q)` in mm, per (z, y, x) axis.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    import pandas as pd

from rprloc_core.checkpoints import atomic_torch_save
from rprloc_core.errors import DataError
from rprloc_core.geometry.patches import as_patch_size

CHECKPOINT_FORMAT = "rprloc.pnet"
TRAINING_STATE_FORMAT = "rprloc.pnet_training"

# Main-path kernels of one residual block. "han": anisotropic data (thick slices), so most convs see
# only the in-plane neighbourhood. "pancreas": isotropic data, three 3x3x3 convs as in the authors'
# TribleResConv3D.
BLOCK_KERNELS = {
    "han": ((1, 3, 3), (3, 1, 1), (1, 3, 3), (1, 3, 3)),
    "pancreas": ((3, 3, 3), (3, 3, 3), (3, 3, 3)),
}
HEAD_ACTIVATIONS = {None: None, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}


class CheckpointError(DataError):
    """A file is not a Pnet checkpoint, or its weights do not fit the architecture it names."""


class InstanceNorm(nn.InstanceNorm3d):
    """InstanceNorm3d (per sample and channel, affine). In eval mode it is computed as a group norm
    with one group per channel: the same numbers up to float rounding (about 1e-6) and the same state
    dict, 3-5x faster on a CPU for the 4-16 patch batches inference uses (torch's instance_norm goes
    through batch_norm on a reshaped copy). Training keeps torch's own, so that a retrain reproduces
    the released models' losses exactly."""

    def forward(self, x):
        if self.training:
            return super().forward(x)
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


class Conv3d(nn.Conv3d):
    """nn.Conv3d whose eval-mode forward on CPU float32 always runs oneDNN's convolution. torch
    itself sends a conv whose kernel is 1 in its last two axes (here the (3, 1, 1) and 1x1x1 convs)
    to its generic slow_conv3d when it runs on one thread with fewer than 16 patches; on this
    project's CPUs that path is 2-3x slower per FLOP and made up a third of a fine patch's time
    (benchmarks/rprloc_inference.py). Same numbers (to about 1e-7), same state dict; training, other
    devices and dtypes keep torch's own choice.

    The first block's 1x1x1 shortcut reads a single channel: a scale and a shift per output channel,
    computed as such (the same numbers). oneDNN ran it at 0.3-3 GFLOP/s; with 8 output channels it
    took 0.9 ms of a 3 ms fine patch on one thread (measured 2026-11-28)."""

    def forward(self, x):
        if (self.training or x.device.type != "cpu" or x.dtype != torch.float32
                or self.padding_mode != "zeros" or not torch.backends.mkldnn.is_available()):
            return super().forward(x)
        if (self.in_channels == 1 and self.kernel_size == (1, 1, 1) and self.stride == (1, 1, 1)
                and self.padding == (0, 0, 0) and self.bias is not None):
            shape = (1, self.out_channels, 1, 1, 1)
            return torch.addcmul(self.bias.view(shape), x, self.weight.view(shape))
        return torch.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride, self.dilation,
                                        self.groups)


class MaxPool(nn.MaxPool3d):
    """nn.MaxPool3d with kernel = stride of 1 or 2 per axis. In eval mode it takes the maximum of
    voxel pairs with strided views: the same numbers, 5-7x faster on a CPU than torch's
    max_pool3d, which also computes the argmax indices that inference never uses (a sixth of a fine
    patch's time)."""

    def __init__(self, kernel):
        kernel = tuple(int(k) for k in kernel)
        if any(k not in (1, 2) for k in kernel):
            raise ValueError(f"MaxPool kernel entries must be 1 or 2, got {kernel}")
        super().__init__(kernel, kernel)

    def forward(self, x):
        if self.training:
            return super().forward(x)
        for axis, k in zip((2, 3, 4), self.kernel_size):
            if k == 2:
                pairs = x.narrow(axis, 0, 2 * (x.shape[axis] // 2)).unfold(axis, 2, 2)   # floor, as max_pool3d
                x = torch.maximum(pairs.select(-1, 0), pairs.select(-1, 1))
        return x


class ResidualBlock(nn.Module):
    """Main path of convs (each + InstanceNorm + ReLU), a 1x1x1 shortcut, ReLU(IN(main + shortcut))."""

    def __init__(self, cin: int, cout: int, variant: str):
        super().__init__()
        layers = []
        for i, kernel in enumerate(BLOCK_KERNELS[variant]):
            layers += [Conv3d(cin if i == 0 else cout, cout, kernel, padding=tuple(k // 2 for k in kernel)),
                       InstanceNorm(cout, affine=True),
                       nn.ReLU(inplace=True)]
        self.main = nn.Sequential(*layers)
        self.shortcut = Conv3d(cin, cout, 1)
        self.norm = InstanceNorm(cout, affine=True)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.activation(self.norm(self.main(x) + self.shortcut(x)))


def _pool_kernel(size) -> tuple[int, int, int]:
    # Halve an axis only while it is at least 4 voxels long, so small patches (16 x 16 x 16, or a
    # thin axis) never shrink to one voxel, where InstanceNorm has nothing to normalise over.
    return tuple(2 if s >= 4 else 1 for s in size)


class PNet(nn.Module):
    """Pnet encoder. `r_mm` (scalar or per-axis) and `spacing_mm` (the grid it works on) travel
    with the model so that inference can rebuild that grid and scale the offsets.

    `first_width`: channels of the first residual block (None: 2 x base_width, the released models'
    and the authors' choice). That block works at the patch's full resolution and holds about three
    quarters of the FLOPs, so base_width there gives a patch about 2.4 times fewer FLOPs
    (`benchmarks/rprloc_inference.py --compare-coarse/--compare-fine` times such models)."""

    def __init__(self, variant: str = "han", base_width: int = 16, patch_size=(16, 64, 64),
                 r_mm=300.0, spacing_mm=None, head_activation: str | None = None, first_width: int | None = None):
        super().__init__()
        if variant not in BLOCK_KERNELS:
            raise ValueError(f"variant must be one of {sorted(BLOCK_KERNELS)}, not {variant!r}")
        if head_activation not in HEAD_ACTIVATIONS:
            raise ValueError(f"head_activation must be one of {list(HEAD_ACTIVATIONS)}, not {head_activation!r}")
        self.variant = variant
        self.base_width = int(base_width)
        self.patch_size = as_patch_size(patch_size)
        if np.prod(self.patch_size) < 2:
            raise ValueError(f"patch size {self.patch_size} has a single voxel; InstanceNorm needs more")
        self.r_mm = _plain(r_mm)
        self.spacing_mm = None if spacing_mm is None else _plain(spacing_mm)
        self.head_activation = head_activation
        if first_width is not None and (int(first_width) != first_width or first_width < 1):
            raise ValueError(f"first_width must be a positive whole number or None, not {first_width!r}")
        self.first_width = None if first_width is None else int(first_width)

        b = self.base_width
        channels = (self.first_width or 2 * b, 2 * b, 4 * b, 8 * b, 4 * b)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        size = np.asarray(self.patch_size)
        cin = 1
        for i, cout in enumerate(channels, start=1):
            layers[f"block{i}"] = ResidualBlock(cin, cout, variant)
            cin = cout
            if i <= 3:
                kernel = _pool_kernel(size)
                layers[f"pool{i}"] = MaxPool(kernel)
                size = size // np.asarray(kernel)
        self.encoder = nn.Sequential(layers)
        self.fc_in = int(channels[-1] * np.prod(size))

        head: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        act = HEAD_ACTIVATIONS[head_activation]
        head["fc1"] = nn.Linear(self.fc_in, 8 * b)
        if act is not None:
            head["act1"] = act()
        head["fc2"] = nn.Linear(8 * b, 4 * b)
        if act is not None:
            head["act2"] = act()
        head["fc3"] = nn.Linear(4 * b, 3)
        self.head = nn.Sequential(head)

    @property
    def config(self) -> dict:
        """Everything needed to rebuild this architecture (plain Python types only). `first_width`
        only when set, so the released checkpoints' configs (written before it) stay as they are."""
        config = {"variant": self.variant, "base_width": self.base_width, "patch_size": list(self.patch_size),
                  "r_mm": self.r_mm, "spacing_mm": self.spacing_mm, "head_activation": self.head_activation}
        if self.first_width is not None:
            config["first_width"] = self.first_width
        return config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != (1, *self.patch_size):
            raise ValueError(f"PNet expects patches (N, 1, {', '.join(map(str, self.patch_size))}), "
                             f"got {tuple(x.shape)}")
        return self.head(self.encoder(x))


def _plain(value):
    """float, or list of three floats: what a checkpoint and a JSON file can hold."""
    arr = np.asarray(value, dtype=float)
    return float(arr) if arr.ndim == 0 else [float(v) for v in arr.reshape(-1)]


def predict_offset_mm(p_support: torch.Tensor, p_query: torch.Tensor, r_mm) -> torch.Tensor:
    """Offset (mm, per axis) from the query patch to the support patch: r * tanh(p_s - p_q)."""
    r = torch.as_tensor(r_mm, dtype=p_query.dtype, device=p_query.device)
    return r * torch.tanh(p_support - p_query)


def layer_table(model: PNet, patch_size=None) -> "pd.DataFrame":
    """One row per block / pooling / linear layer: output shape (without the batch axis) and
    parameter count. The parameter column sums to the model's total."""
    import pandas as pd  # here: inference (the CLI) never needs pandas
    patch_size = as_patch_size(model.patch_size if patch_size is None else patch_size)
    rows, hooks = [], []
    modules = [("encoder." + n, m) for n, m in model.encoder.named_children()] + \
              [("head." + n, m) for n, m in model.head.named_children()]

    def recorder(name, module):
        def hook(_module, _inputs, output):
            rows.append({"layer": name, "type": type(module).__name__,
                         "output_shape": tuple(output.shape[1:]),
                         "params": sum(p.numel() for p in module.parameters())})
        return hook

    for name, module in modules:
        hooks.append(module.register_forward_hook(recorder(name, module)))
    try:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, 1, *patch_size), device=device))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    table = pd.DataFrame([{"layer": "input", "type": "patch", "output_shape": (1, *patch_size), "params": 0}] + rows)
    return table


# ---------------------------------------------------------------------------------- checkpoints

def checkpoint_payload(model: PNet, extra: dict | None = None) -> dict:
    return {"format": CHECKPOINT_FORMAT, "version": 1, "config": model.config,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "extra": dict(extra or {})}


def save_checkpoint(path, model: PNet, extra: dict | None = None) -> None:
    """Write architecture config + weights (+ `extra`, plain Python types only) atomically."""
    atomic_torch_save(checkpoint_payload(model, extra), path)


def read_checkpoint(path) -> dict:
    """The Pnet payload of a checkpoint (`save_checkpoint` output or a training `last.pt`).
    Raises CheckpointError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file does not exist")
    try:
        # weights_only: checkpoints hold only tensors and plain types, so never unpickle code.
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a non-checkpoint file
        raise CheckpointError(path, f"not a PyTorch checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if isinstance(payload, dict) and payload.get("format") == TRAINING_STATE_FORMAT:
        payload = payload.get("pnet")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(path, "not a PNet checkpoint (no 'format': 'rprloc.pnet' entry)")
    for key in ("config", "state_dict"):
        if key not in payload:
            raise CheckpointError(path, f"PNet checkpoint has no {key!r} entry")
    return payload


def load_pnet(path, device=None, expected: dict | None = None) -> PNet:
    """Rebuild a PNet from a checkpoint's recorded architecture and load its weights (eval mode).

    `expected`: config entries the caller relies on (e.g. {"patch_size": [16, 32, 32]}); a
    checkpoint of another architecture raises CheckpointError instead of failing later."""
    return pnet_from_payload(read_checkpoint(path), path, device, expected)


def pnet_from_payload(payload: dict, path, device=None, expected: dict | None = None) -> PNet:
    """`load_pnet` on a payload already read by `read_checkpoint` from `path` (named in errors):
    a caller that inspects the checkpoint first does not read and unpickle the file twice."""
    config = payload["config"]
    for key, want in (expected or {}).items():
        have = config.get(key)
        if _normalise(have) != _normalise(want):
            raise CheckpointError(path, f"PNet checkpoint has {key}={have!r}, expected {want!r} "
                                        f"(architecture: {config})")
    try:
        model = PNet(**config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"cannot rebuild PNet from config {config}: {exc}") from exc
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:4])[:400]
        raise CheckpointError(path, f"weights do not match the PNet architecture {config}: {detail}") from exc
    return model.to(device or "cpu").eval()


def _normalise(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return [float(v) if isinstance(v, (int, float, np.number)) else v for v in value]
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return float(value)
    return value
