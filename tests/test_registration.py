"""Atlas registration baseline: a known shift is recovered and masks land where they should."""

import numpy as np
import pytest

from rprloc_core.baselines.registration import RegistrationConfig, register, warp_mask
from rprloc_core.geometry.boxes import bounding_box
from rprloc_core.geometry.volume import Volume


def blob_volume(shift_vox=(0, 0, 0), shape=(40, 48, 48)):
    """A smooth 'body' with off-centre structures, shifted by whole voxels; a cubic 'organ' mask."""
    grid = np.indices(shape, dtype=float)
    centre = np.asarray(shape) / 2 + np.asarray(shift_vox)
    body = np.exp(-sum(((g - c) / (s * 0.3)) ** 2 for g, c, s in zip(grid, centre, shape)))
    bright = np.exp(-sum(((g - c - o) / 3.0) ** 2 for g, c, o in zip(grid, centre, (5, -6, 4))))
    dark = np.exp(-sum(((g - c - o) / 4.0) ** 2 for g, c, o in zip(grid, centre, (-6, 5, -7))))
    array = (0.6 * body + 0.8 * bright - 0.3 * dark).clip(0, None).astype(np.float32)
    mask = np.zeros(shape, bool)
    lo = np.round(centre + (2, -8, 1)).astype(int)
    mask[lo[0]:lo[0] + 6, lo[1]:lo[1] + 5, lo[2]:lo[2] + 7] = True
    return Volume(array, (3.0, 2.0, 2.0)), mask


@pytest.mark.parametrize("transform", ["translation", "rigid", "affine"])
def test_known_shift_is_recovered(transform):
    support, support_mask = blob_volume()
    query, query_mask = blob_volume(shift_vox=(3, -4, 5))
    config = RegistrationConfig(transform=transform, shrink_factors=(2, 1), smoothing_vox=(1.0, 0.0),
                                iterations=200, sampling_fraction=0.5)
    warped = warp_mask(support_mask, support, query, register(query, support, config))
    got, want = bounding_box(warped), bounding_box(query_mask)
    assert np.abs(np.asarray(got.lo) - np.asarray(want.lo)).max() <= 1
    assert np.abs(np.asarray(got.hi) - np.asarray(want.hi)).max() <= 1


def test_deterministic_and_bad_config():
    support, _ = blob_volume()
    query, _ = blob_volume(shift_vox=(1, 2, -2))
    config = RegistrationConfig(shrink_factors=(2, 1), smoothing_vox=(1.0, 0.0), iterations=30)
    a, b = register(query, support, config), register(query, support, config)
    assert a.GetParameters() == b.GetParameters()
    with pytest.raises(ValueError, match="transform must be one of"):
        RegistrationConfig(transform="bspline")
    with pytest.raises(ValueError, match="one entry per level"):
        RegistrationConfig(shrink_factors=(4, 2), smoothing_vox=(1.0,))
