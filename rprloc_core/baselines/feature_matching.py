"""Patch auto-encoder for the feature-matching baselines (FM MSE, FM Cosine) of Table 3.

The encoder is fully convolutional with no padding and no normalisation across space: stages of
(valid 3x3x3 conv, ReLU, 2x2x2 max-pool), then one conv whose kernel spans the remaining extent
(the same as flatten + linear). The latent of a patch therefore depends only on that patch's
voxels, and the encoder can run on the whole zero-padded query at once and give the latent of every
window ("dense" encoding, `dense_latents`) equal to encoding each window on its own.

Dense encoding and the stride: a 2x pool makes the encoder's outputs step 2 voxels apart. To get a
latent for every window on the stride-s grid, pools keep their stride while the product of strides
still divides s; later pools run with stride 1 and the following layers with a doubled dilation
(the "a trous" trick); if the pools do not reach s on an axis, the output is subsampled there.
For s = 2 the first pool keeps stride 2 and the rest is dilated, so the output is exactly the
stride-2 grid of windows; it costs one pass over the volume instead of one per shifted copy.

Training is unsupervised: random patches whose centre voxel is not air (> 0), reconstruction MSE,
Adam, an atomic checkpoint that a later call resumes from.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from rprloc_core.allocator import keep_freed_memory
from rprloc_core.baselines.windows import FEATURE_METHODS, check_window_fits, default_device, pad_for_windows
from rprloc_core.geometry.patches import cut_patches, draw_nonair_voxels
from rprloc_core.geometry.volume import Volume


@dataclass
class AEConfig:
    patch_size: tuple = (16, 32, 32)        # voxels (z, y, x); 16x32x32 at 3x2x2 mm = 48x64x64 mm
    latent_dim: int = 64
    channels: tuple = (8, 16, 32)            # one encoder stage per entry

    def __post_init__(self):
        self.patch_size = tuple(int(s) for s in self.patch_size)
        self.channels = tuple(int(c) for c in self.channels)


def _encoder_plan(patch_size, n_stages):
    """Per stage: conv kernel, pool kernel, and the extents the decoder mirrors.

    Kernels shrink to the extent left (never below 1); an axis is pooled only while at least 4
    voxels remain, so small z extents (anisotropic patches) are pooled fewer times."""
    extent = list(patch_size)
    stages = []
    for _ in range(n_stages):
        before = tuple(extent)
        conv_k = tuple(min(3, e) for e in extent)
        extent = [e - k + 1 for e, k in zip(extent, conv_k)]
        pool_k = tuple(2 if e >= 4 else 1 for e in extent)
        extent = [e // p for e, p in zip(extent, pool_k)]
        stages.append({"conv": conv_k, "pool": pool_k, "input_extent": before})
    return stages, tuple(extent)


class PatchAutoencoder(nn.Module):
    def __init__(self, config: AEConfig):
        super().__init__()
        self.config = config
        self.plan, self.final_extent = _encoder_plan(config.patch_size, len(config.channels))
        chans = (1,) + config.channels
        self.convs = nn.ModuleList(nn.Conv3d(chans[i], chans[i + 1], st["conv"]) for i, st in enumerate(self.plan))
        self.to_latent = nn.Conv3d(chans[-1], config.latent_dim, self.final_extent)
        # decoder: latent -> small grid -> (upsample to each stage's input extent, conv) in reverse
        self.from_latent = nn.Linear(config.latent_dim, chans[-1] * int(np.prod(self.final_extent)))
        dec_chans = list(reversed(chans[1:])) + [chans[1]]
        self.dec_convs = nn.ModuleList(nn.Conv3d(dec_chans[i], dec_chans[i + 1], 3, padding=1)
                                       for i in range(len(self.plan)))
        self.to_image = nn.Conv3d(dec_chans[-1], 1, 3, padding=1)

    @property
    def patch_size(self):
        return self.config.patch_size

    def _features(self, x, stride=None):
        """Encoder on (N, 1, z, y, x). stride None: per-patch (ordinary pooling). stride s: dense
        evaluation whose outputs are the windows starting at multiples of s (module docstring)."""
        dilation = [1, 1, 1]
        pooled_stride = [1, 1, 1]
        for conv, st in zip(self.convs, self.plan):
            x = F.relu(F.conv3d(x, conv.weight, conv.bias, dilation=tuple(dilation)))
            if stride is None:
                x = F.max_pool3d(x, st["pool"])
                continue
            pool_stride = []
            pool_dilation = list(dilation)
            for axis, k in enumerate(st["pool"]):
                if k == 2 and stride % (pooled_stride[axis] * 2) == 0:
                    pooled_stride[axis] *= 2
                    pool_stride.append(2)
                else:
                    pool_stride.append(1)
                    if k == 2:
                        dilation[axis] *= 2      # pooled cells of one window now lie 2x further apart
            x = F.max_pool3d(x, st["pool"], stride=tuple(pool_stride), dilation=tuple(pool_dilation))
        x = F.conv3d(x, self.to_latent.weight, self.to_latent.bias, dilation=tuple(dilation))
        if stride is not None:
            # the pools could not reach the stride on some axis (few pools there): subsample the rest
            x = x[(..., *(slice(None, None, stride // p) for p in pooled_stride))]
        return x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, *patch_size) -> (N, latent_dim)."""
        return self._features(x).flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        c_last = self.config.channels[-1]
        x = self.from_latent(z).view(len(z), c_last, *self.final_extent)
        for conv, st in zip(self.dec_convs, reversed(self.plan)):
            x = F.interpolate(x, size=st["input_extent"], mode="trilinear", align_corners=False)
            x = F.relu(conv(x))
        return self.to_image(x)

    def forward(self, x):
        return self.decode(self.encode(x))


