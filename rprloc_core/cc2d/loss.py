"""CC2D's self-supervised loss, 2D or 3D (indices (y, x) or (z, y, x)).

A point is chosen in an image; its embedding in an augmented crop (the query vector, one per
scale) must pick out the cell that holds the point in the whole image's map of that scale. Per
scale: cosine similarity of the query vector with every cell, divided by the temperature, softmax,
cross-entropy at the true cell. The coarsest map is searched whole (it has few cells and must
find the rough place); a finer map only in a window of `local_window` cells per axis around the
true cell (finer maps only have to refine what the coarser ones found, and a whole full-resolution
map would put almost all of the softmax's weight on far, irrelevant cells). The loss is the sum
over scales, averaged over the batch.

Map s has stride 2**s (network.py): the point at voxel p lies in cell floor(p / 2**s). The query
vector is read from the crop's maps by linear interpolation at the point's exact position, since
the crop's cells do not line up with the image's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def cell_of(points_idx, scale: int, cells) -> np.ndarray:
    """The cells (..., dims) int64 holding voxel positions (..., dims) on the map of stride
    2**scale with `cells` cells per axis (clipped into the map)."""
    cell = np.floor(np.asarray(points_idx, dtype=float) / 2 ** scale).astype(np.int64)
    return np.clip(cell, 0, np.asarray(cells, dtype=np.int64) - 1)


def embedding_at(maps: Sequence[torch.Tensor], points_idx) -> list[torch.Tensor]:
    """Embeddings (B, L) per scale at voxel positions (B, dims) (one point per batch item), linear
    between cell centres (the centre of cell k of stride 2**s is at voxel (k + 0.5) 2**s - 0.5),
    clamped to the outermost centres; differentiable with respect to the maps."""
    points = torch.as_tensor(np.asarray(points_idx, dtype=np.float64), dtype=maps[0].dtype, device=maps[0].device)
    out = []
    for s, fmap in enumerate(maps):
        cells = torch.as_tensor(fmap.shape[2:], dtype=fmap.dtype, device=fmap.device)
        pos = torch.minimum(torch.clamp((points + 0.5) / 2 ** s - 0.5, min=0), cells - 1)
        # grid_sample with align_corners=True: -1 and 1 are the first and last cell centres
        norm = torch.where(cells > 1, 2 * pos / (cells - 1).clamp(min=1) - 1, torch.zeros_like(pos))
        grid = norm.flip(-1).view(len(points), *[1] * (fmap.ndim - 2), fmap.ndim - 2)   # grid wants (x, y[, z])
        out.append(F.grid_sample(fmap, grid, mode="bilinear", align_corners=True).reshape(fmap.shape[:2]))
    return out


def cosine_map(fmap: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity (B, *cells) of every cell of maps (B, L, *cells) with vectors (B, L)."""
    return F.cosine_similarity(fmap, vectors.view(*vectors.shape, *[1] * (fmap.ndim - 2)), dim=1, eps=1e-8)


def window_around(cell: np.ndarray, cells, size: int) -> tuple[slice, ...]:
    """`size` cells per axis centred on `cell`, moved inside the map (cut to the map if larger)."""
    slices = []
    for c, n in zip(cell, cells):
        width = min(int(size), int(n))
        start = int(np.clip(c - width // 2, 0, n - width))
        slices.append(slice(start, start + width))
    return tuple(slices)


def scale_losses(full_maps: Sequence[torch.Tensor], query_vectors: Sequence[torch.Tensor], points_idx,
                 temperature: float, local_window: int) -> torch.Tensor:
    """Cross-entropy per scale (n_scales,), each averaged over the batch.

    full_maps: the whole images' maps per scale (B, L, *cells), finest first; query_vectors: the
    crops' embeddings at the point per scale (B, L); points_idx: (B, dims) the points' voxels in
    the whole images."""
    points = np.asarray(points_idx).reshape(len(query_vectors[0]), -1)
    last = len(full_maps) - 1
    losses = []
    for s, (fmap, vectors) in enumerate(zip(full_maps, query_vectors)):
        logits = cosine_map(fmap, vectors) / temperature
        cells = fmap.shape[2:]
        true = cell_of(points, s, cells)
        per_item = []
        for b in range(len(points)):
            window = tuple(slice(0, n) for n in cells) if s == last else window_around(true[b], cells, local_window)
            scores = logits[b][window].reshape(-1)
            target = np.ravel_multi_index(tuple(t - w.start for t, w in zip(true[b], window)),
                                          tuple(w.stop - w.start for w in window))
            per_item.append(torch.logsumexp(scores, 0) - scores[int(target)])
        losses.append(torch.stack(per_item).mean())
    return torch.stack(losses)


def ssl_loss(full_maps: Sequence[torch.Tensor], query_vectors: Sequence[torch.Tensor], points_idx,
             temperature: float, local_window: int) -> torch.Tensor:
    """CC2D's loss: the per-scale cross-entropies (`scale_losses`) summed over scales."""
    return scale_losses(full_maps, query_vectors, points_idx, temperature, local_window).sum()
