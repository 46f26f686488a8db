import numpy as np
import pandas as pd
import pytest

from rprloc_core.data.preprocess import PreprocessedCase
from rprloc_core.evaluation.protocol import case_rng
from rprloc_core.evaluation.scoring import score_prediction, summarize
from rprloc_core.experiments.paper import paper_mean, paper_table, with_paper_columns
from rprloc_core.geometry.volume import Volume


def _frame():
    rows = []
    for support, offset in (("s1", 0.0), ("s2", 10.0)):
        for query in ("q1", "q2"):
            for organ, base in (("Brainstem", 40.0), ("Mandible", 60.0)):
                iou = base + offset + (5.0 if query == "q2" else 0.0)
                rows.append({"method": "m", "support": support, "query": query, "organ": organ, "iou_pct": iou,
                             "awd_mm": iou / 10, "iou_physical_pct": iou, "point_error_mm": 1.0, "time_s": 0.1})
    return pd.DataFrame(rows)


def test_summarize_by_hand():
    table = summarize(_frame(), organs=("Brainstem", "Mandible"))
    row = table.set_index("organ")
    # Brainstem: support means 42.5 and 52.5 -> mean 47.5, population SD 5
    assert row.loc["Brainstem", "iou_pct"] == pytest.approx(47.5)
    assert row.loc["Brainstem", "iou_pct_sd_over_supports"] == pytest.approx(5.0)
    # Mean over organs per support: (42.5 + 62.5) / 2 = 52.5 and 62.5 -> 57.5
    assert row.loc["Mean", "iou_pct"] == pytest.approx(57.5)
    assert list(table.organ) == ["Brainstem", "Mandible", "Mean"]
    assert (table.n_queries == 2).all() and (table.n_supports == 2).all()


def test_paper_columns_join():
    table = summarize(_frame(), organs=("Brainstem", "Mandible")).assign(method="Mc + Mf")
    joined = with_paper_columns(table, paper_table("rprloc_table2"), {"method": "method", "organ": "organ"})
    assert joined.set_index("organ").loc["Brainstem", "paper_iou_pct"] == 61.5


def test_score_prediction_perfect_and_shifted():
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[5:10, 6:12, 7:15] = 1
    case = PreprocessedCase("q", Volume(np.zeros((20, 20, 20)), (3.0, 2.0, 2.0)), np.zeros((20, 20, 20), np.int16),
                            {"Brainstem": mask})
    from rprloc_core.geometry.landmarks import extreme_points

    pts_mm = extreme_points(mask) * case.spacing
    assert score_prediction(case, "Brainstem", pts_mm, "extreme")["iou_pct"] == pytest.approx(100.0)
    shifted = score_prediction(case, "Brainstem", pts_mm + [3.0, 0, 0], "extreme")  # one voxel in z
    assert shifted["awd_mm"] == pytest.approx(1.0)  # two walls off by 3 mm, four exact: 6 / 6
    assert shifted["iou_pct"] < 100


def test_case_rng_is_order_independent():
    a = case_rng(0, "q1", "s1").random(3)
    assert np.array_equal(a, case_rng(0, "q1", "s1").random(3))
    assert not np.array_equal(a, case_rng(0, "q2", "s1").random(3))


def test_paper_mean_reads_the_reference_tables():
    assert paper_mean("rprloc_table2", method="Mc + Mf") == 55.1
    assert paper_mean("rprloc_table1", "awd_mm", strategy="Extreme", K=1) == pytest.approx(8.3, abs=0.05)
    with pytest.raises(KeyError):
        paper_mean("rprloc_table2", method="no such method")


def test_oracle_box_transfer_keeps_the_support_size_in_mm():
    from rprloc_core.experiments.error_analysis import transferred_box
    from rprloc_core.geometry.boxes import VoxelBox
    from rprloc_core.metrics import box_iou_voxel

    support_box = VoxelBox(np.array([0.0, 0, 0]), np.array([4.0, 10, 10]))       # 12 x 20 x 20 mm at 3 x 2 x 2
    query_box = VoxelBox(np.array([10.0, 10, 10]), np.array([16.0, 30, 30]))
    moved = transferred_box(support_box, (3.0, 2.0, 2.0), query_box, (2.0, 1.0, 1.0))
    np.testing.assert_allclose(moved.centre, query_box.centre)
    np.testing.assert_allclose((moved.hi - moved.lo) * [2.0, 1.0, 1.0], [12.0, 20.0, 20.0])
    same = transferred_box(query_box, (2.0, 1.0, 1.0), query_box, (2.0, 1.0, 1.0))
    assert box_iou_voxel(same, query_box) == pytest.approx(1.0)


def test_shifted_box_metrics_moves_the_box_in_mm():
    from rprloc_core.experiments.error_analysis import shifted_box_metrics
    from rprloc_core.geometry.boxes import VoxelBox

    true_box = VoxelBox(np.array([0.0, 0, 0]), np.array([9.0, 9, 9]))      # sides of 9 (paper's IoU), 2 x 1 x 1 mm
    spacing = (2.0, 1.0, 1.0)
    exact = shifted_box_metrics(true_box, true_box, spacing, np.zeros((1, 3)))
    assert exact["iou_pct"] == pytest.approx(100.0) and exact["awd_mm"] == pytest.approx(0.0)
    # 4 mm along z is 2 voxels: overlap 7 of a union of 11 along z
    moved = shifted_box_metrics(true_box, true_box, spacing, np.array([[4.0, 0, 0]]))
    assert moved["iou_pct"] == pytest.approx(100.0 * 7 / 11)
    assert moved["centre_rms_z_mm"] == pytest.approx(4.0) and moved["centre_rms_x_mm"] == 0.0
    # averaged over the shifts, and the shifts' root mean square per axis
    both = shifted_box_metrics(true_box, true_box, spacing, np.array([[4.0, 0, 0], [-4.0, 0, 0]]))
    assert both["iou_pct"] == pytest.approx(moved["iou_pct"])
    assert both["centre_rms_z_mm"] == pytest.approx(4.0)
    wide = shifted_box_metrics(true_box, true_box, spacing, np.array([[0, 3.0, 0]]))
    assert wide["iou_pct"] == pytest.approx(100.0 * 6 / 12)      # 3 mm along y is 3 voxels


