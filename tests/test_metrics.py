import numpy as np
import pytest

from rprloc_core.metrics import awd_mm, box_iou_physical, box_iou_voxel, detection_rate, point_errors_mm


def test_iou_paper_convention_by_hand():
    true = (np.array([0, 0, 0]), np.array([4, 4, 4]))      # volume 64 (no +1)
    pred = (np.array([2, 0, 0]), np.array([6, 4, 4]))      # overlap 2*4*4 = 32
    assert box_iou_voxel(pred, true) == pytest.approx(32 / (64 + 64 - 32))
    assert box_iou_voxel(true, true) == 1.0


def test_iou_disjoint_and_touching():
    a = (np.zeros(3), np.full(3, 2.0))
    b = (np.full(3, 3.0), np.full(3, 5.0))
    assert box_iou_voxel(a, b) == 0.0
    # touching faces: one side of length 0 -> intersection 0, not negative
    c = (np.array([2.0, 0, 0]), np.array([4.0, 2, 2]))
    assert box_iou_voxel(a, c) == 0.0


def test_iou_physical_one_voxel_organ_and_anisotropy():
    one = (np.array([3.0, 3, 3]), np.array([3.0, 3, 3]))
    assert np.isnan(box_iou_voxel(one, one))           # paper convention: zero volume
    assert box_iou_physical(one, one, (3, 1, 1)) == 1.0
    # shifted by one voxel along z (3 mm) vs along x (1 mm): same voxel IoU, same physical IoU
    true = (np.array([0.0, 0, 0]), np.array([3.0, 3, 3]))  # 4 voxels a side physically
    shifted_z = (np.array([1.0, 0, 0]), np.array([4.0, 3, 3]))
    assert box_iou_physical(shifted_z, true, (3, 1, 1)) == pytest.approx(3 / 5)


def test_awd_anisotropic_by_hand():
    true = (np.array([0.0, 0, 0]), np.array([10.0, 10, 10]))
    pred = (np.array([1.0, 0, 0]), np.array([10.0, 10, 12]))
    # walls: z_lo off by 1 voxel * 3 mm, x_hi off by 2 voxels * 0.5 mm -> (3 + 1) / 6
    assert awd_mm(pred, true, (3.0, 1.0, 0.5)) == pytest.approx(4 / 6)


def test_point_errors_and_detection_rate():
    pred = np.array([[0, 0, 0], [1, 0, 0], [np.nan, 0, 0]])
    true = np.zeros((3, 3))
    err = point_errors_mm(pred, true, (3, 1, 1))
    assert err[:2].tolist() == [0.0, 3.0] and np.isnan(err[2])
    rates = detection_rate(err, radii_mm=(2.0, 3.0))
    assert rates[2.0] == pytest.approx(1 / 3) and rates[3.0] == pytest.approx(2 / 3)
