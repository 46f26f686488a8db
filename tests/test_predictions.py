"""The shared prediction cache: written atomically, read back whole, stale keys never read."""

import numpy as np
import pytest

from rprloc_core.evaluation.predictions import PredictionCache
from rprloc_core.geometry.boxes import VoxelBox, bounding_box, box_from_points


def test_write_read_and_stale_key(tmp_path):
    cache = PredictionCache(tmp_path / "m", {"models": "abc", "k": 5})
    points = np.arange(3 * 4 * 3, dtype=float).reshape(3, 4, 3)
    assert not cache.has("s", "q") and cache.missing([("s", "q")]) == [("s", "q")]
    cache.write("s", "q", ["A", "A", "B", "B"], points_mm=points, wall_s=1.5)
    assert cache.has("s", "q") and cache.missing([("s", "q")]) == []
    assert not list((tmp_path / "m").glob(".*tmp*"))
    run = cache.read("s", "q")
    np.testing.assert_array_equal(run["points_mm"], points)
    assert run.organs == ["A", "B"] and float(run["wall_s"]) == 1.5
    np.testing.assert_array_equal(run.organ_points(run["points_mm"], "B"), points[:, 2:])

    retrained = PredictionCache(tmp_path / "m", {"models": "def", "k": 5})
    assert not retrained.has("s", "q")
    with pytest.raises(FileNotFoundError, match="stale"):
        retrained.read("s", "q")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cache.read("s", "other")


def test_voxel_box_convention():
    mask = np.zeros((5, 6, 7), np.uint8)
    mask[1:3, 2:5, 3] = 1
    box = bounding_box(mask)
    assert isinstance(box, VoxelBox)
    np.testing.assert_array_equal(box.lo, [1, 2, 3])
    np.testing.assert_array_equal(box.hi, [2, 4, 3])           # inclusive: the last voxel centre
    lo, hi = box                                               # still a (lo, hi) pair
    np.testing.assert_array_equal(box.centre, (lo + hi) / 2)
    np.testing.assert_array_equal(box_from_points([[1, 2, 3], [2, 4, 3]]).hi, box.hi)