def test_box_centre_errors_average_each_axis_min_and_max_point():
    from rprloc_core.experiments.error_analysis import axis_error_table, box_centre_errors, overall_rms_mm

    names = ["z_min", "z_max", "y_min", "y_max", "x_min", "x_max"]
    signed = {"z": [2.0, 4.0, 9, 9, 9, 9], "y": [9, 9, -1.0, -3.0, 9, 9], "x": [9, 9, 9, 9, 0.0, 6.0]}
    per_point = pd.DataFrame({"case": "a", "organ": "Brainstem", "landmark": names, "stage": "Mc + Mf",
                              **{f"signed_{a}_mm": v for a, v in signed.items()}})
    per_point = pd.concat([per_point, per_point.assign(case="b", signed_z_mm=-per_point.signed_z_mm)])
    centres = box_centre_errors(per_point).set_index("case")
    # only each axis's own two points count: z (2 + 4) / 2, y (-1 - 3) / 2, x (0 + 6) / 2
    assert centres.loc["a", ["signed_z_mm", "signed_y_mm", "signed_x_mm"]].tolist() == [3.0, -2.0, 3.0]
    assert centres.loc["b", "signed_z_mm"] == -3.0
    table = axis_error_table(box_centre_errors(per_point), count="n_boxes").set_index("axis")
    assert table.loc["z", "mean_signed_error_mm"] == 0.0 and table.loc["z", "rms_error_mm"] == 3.0
    assert table.loc["y", "mean_absolute_error_mm"] == 2.0 and table.loc["z", "n_boxes"] == 2
    assert overall_rms_mm(table.reset_index(), "Mc + Mf") == pytest.approx(np.sqrt((9 + 4 + 9) / 3))


def test_sd_for_iou_interpolates_the_noisy_ceiling():
    from rprloc_core.experiments.error_analysis import sd_for_iou

    table = pd.DataFrame({"sd_mm": [0.0, 2.0, 4.0, np.nan], "IoU %": [60.0, 56.0, 50.0, 40.0]})
    assert sd_for_iou(table, 56.0) == pytest.approx(2.0)
    assert sd_for_iou(table, 53.0) == pytest.approx(3.0)     # halfway between 56 and 50
    assert np.isnan(sd_for_iou(table, 65.0))                 # above the exact centre's
    assert np.isnan(sd_for_iou(table, 45.0))                 # the row without an SD is not on the curve


def test_spread_flags_bad_boxes_auc_by_hand():
    from rprloc_core.experiments.error_analysis import flags_bad_boxes

    spread = pd.Series([1.0, 2.0, 3.0, 4.0])
    assert flags_bad_boxes(spread, pd.Series([False, False, True, True])) == 1.0      # widest are the bad ones
    assert flags_bad_boxes(spread, pd.Series([True, True, False, False])) == 0.0
    assert flags_bad_boxes(spread, pd.Series([True, False, False, True])) == 0.5      # 2 of 4 bad-good pairs
    assert np.isnan(flags_bad_boxes(spread, pd.Series([False] * 4)))


def test_spread_table_columns_and_correlations():
    from rprloc_core.experiments.error_analysis import spread_table

    frame = pd.DataFrame({"organ": ["Brainstem"] * 4 + ["Mandible"] * 4,
                          "spread_mm": [1.0, 2, 3, 4, 1, 2, 3, 4],
                          "point_error_mm": [5.0, 6, 7, 8, 8, 7, 6, 5],
                          "iou_pct": [50.0, 40, 5, 2, 60, 55, 50, 45]})
    table = spread_table(frame, bad_iou_pct=10).set_index("organ")
    assert table.loc["Brainstem", "rho(spread, point error)"] == pytest.approx(1.0)
    assert table.loc["Mandible", "rho(spread, point error)"] == pytest.approx(-1.0)
    assert table.loc["Brainstem", "AUC: spread flags them"] == 1.0
    assert np.isnan(table.loc["Mandible", "AUC: spread flags them"])          # no bad mandible box
    assert table.loc["All organs", "boxes"] == 8
    assert table.loc["All organs", "boxes under 10 % IoU"] == pytest.approx(25.0)


def test_few_shot_support_sets_are_cyclic_windows():
    from rprloc_core.experiments.few_shot import support_sets

    ids = ["a", "b", "c", "d", "e"]
    assert support_sets(ids, 1) == [("a",), ("b",), ("c",), ("d",), ("e",)]
    threes = support_sets(ids, 3)
    assert threes[0] == ("a", "b", "c") and threes[-1] == ("e", "a", "b")
    assert all(sum(s in group for group in threes) == 3 for s in ids)        # every support in 3 sets
    assert support_sets(ids, 5) == [tuple(ids)]
    with pytest.raises(ValueError):
        support_sets(ids, 6)


def test_few_shot_reuses_the_evaluation_run_for_a_protocol_support_alone():
    from rprloc_core.evaluation.protocol import Protocol
    from rprloc_core.experiments.few_shot import _evaluated

    protocol = Protocol(("s1", "s2"), ("q1",))
    assert _evaluated(protocol, "s1") and _evaluated(protocol, "s2")     # the evaluation's default run
    assert not _evaluated(protocol, "s9") and not _evaluated(protocol, "s1+s2")
