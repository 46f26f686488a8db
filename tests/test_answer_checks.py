"""Checks of an answer without labels: points on the scan's edge, and the fine model's remaining move."""

import numpy as np
import pytest
from test_inference import SPACING, PositionOracle, encoded_volume, support_points

from rprloc_core.experiments.answer_checks import cut_volume
from rprloc_core.geometry.volume import Volume
from rprloc_core.rprloc.answer_checks import organ_checks, points_on_scan_edge
from rprloc_core.rprloc.inference import encode_supports, localize, remaining_moves_mm


def test_points_on_the_edge_are_those_within_half_a_voxel_of_the_outermost_voxels():
    volume = Volume(np.zeros((10, 12, 14), np.float32), (3.0, 2.0, 2.0), (100.0, -20.0, 5.0))
    lo, hi = volume.extent_mm()
    inside = (lo + hi) / 2
    points = np.array([inside, [lo[0], inside[1], inside[2]], [inside[0], hi[1] - 0.9, inside[2]],
                       [inside[0], inside[1], lo[2] + 1.1]])
    assert points_on_scan_edge(volume, points).tolist() == [False, True, True, False]


def test_remaining_move_is_zero_at_the_landmark_and_the_offset_elsewhere():
    volume = encoded_volume()
    points = support_points(volume)
    fine = PositionOracle((4, 8, 8), spacing_mm=list(SPACING))
    embeddings = encode_supports((volume, points), {"fine": fine})["fine"]
    assert np.abs(remaining_moves_mm(volume, points, fine, embeddings)).max() < 1e-3
    shifted = points + np.array([6.0, -4.0, 2.0])                   # on voxels, inside the volume
    moves = remaining_moves_mm(volume, shifted, fine, embeddings)
    assert np.allclose(moves, [-6.0, 4.0, -2.0], atol=1e-3)
    with pytest.raises(ValueError, match="shape"):
        remaining_moves_mm(volume, points[:3], fine, embeddings)


def test_an_organ_cut_off_by_the_scan_is_warned_of_and_a_found_one_is_not():
    volume = encoded_volume()
    points = support_points(volume, n=12, seed=3)
    organs = ["A"] * 6 + ["B"] * 6
    # the scan keeps the slices up to one below organ B's lowest landmark: B lies wholly above it
    points[6:, 0] = volume.idx_to_mm([15, 0, 0])[0] + np.arange(6) % 3 * SPACING[0]
    points[:6, 0] = volume.idx_to_mm([6, 0, 0])[0] + np.arange(6) % 3 * SPACING[0]
    scan = cut_volume(volume, 0, 14)
    fine = PositionOracle((4, 8, 8), spacing_mm=list(SPACING))
    embeddings = encode_supports((volume, points), {"coarse": fine})      # one model, in the first place
    result = localize(scan, (volume, points), fine, rng=np.random.default_rng(0), k=3, organ_of_point=organs,
                      support_embeddings=embeddings)
    moves = remaining_moves_mm(scan, result.points_mm, fine, embeddings["coarse"])
    checks = organ_checks(scan, result.points_mm, organs, moves, warn_move_mm=5.0)
    assert checks["A"] == {"points_on_scan_edge": [], "remaining_move_mm": pytest.approx(0, abs=1e-3),
                           "warnings": []}
    b = checks["B"]
    assert b["points_on_scan_edge"] == ["z_min", "z_max", "y_min", "y_max", "x_min", "x_max"]
    assert b["remaining_move_mm"] > 5.0
    assert len(b["warnings"]) == 2 and "edge" in b["warnings"][0] and "missing" in b["warnings"][1]
    # without moves only the edge is checked
    assert organ_checks(scan, result.points_mm, organs)["B"]["remaining_move_mm"] is None
    with pytest.raises(ValueError, match="organ names"):
        organ_checks(scan, result.points_mm, organs[:5])


def test_cut_volume_keeps_the_mm_frame():
    volume = encoded_volume()
    cut = cut_volume(volume, 4, 12)
    assert cut.shape == (8, *volume.shape[1:])
    assert np.allclose(cut.idx_to_mm([0, 3, 5]), volume.idx_to_mm([4, 3, 5]))
    assert np.array_equal(cut.array[2], volume.array[6])
