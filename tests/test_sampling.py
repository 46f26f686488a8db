"""Patch cutting and the label-free pair samplers."""

import inspect

import numpy as np
import pytest
import torch

from rprloc_core.geometry.patches import (
    PatchCutter,
    cut_patch_naive,
    cut_patches,
    draw_nonair_voxels,
    require_volume_fits_patch,
)
from rprloc_core.geometry.volume import Volume
from rprloc_core.rprloc import sampling
from rprloc_core.rprloc.sampling import (
    draw_fine_centres,
    draw_training_groups,
    fixed_validation_pairs,
    off_diagonal,
    pair_offsets_mm,
)


def phantom(shape=(20, 30, 34), seed=0):
    """An ellipsoid 'body' of non-air intensities in air (exact zeros)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    body = (z / 0.9) ** 2 + (y / 0.8) ** 2 + (x / 0.7) ** 2 < 1
    return Volume(np.where(body, 0.2 + 0.8 * rng.random(shape), 0.0).astype(np.float32), (3.0, 2.0, 2.0))


# ---------------------------------------------------------------- patches

def test_cut_patches_matches_naive_reference_inside_outside_and_clamped():
    rng = np.random.default_rng(1)
    array = rng.random((12, 15, 17)).astype(np.float32)
    centres = rng.uniform(-4, 20, size=(50, 3))          # some beyond the volume: clamped inside
    for size in [(4, 6, 5), (3, 3, 3), (8, 8, 8)]:
        patches = cut_patches(array, centres, size)
        assert patches.shape == (50, 1, *size) and patches.dtype == torch.float32
        for i, c in enumerate(centres):
            assert np.array_equal(patches[i, 0].numpy(), cut_patch_naive(array, c, size))


def test_patch_centre_convention_and_zero_padding():
    array = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7) + 1
    patch = cut_patches(array, [[0.4, 2.6, 3.5]], (3, 4, 2))[0, 0].numpy()   # rounds to (0, 3, 4)
    assert np.all(patch[0] == 0)                                            # z = -1 is outside: zero
    assert patch[1, 2, 1] == array[0, 3, 4]                                 # centre at index p // 2
    assert np.array_equal(patch[1:], array[0:2, 1:5, 3:5])


def test_patch_cutter_reuses_one_padding():
    array = np.random.default_rng(0).random((10, 10, 10)).astype(np.float32)
    cutter = PatchCutter(array, (4, 4, 4))
    c = np.array([[5, 5, 5], [0, 9, 3]])
    assert torch.equal(cutter.cut(c), cut_patches(array, c, (4, 4, 4)))


def test_volume_smaller_than_patch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"smaller than the patch \(16, 32, 32\) along z: 8 < 16"):
        require_volume_fits_patch((8, 40, 40), (16, 32, 32), "query")
    require_volume_fits_patch((16, 32, 32), (16, 32, 32))


def test_nonair_draws():
    vol = phantom()
    idx = draw_nonair_voxels(vol.array, 500, np.random.default_rng(0))
    assert idx.shape == (500, 3) and np.all(vol.array[tuple(idx.T)] > 0)
    single = np.zeros((30, 30, 30), np.float32)
    single[3, 4, 5] = 0.5                                # acceptance ~4e-5: the explicit fallback
    assert np.all(draw_nonair_voxels(single, 7, np.random.default_rng(0)) == [3, 4, 5])
    with pytest.raises(ValueError, match="no non-air voxel"):
        draw_nonair_voxels(np.zeros((5, 5, 5), np.float32), 3, np.random.default_rng(0))


# ---------------------------------------------------------------- samplers

def test_coarse_groups_are_nonair_and_reproducible():
    vols = [phantom(seed=s) for s in range(3)]
    a = draw_training_groups(vols, 4, 8, "coarse", np.random.default_rng(5))
    b = draw_training_groups(vols, 4, 8, "coarse", np.random.default_rng(5))
    c = draw_training_groups(vols, 4, 8, "coarse", np.random.default_rng(6))
    assert a.centres.shape == (4, 8, 3)
    assert np.array_equal(a.centres, b.centres) and np.array_equal(a.volume_index, b.volume_index)
    assert not np.array_equal(a.centres, c.centres)
    for v, cs in zip(a.volume_index, a.centres):
        assert np.all(vols[v].array[tuple(cs.T)] > 0)
    # 3 volumes, 4 per step: volumes are drawn with replacement only when there are too few
    assert len(set(draw_training_groups(vols, 3, 4, "coarse", np.random.default_rng(0)).volume_index)) == 3


def test_fine_offsets_stay_within_range():
    vols = [phantom(seed=s) for s in range(2)]
    fine_range = (4, 9, 10)
    groups = draw_training_groups(vols, 6, 10, "fine", np.random.default_rng(2), fine_range_vox=fine_range)
    offsets_vox = np.abs(pair_offsets_mm(groups.centres, (1, 1, 1)))
    assert np.all(offsets_vox <= np.asarray(fine_range))
    assert offsets_vox[..., 2].max() > 0                 # and they are not all zero
    for v, cs in zip(groups.volume_index, groups.centres):
        assert np.all(vols[v].array[tuple(cs.T)] > 0)
    with pytest.raises(ValueError, match="fine_range_vox"):
        draw_training_groups(vols, 2, 4, "fine", np.random.default_rng(0))


def test_coarse_local_groups_mix_short_and_whole_volume_offsets():
    vols = [phantom(seed=s) for s in range(3)]
    local_range = (2, 3, 3)
    groups = draw_training_groups(vols, 400, 6, "coarse", np.random.default_rng(3),
                                  local_fraction=0.5, local_range_vox=local_range)
    spread = np.abs(pair_offsets_mm(groups.centres, (1, 1, 1))).max(axis=(1, 2))    # (G, 3) per group
    local = np.all(spread <= np.asarray(local_range), axis=1)
    assert 0.4 < local.mean() < 0.65          # half local, plus the odd whole-volume group that is compact
    assert spread[~local].max() > 3 * max(local_range)
    for v, cs in zip(groups.volume_index, groups.centres):
        assert np.all(vols[v].array[tuple(cs.T)] > 0)
    # without local groups the random stream is the one it always was
    plain = draw_training_groups(vols, 4, 6, "coarse", np.random.default_rng(3))
    same = draw_training_groups(vols, 4, 6, "coarse", np.random.default_rng(3), local_fraction=0.0)
    assert np.array_equal(plain.centres, same.centres)
    with pytest.raises(ValueError, match="local_fraction"):
        draw_training_groups(vols, 2, 4, "fine", np.random.default_rng(0), fine_range_vox=(2, 2, 2),
                             local_fraction=0.5, local_range_vox=(2, 2, 2))


def test_fine_centres_near_air_boundary():
    array = np.zeros((10, 10, 10), np.float32)
    array[0, 0, 0] = 1.0                                 # a single non-air voxel: always that one
    assert np.all(draw_fine_centres(array, 5, (4, 4, 4), np.random.default_rng(0)) == 0)


def test_pair_offsets_are_support_minus_query_in_mm():
    centres = np.array([[[0, 0, 0], [1, 2, 3]]])
    off = pair_offsets_mm(centres, (3.0, 2.0, 1.0))
    assert np.allclose(off[0, 1, 0], [3.0, 4.0, 3.0])     # query 0 -> support 1
    assert np.allclose(off[0, 0, 1], [-3.0, -4.0, -3.0])
    assert off_diagonal(3).sum() == 6


def test_fixed_validation_pairs_are_fixed():
    vols = [phantom(seed=s) for s in range(3)]
    a = fixed_validation_pairs(vols, 500, "coarse", np.random.default_rng(11), patches_per_group=6)
    b = fixed_validation_pairs(vols, 500, "coarse", np.random.default_rng(11), patches_per_group=6)
    c = fixed_validation_pairs(vols, 500, "coarse", np.random.default_rng(12), patches_per_group=6)
    pairs = len(a.volume_index) * 6 * 5
    assert pairs >= 500 and pairs - 500 < 30
    assert np.array_equal(a.centres, b.centres) and not np.array_equal(a.centres, c.centres)
    assert set(a.volume_index) == {0, 1, 2}
    fine = fixed_validation_pairs(vols, 100, "fine", np.random.default_rng(0), 5, fine_range_vox=(2, 6, 6))
    assert np.all(np.abs(pair_offsets_mm(fine.centres, (1, 1, 1))) <= [2, 6, 6])


def test_no_sampler_takes_a_label():
    for name, fn in inspect.getmembers(sampling, inspect.isfunction):
        if fn.__module__ != sampling.__name__:
            continue
        params = " ".join(inspect.signature(fn).parameters).lower()
        assert not any(word in params for word in ("label", "mask", "seg", "organ")), name
