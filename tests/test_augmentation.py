"""Spatial augmentation of Pnet training patches (rprloc.augmentation): centres and offsets kept."""

import numpy as np
import pytest
import torch

from rprloc_core.geometry.patches import cut_patches
from rprloc_core.rprloc.augmentation import draw_transforms, sample_patches, source_size


def _volume(shape=(40, 48, 44), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("patch", [(16, 16, 16), (16, 32, 32), (15, 17, 9)])
def test_no_zoom_and_no_turn_give_the_plain_cut(patch):
    array = _volume()
    centres = np.array([[20, 24, 22], [5, 40, 3], [30, 10, 40]])
    spacing = (3.0, 2.0, 2.0)
    big = source_size(patch, spacing, 0.2, 15.0)
    sampled = sample_patches(cut_patches(array, centres, big), patch, spacing, np.ones(3), np.zeros(3))
    torch.testing.assert_close(sampled, cut_patches(array, centres, patch), atol=1e-4, rtol=0)


def test_a_quarter_turn_turns_the_patch_about_its_centre():
    array = _volume((20, 31, 31))
    centre = np.array([[10, 15, 15]])
    patch = (5, 9, 9)
    big = source_size(patch, (2.0, 2.0, 2.0), 0.0, 45.0)
    turned = sample_patches(cut_patches(array, centre, big), patch, (2.0, 2.0, 2.0), [1.0], [np.pi / 2])
    plain = cut_patches(array, centre, patch)
    # A quarter turn in the y-x plane maps voxels onto voxels: the centre stays, the rest rotates.
    torch.testing.assert_close(turned[0, 0], torch.rot90(plain[0, 0], k=-1, dims=(1, 2)), atol=1e-5, rtol=0)
    assert torch.isclose(turned[0, 0, 2, 4, 4], plain[0, 0, 2, 4, 4])


def test_zoom_takes_in_more_tissue_and_keeps_the_centre():
    array = np.broadcast_to(np.arange(30, dtype=np.float32)[None, :, None], (30, 30, 30)).copy()  # value = y index
    centre = np.array([[15, 15, 15]])
    patch = (8, 8, 8)
    big = source_size(patch, (1.0, 1.0, 1.0), 0.5, 0.0)
    zoomed = sample_patches(cut_patches(array, centre, big), patch, (1.0, 1.0, 1.0), [1.5], [0.0])[0, 0]
    assert float(zoomed[4, 4, 4]) == pytest.approx(15.0)           # the centre voxel is the same tissue
    assert float(zoomed[4, 7, 4] - zoomed[4, 0, 4]) == pytest.approx(7 * 1.5)


def test_anisotropic_turn_is_in_millimetres():
    # y spacing twice x spacing: a point 4 mm along y from the centre turned by 90 degrees lies 4 mm along x
    array = np.zeros((9, 21, 41), dtype=np.float32)
    array[4, 10 + 2, 20] = 1.0                                        # 2 voxels x 2 mm along +y
    spacing = (1.0, 2.0, 1.0)
    patch = (3, 11, 21)
    big = source_size(patch, spacing, 0.0, 45.0)
    out = sample_patches(cut_patches(array, np.array([[4, 10, 20]]), big), patch, spacing, [1.0], [-np.pi / 2])
    where = np.unravel_index(int(out[0, 0].argmax()), patch)
    assert abs(where[2] - 10) == 4 and where[1] == 5                 # 4 voxels x 1 mm along x


def test_source_size_covers_the_largest_reach():
    big = source_size((16, 16, 16), (6.0, 4.0, 4.0), 0.1, 10.0)
    assert big[0] >= 16 * 1.1 and big[1] >= 16 * 1.1 * (np.cos(np.radians(10)) + np.sin(np.radians(10)))
    assert source_size((16, 32, 32), (3.0, 2.0, 2.0), 0.0, 0.0) == (18, 34, 34)  # one trilinear neighbour


def test_draws_only_what_is_switched_on():
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    scales, yaws = draw_transforms(5, 0.0, 0.0, rng)
    assert rng.bit_generator.state == before and np.all(scales == 1) and np.all(yaws == 0)
    scales, yaws = draw_transforms(1000, 0.1, 10.0, np.random.default_rng(1))
    assert scales.min() >= 0.9 and scales.max() <= 1.1 and np.abs(yaws).max() <= np.radians(10)


@pytest.mark.parametrize("zoom, yaw", [(-0.1, 0.0), (1.0, 0.0), (0.1, -1.0), (0.1, 90.0)])
def test_bad_settings_are_refused(zoom, yaw):
    with pytest.raises(ValueError):
        draw_transforms(3, zoom, yaw, np.random.default_rng(0))
