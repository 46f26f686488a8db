"""Shared computation of the Table 3 baselines equals each method on its own; the table helpers;
the auto-encoder's per-call time limit."""

import numpy as np
import pandas as pd
import pytest

from rprloc_core.baselines import feature_matching as ae
from rprloc_core.baselines import template_matching as tm
from rprloc_core.experiments import tables, template_predictions
from rprloc_core.geometry.volume import Volume

SMALL = ae.AEConfig(patch_size=(6, 8, 8), latent_dim=8, channels=(4, 8))


def blobs_with_air(shape, rng):
    grid = np.indices(shape, dtype=float).transpose(1, 2, 3, 0)
    vol = np.zeros(shape)
    for _ in range(6):
        vol += rng.uniform(0.3, 1.0) * np.exp(-0.5 * (((grid - rng.uniform(0, shape)) / rng.uniform(1.5, 4, 3)) ** 2).sum(-1))
    vol = np.minimum(vol, 1.0) + rng.uniform(0, 0.05, shape)
    vol[vol < 0.12] = 0.0
    return vol.astype(np.float32)


@pytest.mark.parametrize("stride", [1, 2])
def test_gray_maps_of_all_methods_equal_each_method_alone(stride):
    rng = np.random.default_rng(0)
    query = blobs_with_air((14, 16, 18), rng)
    templates = np.concatenate([rng.random((3, 5, 6, 6)), np.zeros((1, 5, 6, 6))]).astype(np.float32)
    together = tm.gray_score_maps_all(query, templates, stride=stride, chunk=3)
    for method in tm.GRAY_METHODS:
        alone = tm.gray_score_maps(query, templates, method, stride=stride, chunk=3)
        np.testing.assert_array_equal(together[method], alone)     # bit for bit, -inf included


def test_match_all_equals_match_for_every_method():
    rng = np.random.default_rng(1)
    query = Volume(blobs_with_air((16, 20, 22), rng), [3.0, 2.0, 2.0], origin_mm=[1.0, -2.0, 3.0])
    support = Volume(blobs_with_air((16, 20, 22), rng), [3.0, 2.0, 2.0])
    points = np.array([[8, 10, 11], [2, 3, 4], [15, 19, 21], [7.4, 12.6, 5.5], [9, 9, 9]])
    templates = tm.cut_templates(support, points, SMALL.patch_size)
    encoder = ae.build_autoencoder(SMALL, seed=2)
    shared = tm.match_all(query, templates, tm.METHODS, stride=2, encoder=encoder, return_maps=True)
    assert list(shared) == list(tm.METHODS)
    for method in tm.METHODS:
        alone = tm.match(query, templates, method, stride=2, encoder=encoder, return_maps=True)
        np.testing.assert_array_equal(shared[method].score_maps, alone.score_maps)
        np.testing.assert_array_equal(shared[method].centre_idx, alone.centre_idx)
        np.testing.assert_array_equal(shared[method].centre_mm, alone.centre_mm)
        np.testing.assert_array_equal(shared[method].score, alone.score)
    subset = tm.match_all(query, templates, ("gs_ncc",), stride=2)
    assert list(subset) == ["gs_ncc"]
    with pytest.raises(ValueError, match="encoder"):
        tm.match_all(query, templates, ("fm_mse",))


def test_autoencoder_time_limit_stops_and_resumes(tmp_path):
    rng = np.random.default_rng(3)
    volumes = [blobs_with_air((10, 12, 12), rng) + 0.01 for _ in range(2)]
    path = tmp_path / "ae.pt"
    kwargs = dict(batch_size=2, checkpoint_path=path, checkpoint_every=100, progress=False)
    first = ae.train_autoencoder(volumes, SMALL, 5, np.random.default_rng(0), time_limit_s=0, **kwargs)
    assert first.step == 1 and first.stopped == "time_limit" and path.is_file()
    rest = ae.train_autoencoder(volumes, SMALL, 5, np.random.default_rng(0), **kwargs)
    assert rest.step == 5 and rest.stopped == "steps" and len(rest.history) == 5
    straight = ae.train_autoencoder(volumes, SMALL, 5, np.random.default_rng(0), batch_size=2, progress=False)
    np.testing.assert_allclose(rest.history, straight.history, rtol=1e-5)


def test_table3_rows_and_paper_columns():
    rows = []
    for method, iou in (("GS MSE", 40.0), ("RPR-Loc (Mc + Mf)", 60.0)):
        for support in ("s1", "s2"):
            for query in ("q1", "q2"):
                for organ in ("Brainstem", "Mandible"):
                    rows.append({"method": method, "support": support, "query": query, "organ": organ,
                                 "iou_pct": iou + (support == "s2"), "awd_mm": 5.0, "iou_physical_pct": iou,
                                 "point_error_mm": 3.0, "time_s": np.nan})
    paper = pd.DataFrame({"method": ["GS MSE", "GS MSE", "Retina U-Net (supervised)", "GS MSE"],
                          "organ": ["Brainstem", "Mean", "Mean", "Pancreas"],
                          "iou_pct": [39.3, 45.5, 67.1, 1.8], "awd_mm": [7.47, 9.0, 5.07, 90.2],
                          "time_s_per_organ": [1052.96, 1052.96, 4.7, 1052]})
    table = tables.methods_table(pd.DataFrame(rows), {"GS MSE": 2.0, "RPR-Loc (Mc + Mf)": 0.5}, {}, paper,
                                organs=("Brainstem", "Mandible"))
    assert table[["method", "organ"]].values.tolist() == [
        ["GS MSE", "Brainstem"], ["GS MSE", "Mandible"], ["GS MSE", "Mean"],
        ["RPR-Loc (Mc + Mf)", "Brainstem"], ["RPR-Loc (Mc + Mf)", "Mandible"], ["RPR-Loc (Mc + Mf)", "Mean"],
        ["Retina U-Net (supervised)", "Mean"]]
    gs_mean = table[(table.method == "GS MSE") & (table.organ == "Mean")].iloc[0]
    assert gs_mean.iou_pct == pytest.approx(40.5) and gs_mean.iou_pct_sd_over_supports == pytest.approx(0.5)
    assert gs_mean.time_s == 2.0 and gs_mean.paper_time_s_per_organ == 1052.96 and gs_mean.paper_iou_pct == 45.5
    assert gs_mean.n_queries == 2 and gs_mean.n_supports == 2
    supervised = table[table.method == "Retina U-Net (supervised)"].iloc[0]
    assert np.isnan(supervised.iou_pct) and supervised.paper_iou_pct == 67.1 and supervised.n_queries == 0
    assert "Pancreas" not in set(table.organ)


def test_seconds_per_organ_counts_each_query_once():
    timed = pd.DataFrame({"method": ["A", "A", "A", "B"], "query": ["q1", "q1", "q2", "q1"],
                          "time_s": [1.0, 1.0, 3.0, 0.5]})
    assert template_predictions.seconds_per_organ(timed).to_dict() == {"A": 2.0, "B": 0.5}
