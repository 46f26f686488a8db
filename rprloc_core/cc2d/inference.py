"""CC2D stage 1 at inference: landmarks of a template image found in a query image.

For each template landmark: its embedding in the template at every scale (linear between cell
centres, as for the crops in training), the cosine map of that vector over the query's map of the
same scale, each map upsampled to full resolution (linear, cell centres at (k + 0.5) 2**s - 0.5),
clipped to [0, 1] (a negative cosine would flip the product's sign), multiplied over the scales;
the argmax is the prediction. The coarse maps say roughly where, the fine ones exactly where.

The query and the template are each embedded once, all landmarks share those maps; the cosine
maps are made `landmarks_per_batch` landmarks at a time to bound memory (a 107 x 125 x 150 volume
takes 8 MB per landmark and scale). Indices are (z, y, x) in 3D, (y, x) in 2D, on the images'
own grid. Runs on the device the model is on (CPU or CUDA).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rprloc_core.cc2d.loss import embedding_at


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def as_input(image, device) -> torch.Tensor:
    """An image (numpy or tensor, 2D or 3D) as a float32 network input (1, 1, *shape) on `device`."""
    tensor = torch.as_tensor(np.asarray(image, dtype=np.float32) if not torch.is_tensor(image) else image,
                             dtype=torch.float32, device=device)
    return tensor[None, None]


@torch.inference_mode()
def embed(model: torch.nn.Module, image) -> list[torch.Tensor]:
    """The image's maps per scale (L, *cells), finest first, with the model in eval mode."""
    was_training = model.training
    model.eval()
    try:
        return [m[0] for m in model(as_input(image, model_device(model)))]
    finally:
        model.train(was_training)


def _template_vectors(template_maps: Sequence[torch.Tensor], points_idx) -> list[torch.Tensor]:
    points = np.asarray(points_idx, dtype=float).reshape(-1, template_maps[0].ndim - 1)
    return embedding_at([m[None].expand(len(points), *m.shape) for m in template_maps], points)


def unit_cosine(qmap: torch.Tensor, vectors: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cosine similarity (P, *cells) of P vectors (P, L) with every cell of one map (L, *cells):
    both sides normalised once, then one matrix product (the same numbers as `cosine_map` on the
    map repeated P times, which normalised the whole map once per landmark)."""
    cells = qmap.shape[1:]
    flat = qmap.reshape(len(qmap), -1)
    flat = flat / flat.norm(dim=0, keepdim=True).clamp(min=eps)
    unit = vectors / vectors.norm(dim=1, keepdim=True).clamp(min=eps)
    return (unit @ flat).reshape(len(vectors), *cells)


def scale_maps(query_maps: Sequence[torch.Tensor], vectors: Sequence[torch.Tensor], shape) -> torch.Tensor:
    """The clipped, upsampled cosine maps (n_scales, P, *shape) of P landmark vectors (per scale
    (P, L)) over one query's maps (per scale (L, *cells)); `shape` is the query image's."""
    shape = tuple(int(s) for s in shape)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    out = []
    for s, (qmap, vec) in enumerate(zip(query_maps, vectors)):
        cos = unit_cosine(qmap, vec)[:, None]                                               # (P, 1, *cells)
        if s > 0:
            cos = F.interpolate(cos, size=tuple(n * 2 ** s for n in cos.shape[2:]), mode=mode, align_corners=False)
        out.append(cos[(slice(None), 0, *(slice(0, n) for n in shape))].clamp(0, 1))
    return torch.stack(out)


@torch.inference_mode()
def locate_subsets(query_maps: Sequence[torch.Tensor], vectors: Sequence[torch.Tensor], shape, subsets,
                   landmarks_per_batch: int = 8) -> list[np.ndarray]:
    """For each subset of scale indices (0 = finest), the argmax (P, dims) int64 of the product of
    those scales' `scale_maps`: one pass over the maps serves every subset (the scale ablation)."""
    shape = tuple(int(s) for s in shape)
    found = [[] for _ in subsets]
    for start in range(0, len(vectors[0]), landmarks_per_batch):
        maps = scale_maps(query_maps, [v[start:start + landmarks_per_batch] for v in vectors], shape)
        for out, subset in zip(found, subsets):
            flat = maps[list(subset)].prod(0).reshape(maps.shape[1], -1).argmax(1).cpu().numpy()
            out.append(np.stack(np.unravel_index(flat, shape), axis=1))
    return [np.concatenate(f).astype(np.int64) for f in found]


def locate(query_maps: Sequence[torch.Tensor], vectors: Sequence[torch.Tensor], shape,
           landmarks_per_batch: int = 8) -> np.ndarray:
    """Argmax (P, dims) int64 of the product over all scales of `scale_maps`, in batches of landmarks."""
    return locate_subsets(query_maps, vectors, shape, [range(len(query_maps))], landmarks_per_batch)[0]


@torch.inference_mode()
def template_vectors(model: torch.nn.Module, template_image, template_points_idx) -> list[torch.Tensor]:
    """The template landmarks' embeddings per scale (P, L), finest first (embeds the template once)."""
    return _template_vectors(embed(model, template_image), template_points_idx)


@torch.inference_mode()
def localize_with_vectors(model: torch.nn.Module, query_image, vectors: Sequence[torch.Tensor],
                          landmarks_per_batch: int = 8) -> np.ndarray:
    """Predicted voxels (P, dims) in the query for landmark embeddings from `template_vectors`."""
    return locate(embed(model, query_image), vectors, np.shape(query_image), landmarks_per_batch)


@torch.inference_mode()
def localize_landmarks(model: torch.nn.Module, query_image, template_image, template_points_idx,
                       landmarks_per_batch: int = 8, return_maps_for: int | None = None):
    """The template landmarks (P, dims) found in the query image: predicted voxels (P, dims) int64
    on the query's grid. With `return_maps_for=i`, also landmark i's clipped, upsampled per-scale
    maps (n_scales, *query shape) float32 numpy, finest first (their product is what the argmax
    was taken of): returns (indices, maps)."""
    vectors = template_vectors(model, template_image, template_points_idx)
    query_maps = embed(model, query_image)
    found = locate(query_maps, vectors, np.shape(query_image), landmarks_per_batch)
    if return_maps_for is None:
        return found
    i = int(return_maps_for)
    maps = scale_maps(query_maps, [v[i:i + 1] for v in vectors], np.shape(query_image))[:, 0]
    return found, maps.float().cpu().numpy()


@torch.inference_mode()
def similarity_maps(model: torch.nn.Module, image, template_image, template_points_idx) -> np.ndarray:
    """Every template landmark's clipped, upsampled cosine maps over `image`: (P, n_scales, *shape)
    float32, finest scale first. For drawing: it holds P x n_scales full-size maps (a 3D volume
    of 2 M voxels: 40 MB per landmark with five scales)."""
    vectors = template_vectors(model, template_image, template_points_idx)
    maps = scale_maps(embed(model, image), vectors, np.shape(image))
    return maps.transpose(0, 1).float().cpu().numpy()
