import numpy as np
import pytest
import SimpleITK as sitk

from rprloc_core.errors import EmptyMaskError
from rprloc_core.geometry.boxes import bounding_box, box_from_landmarks, mask_centroid
from rprloc_core.geometry.landmarks import diagonal_points, extreme_points, with_support_box_size
from rprloc_core.geometry.space import index_to_lps, lps_to_index, xyz_to_zyx, zyx_to_xyz


def test_axis_order_round_trip():
    v = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert np.array_equal(xyz_to_zyx(v), [[3, 2, 1], [6, 5, 4]])
    assert np.array_equal(zyx_to_xyz(xyz_to_zyx(v)), v)


def test_index_physical_round_trip_with_direction():
    image = sitk.Image(10, 12, 14, sitk.sitkUInt8)  # x, y, z sizes
    image.SetSpacing((0.8, 1.5, 3.0))
    image.SetOrigin((-20.0, 5.0, 100.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS-like flips
    idx = np.array([[2.0, 3.5, 4.25], [0, 0, 0]])  # z, y, x
    pos = index_to_lps(image, idx)
    for p, i in zip(pos, idx):  # agrees with SimpleITK itself
        assert np.allclose(p, image.TransformContinuousIndexToPhysicalPoint(tuple(i[::-1])))
    assert np.allclose(lps_to_index(image, pos), idx)


def test_bounding_box_and_points_by_hand():
    mask = np.zeros((5, 6, 7), np.uint8)
    mask[1, 2, 3] = 1
    mask[3, 4, 5] = 1
    mask[2, 1:4, 2] = 1          # voxels (2,1,2), (2,2,2), (2,3,2)
    lo, hi = bounding_box(mask)
    assert lo.tolist() == [1, 1, 2] and hi.tolist() == [3, 4, 5]
    pts = extreme_points(mask)
    # z_min face holds only (1,2,3); y_min face only (2,1,2); x_min face (2,1,2),(2,2,2),(2,3,2) -> median (2,2,2)
    assert pts[0].tolist() == [1, 2, 3]
    assert pts[1].tolist() == [3, 4, 5]
    assert pts[2].tolist() == [2, 1, 2]
    assert pts[4].tolist() == [2, 2, 2]
    centroid = extreme_points(mask, rule="centroid")
    assert centroid[4].tolist() == [2, 2, 2]
    assert np.array_equal(diagonal_points(mask), [[1, 1, 2], [3, 4, 5]])
    box = box_from_landmarks(pts, "extreme")
    assert np.array_equal(box[0], lo) and np.array_equal(box[1], hi)


def test_one_voxel_organ():
    mask = np.zeros((4, 4, 4), bool)
    mask[2, 1, 3] = True
    pts = extreme_points(mask)
    assert np.all(pts == [2, 1, 3])
    lo, hi = bounding_box(mask)
    assert np.array_equal(lo, hi)


def test_empty_mask_is_a_clear_error():
    with pytest.raises(EmptyMaskError, match="Brainstem.*empty"):
        extreme_points(np.zeros((3, 3, 3)), name="Brainstem")
    with pytest.raises(EmptyMaskError, match="Mandible.*empty"):
        mask_centroid(np.zeros((3, 3, 3)), name="Mandible")


def test_mask_centroid_by_hand():
    mask = np.zeros((4, 5, 6), np.uint8)
    mask[1, 2, 3] = mask[3, 2, 5] = 1
    np.testing.assert_allclose(mask_centroid(mask), [2.0, 2.0, 4.0])


def test_extreme_point_axis_and_volume_centre():
    from rprloc_core.geometry.landmarks import EXTREME_POINT_NAMES, extreme_point_axis
    from rprloc_core.geometry.volume import Volume

    assert [extreme_point_axis(n) for n in EXTREME_POINT_NAMES] == [0, 0, 1, 1, 2, 2]
    volume = Volume(np.zeros((4, 5, 6), np.float32), np.array([3.0, 2.0, 2.0]), np.array([10.0, 0.0, -4.0]))
    np.testing.assert_allclose(volume.centre_mm(), [10.0 + 1.5 * 3, 4.0, -4.0 + 2.5 * 2])


@pytest.mark.parametrize("seed", range(5))
def test_bounding_box_equals_the_box_of_the_voxel_list(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((7, 9, 11)) > 0.97 + 0.005 * seed
    if not mask.any():
        mask[3, 4, 5] = True
    voxels = np.argwhere(mask)
    box = bounding_box(mask.astype(np.uint8) * 3)                  # any non-zero value is inside
    assert np.array_equal(box.lo, voxels.min(axis=0)) and np.array_equal(box.hi, voxels.max(axis=0))
    with pytest.raises(EmptyMaskError):
        bounding_box(np.zeros((2, 3, 4)))


def test_support_box_size_prior_by_hand():
    support = np.array([[0, 5, 5], [10, 5, 5], [5, 0, 5], [5, 20, 5], [5, 5, 0], [5, 5, 4]], dtype=float)
    predicted = support * [2.0, 0.5, 1.0] + [100, 50, 0]          # extents 20, 10, 5 instead of 10, 20, 5
    for weight, extent in ((0.0, [20, 10, 5]), (1.0, [10, 20, 5]), (0.5, [15, 15, 5])):
        out = with_support_box_size(predicted, support, weight)
        assert np.allclose(np.ptp(out, axis=0), extent)
        assert np.allclose(out.mean(axis=0), predicted.mean(axis=0))   # centred on the predicted points' mean
    flat = support.copy()
    flat[:, 2] = 7.0                                               # the support does not spread along x
    assert np.allclose(with_support_box_size(predicted, flat, 1.0)[:, 2], predicted[:, 2].mean())
    with pytest.raises(ValueError, match="weight"):
        with_support_box_size(predicted, support, 1.5)
    with pytest.raises(ValueError, match="shape"):
        with_support_box_size(predicted[:2], support, 0.5)


def test_box_centre_rules_by_hand():
    """The centre rules of notebook 04: the profile's rule is `apply_prior` itself; alpha 0 moves
    every organ by the query-wide shift; a median ignores one wild point; bounding points weigh
    their own axis only."""
    from rprloc_core.experiments.size_prior import apply_prior, recentred

    box = np.array([[0, 5, 5], [10, 5, 5], [5, 0, 5], [5, 10, 5], [5, 5, 0], [5, 5, 10]], dtype=float)
    support = np.concatenate([box, box + 50.0])
    organs = np.array(["a"] * 6 + ["b"] * 6)
    shift = np.zeros_like(support)
    shift[:6] = [2.0, 0.0, 0.0]                 # organ a moved 2 mm along z, organ b 6 mm
    shift[6:] = [6.0, 0.0, 0.0]
    predicted = support + shift
    assert np.allclose(recentred(predicted, support, organs, 0.5), apply_prior(predicted, support, organs, 0.5))
    pooled = recentred(predicted, support, organs, 0.5, alpha=0.0)
    assert np.allclose(pooled[:6].mean(axis=0) - support[:6].mean(axis=0), [4.0, 0, 0])
    assert np.allclose(pooled[6:].mean(axis=0) - support[6:].mean(axis=0), [4.0, 0, 0])
    wild = predicted.copy()
    wild[0] += [30.0, 0, 0]                     # one point of organ a far off along z
    assert np.allclose(recentred(wild, support, organs, 1.0, robust=True)[:6].mean(axis=0)
                       - support[:6].mean(axis=0), [2.0, 0, 0])
    weighted = recentred(wild, support, organs, 0.5, bounding_weight=4.0)[:6].mean(axis=0) - support[:6].mean(axis=0)
    assert np.allclose(weighted, [2.0 + 30.0 * 4 / 12, 0, 0])   # z_min is a bounding point of z: 4 of 12 votes
    with pytest.raises(ValueError, match="six extreme points"):
        recentred(wild, support, organs, 0.5, robust=True, bounding_weight=2.0)


def test_centre_votes_by_hand():
    """Notebook 04's vote subsets: the six extreme points give exactly the profile's size-prior box;
    another subset moves the same box by the difference of the mean votes; the landmarks of a
    cuboid organ are its extreme points, its centre and the points half way."""
    from types import SimpleNamespace

    from rprloc_core.experiments.centre_votes import VOTES, vote_landmarks_mm, voted_boxes
    from rprloc_core.experiments.size_prior import apply_prior

    mask = np.zeros((9, 9, 9), np.uint8)
    mask[2:7, 2:7, 2:7] = 1
    spacing = np.array([3.0, 2.0, 2.0])
    case = SimpleNamespace(case_id="c", labels={"a": mask}, idx_to_mm=lambda idx: np.asarray(idx) * spacing)
    support = vote_landmarks_mm(case, ["a"])["a"]
    assert support.shape == (13, 3)
    assert np.allclose(support[6], [12.0, 8.0, 8.0])                     # the cuboid's centre
    assert np.allclose(support[7:], (support[:6] + support[6]) / 2)
    predicted = support + [2.0, 0.0, 0.0]
    predicted[6] += [0.0, 4.0, 0.0]                                      # the centroid votes 4 mm more along y
    organs = ["a"] * 13
    profile = voted_boxes(predicted, support, organs, 0.5, VOTES["six extreme points (profile)"])
    assert np.allclose(profile, apply_prior(predicted[:6], support[:6], organs[:6], 0.5))
    assert np.allclose(voted_boxes(predicted, support, organs, 0.5, VOTES["organ centroid"]) - profile, [0, 4.0, 0])
    assert np.allclose(voted_boxes(predicted, support, organs, 0.5, VOTES["all 13 points"]) - profile,
                       [0, 4.0 / 13, 0])
    with pytest.raises(ValueError, match="votes need 13"):
        voted_boxes(predicted[:6], support[:6], organs[:6], 0.5, VOTES["all 13 points"])