def build_autoencoder(config: AEConfig, seed: int) -> PatchAutoencoder:
    """A freshly initialised auto-encoder; the seed fixes the initial weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return PatchAutoencoder(config)


# ----------------------------------------------------------------------------------------------
# Encoding patches and whole volumes

@torch.no_grad()
def encode_windows(model: PatchAutoencoder, windows: np.ndarray, device=None, batch: int = 256) -> np.ndarray:
    """Latents (N, latent_dim) float64 of N windows (N, *patch_size), each encoded on its own."""
    dev = default_device(device)
    model = model.to(dev)          # no train/eval-dependent layers, so the mode does not matter
    windows = np.asarray(windows, dtype=np.float32)
    if tuple(windows.shape[1:]) != model.patch_size:
        raise ValueError(f"windows of size {tuple(windows.shape[1:])} do not match the encoder's "
                         f"patch size {model.patch_size}")
    out = []
    for start in range(0, len(windows), batch):
        x = torch.from_numpy(windows[start:start + batch]).to(dev)[:, None]
        out.append(model.encode(x).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.latent_dim))


@torch.no_grad()
def dense_latents(model: PatchAutoencoder, query_array: np.ndarray, stride: int = 2, device=None,
                  max_slab_bytes: int = 256 * 2 ** 20) -> np.ndarray:
    """Latent (latent_dim, nz, ny, nx) of the window centred at every stride-grid voxel of the
    query (window convention of template_matching, zero padding outside the query).

    The query is processed in z-slabs of whole windows so that the largest intermediate stays near
    `max_slab_bytes`; slabs overlap by one window, and each output still sees exactly its window."""
    s = int(stride)
    if s < 1:
        raise ValueError(f"stride must be a positive integer, got {stride}")
    size = model.patch_size
    check_window_fits(query_array.shape, size)
    dev = default_device(device)
    model = model.to(dev)
    padded = pad_for_windows(torch.as_tensor(np.asarray(query_array), dtype=torch.float32, device=dev), size)
    grid_shape = tuple(len(range(0, d, s)) for d in query_array.shape)

    # bytes per padded z-slice of the biggest intermediate: the first conv's output (full resolution)
    slice_bytes = 4 * max(model.config.channels) * padded.shape[1] * padded.shape[2]
    slab_slices = max(size[0] + s, max_slab_bytes // max(slice_bytes, 1))
    per_slab = max(1, (slab_slices - size[0]) // s + 1)         # output z positions per slab

    out = []
    for z0 in range(0, grid_shape[0], per_slab):
        z1 = min(grid_shape[0], z0 + per_slab)
        slab = padded[z0 * s:(z1 - 1) * s + size[0]][None, None]
        # when pooling floors away a voxel the receptive field is a little smaller than a window,
        # so a few extra outputs (windows running past the slab) can appear at the ends: drop them
        lat = model._features(slab, stride=s)[0]
        lat = lat[:, :z1 - z0, :grid_shape[1], :grid_shape[2]]
        if tuple(lat.shape[1:]) != (z1 - z0,) + grid_shape[1:]:   # guards the stride bookkeeping
            raise RuntimeError(f"dense encoder produced {tuple(lat.shape[1:])}, expected {(z1 - z0,) + grid_shape[1:]}")
        out.append(lat.cpu())
    return torch.cat(out, dim=1).double().numpy()


def latent_scores(latents: np.ndarray, template_latents: np.ndarray, method: str, chunk: int = 8192) -> np.ndarray:
    """Scores (N, P) of N window latents against P template latents. fm_mse: mean squared difference
    (lower is better), computed directly rather than expanded so that it has no cancellation;
    fm_cosine: cosine, -inf for a zero latent."""
    if method not in FEATURE_METHODS:
        raise ValueError(f"method must be one of {FEATURE_METHODS}, not {method!r}")
    w = np.asarray(latents, dtype=np.float64)
    t = np.asarray(template_latents, dtype=np.float64)
    if method == "fm_mse":
        return np.concatenate([((w[i:i + chunk, None, :] - t[None]) ** 2).mean(axis=2)
                               for i in range(0, len(w), chunk)]) if len(w) else np.zeros((0, len(t)))
    w_norm = np.linalg.norm(w, axis=1)
    t_norm = np.linalg.norm(t, axis=1)
    score = (w @ t.T) / np.maximum(np.outer(w_norm, t_norm), 1e-300)
    return np.where((w_norm[:, None] > 0) & (t_norm[None] > 0), score, -np.inf)


def feature_score_maps(model: PatchAutoencoder, query_array: np.ndarray, templates: np.ndarray, method: str,
                       stride: int = 2, device=None, query_latents: np.ndarray | None = None) -> np.ndarray:
    """FM scores (P, nz, ny, nx) of every template at every stride-grid centre of the query.
    `query_latents`: `dense_latents(model, query_array, stride)` computed beforehand, to share one
    dense encoding of a query between organs."""
    templates = np.asarray(templates, dtype=np.float32)
    t_latent = encode_windows(model, templates, device=device)
    lat = dense_latents(model, query_array, stride=stride, device=device) if query_latents is None else query_latents
    expected = (model.config.latent_dim,) + tuple(len(range(0, n, int(stride))) for n in query_array.shape)
    if tuple(lat.shape) != expected:
        raise ValueError(f"query latents of shape {tuple(lat.shape)} do not match the query and stride {expected}")
    grid_shape = lat.shape[1:]
    scores = latent_scores(lat.reshape(lat.shape[0], -1).T, t_latent, method)
    return scores.T.reshape((len(templates),) + tuple(grid_shape))


# ----------------------------------------------------------------------------------------------
# Training

def _as_array(v) -> np.ndarray:
    return v.array if isinstance(v, Volume) else np.asarray(v, dtype=np.float32)


def sample_patches(volumes, n: int, size, rng: np.random.Generator) -> np.ndarray:
    """n patches (n, *size) float32: each from a volume drawn uniformly, centred on a non-air voxel
    (> 0) drawn uniformly in it, zero-padded where it leaves the volume."""
    arrays = [_as_array(v) for v in volumes]
    which = rng.integers(len(arrays), size=n)
    out = np.empty((n,) + tuple(size), dtype=np.float32)
    for v in np.unique(which):
        rows = np.flatnonzero(which == v)
        centres = draw_nonair_voxels(arrays[v], len(rows), rng)
        out[rows] = cut_patches(arrays[v], centres, size)[:, 0].numpy()
    return out


@dataclass
class TrainResult:
    model: PatchAutoencoder
    history: list = field(default_factory=list)     # reconstruction MSE of every step's batch
    step: int = 0
    stopped: str = "steps"                           # "steps", or "time_limit" if the call ran out of time


def save_checkpoint(path, model: PatchAutoencoder, optimizer, step: int, history: list, rng: np.random.Generator):
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"config": asdict(model.config), "model": model.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "step": int(step), "history": [float(h) for h in history],
                "rng_state": rng.bit_generator.state if rng is not None else None}, tmp)
    os.replace(tmp, path)


def load_autoencoder(path, device="cpu") -> PatchAutoencoder:
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = PatchAutoencoder(AEConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def train_autoencoder(volumes, config: AEConfig, steps: int, rng: np.random.Generator, batch_size: int = 8,
                      lr: float = 1e-3, weight_decay: float = 0.0, checkpoint_path=None,
                      checkpoint_every: int = 50, device="cpu", progress: bool = True,
                      time_limit_s: float | None = None) -> TrainResult:
    """Train to reconstruct random non-air patches (no labels) for `steps` steps in all.

    If `checkpoint_path` holds a checkpoint, training resumes from it (model, optimizer, step,
    history, and the state of `rng`, which is overwritten so that resuming draws the same patches
    as an uninterrupted run). The initial weights come from `rng` too.

    time_limit_s: seconds for this call; when they run out the checkpoint is written and training
    stops early (`stopped == "time_limit"`); a later call resumes where it stopped."""
    keep_freed_memory()   # as every trainer: no page faults on each step's activations (allocator.py)
    dev = torch.device(device)
    model = build_autoencoder(config, seed=int(rng.integers(2 ** 31))).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history, step = [], 0
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        ckpt = torch.load(checkpoint_path, map_location=dev, weights_only=False)
        if AEConfig(**ckpt["config"]) != config:
            raise ValueError(f"{checkpoint_path}: checkpoint config {ckpt['config']} differs from {asdict(config)}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        history, step = list(ckpt["history"]), int(ckpt["step"])
        rng.bit_generator.state = ckpt["rng_state"]

    model.train()
    bar = tqdm(total=steps, initial=step, disable=not progress, desc="autoencoder")
    t_call = time.perf_counter()
    stopped = "steps"
    while step < steps:
        batch = torch.from_numpy(sample_patches(volumes, batch_size, config.patch_size, rng)).to(dev)[:, None]
        loss = F.mse_loss(model(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]:.4g}")
        out_of_time = time_limit_s is not None and time.perf_counter() - t_call >= time_limit_s
        if checkpoint_path is not None and (step % checkpoint_every == 0 or step == steps or out_of_time):
            save_checkpoint(checkpoint_path, model, optimizer, step, history, rng)
        if out_of_time and step < steps:
            stopped = "time_limit"
            break
    bar.close()
    model.eval()
    return TrainResult(model=model, history=history, step=step, stopped=stopped)


@torch.no_grad()
def reconstruction_examples(model: PatchAutoencoder, volumes, n: int, rng: np.random.Generator, device="cpu"):
    """n (input, reconstruction) pairs of central z slices (2D float32 arrays) for a figure."""
    model = model.to(device).eval()
    patches = sample_patches(volumes, n, model.patch_size, rng)
    recon = model(torch.from_numpy(patches).to(device)[:, None])[:, 0].cpu().numpy()
    mid = model.patch_size[0] // 2
    return [(patches[i, mid], recon[i, mid]) for i in range(n)]
