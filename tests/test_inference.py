"""The one-shot engine, checked with a position oracle, against the naive loop, and on bad input."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from rprloc_core.geometry.volume import Volume
from rprloc_core.rprloc.inference import (
    draw_starts,
    drop_missing_landmarks,
    encode_supports,
    grid_for_model,
    localize,
    localize_naive,
    stack_organ_landmarks,
)
from rprloc_core.rprloc.pnet import PNet

torch.set_num_threads(1)

# Voxel values encode the (z, y, x) index: v = 1 + 4096 z + 64 y + x (every axis < 32). Average
# pooling by 2 keeps the code exact: a coarse voxel holds the code of its centre (2j + 0.5), and the
# halves cannot carry into the next digit. Everything is > 0, i.e. non-air.
SHAPE, SPACING, ORIGIN = (20, 24, 28), (3.0, 2.0, 2.0), (10.0, -5.0, 7.0)
R_ORACLE = 1e6   # r * tanh(d / r) == d to ~1e-7 mm for d of a few hundred mm


def encoded_volume() -> Volume:
    z, y, x = np.indices(SHAPE, dtype=np.float64)
    return Volume((1 + 4096 * z + 64 * y + x).astype(np.float32), SPACING, ORIGIN)


class PositionOracle(nn.Module):
    """Embeds a patch as the mm position of its centre voxel / r: a perfect Pnet up to tanh."""

    def __init__(self, patch_size, spacing_mm=None, r_mm=R_ORACLE):
        super().__init__()
        self.patch_size, self.spacing_mm, self.r_mm = tuple(patch_size), spacing_mm, r_mm
        self.calls = 0
        self.patches = 0

    def forward(self, patches):
        self.calls += 1
        self.patches += len(patches)
        pz, py, px = self.patch_size
        w = patches[:, 0, pz // 2, py // 2, px // 2].double() - 1
        z = torch.floor(2 * w / 4096) / 2
        rest = w - 4096 * z
        y = torch.floor(2 * rest / 64) / 2
        idx = torch.stack([z, y, rest - 64 * y], dim=1)
        pos_mm = torch.tensor(ORIGIN, dtype=torch.float64) + idx * torch.tensor(SPACING, dtype=torch.float64)
        return pos_mm / self.r_mm


def support_points(volume, n=6, seed=0):
    """Random landmarks on base-grid voxels, away from the border."""
    idx = np.random.default_rng(seed).integers(2, np.asarray(volume.shape) - 2, size=(n, 3))
    return volume.idx_to_mm(idx)


def test_oracle_decodes_both_grids():
    vol = encoded_volume()
    coarse = grid_for_model(vol, [6.0, 4.0, 4.0])
    oracle = PositionOracle((1, 1, 1))
    for grid in (vol, coarse):
        idx = np.array([[1, 2, 3], [4, 5, 6]])
        patches = torch.from_numpy(grid.array[tuple(idx.T)]).reshape(2, 1, 1, 1, 1)
        assert np.allclose(oracle(patches).numpy() * R_ORACLE, grid.idx_to_mm(idx))


def test_coarse_only_on_base_grid_lands_on_the_landmark():
    vol = encoded_volume()
    pts = support_points(vol)
    res = localize(vol, (vol, pts), PositionOracle((4, 6, 6)), rng=np.random.default_rng(0), k=5)
    assert res.points_mm.shape == (6, 3)
    assert res.trajectories_mm.shape == (2, 5, 6, 3)
    assert np.abs(res.points_mm - pts).max() < 1e-3                     # tolerance: 1 micrometre


def test_coarse_grid_lands_on_the_nearest_coarse_voxel_and_fine_step_finishes():
    vol = encoded_volume()
    pts = support_points(vol, n=12, seed=1)
    coarse = PositionOracle((4, 4, 4), spacing_mm=[6.0, 4.0, 4.0])
    fine = PositionOracle((4, 8, 8), spacing_mm=list(SPACING), r_mm=R_ORACLE)
    res = localize(vol, (vol, pts), coarse, rng=np.random.default_rng(1), k=4)
    # the support patch is cut at the coarse voxel nearest the landmark: within half a coarse voxel
    assert np.all(np.abs(res.points_mm - pts) <= np.array([3.0, 2.0, 2.0]) + 1e-3)
    res = localize(vol, (vol, pts), coarse, fine, schedule=("coarse", "fine"), rng=np.random.default_rng(1), k=4)
    assert res.trajectories_mm.shape == (3, 4, 12, 3)
    assert np.abs(res.points_mm - pts).max() < 1e-3


def test_mean_embedding_option():
    vol = encoded_volume()
    pts = support_points(vol, seed=2)
    coarse = PositionOracle((4, 4, 4), spacing_mm=[6.0, 4.0, 4.0])
    fine = PositionOracle((4, 8, 8))
    res = localize(vol, (vol, pts), coarse, fine, schedule=("coarse", "fine"), ensemble="mean_embedding",
                   rng=np.random.default_rng(3), k=6)
    assert np.abs(res.points_mm - pts).max() < 1e-3
    traj = res.trajectories_mm
    assert np.ptp(traj[0], axis=0).max() > 0                             # K different starts
    assert np.ptp(traj[1], axis=0).max() == 0 and np.ptp(traj[2], axis=0).max() == 0  # one move, shared


def test_schedules_and_reproducibility():
    vol = encoded_volume()
    pts = support_points(vol, seed=3)
    coarse = PositionOracle((4, 4, 4), spacing_mm=[6.0, 4.0, 4.0], r_mm=40.0)   # tanh now bites: iterate
    runs = {}
    for schedule in (("coarse",), ("coarse", "coarse"), ("coarse", "coarse", "coarse")):
        res = localize(vol, (vol, pts), coarse, schedule=schedule, rng=np.random.default_rng(4), k=5)
        assert res.trajectories_mm.shape == (len(schedule) + 1, 5, 6, 3)
        runs[len(schedule)] = np.abs(res.points_mm - pts).max()
    assert runs[3] <= runs[1]
    a = localize(vol, (vol, pts), coarse, rng=np.random.default_rng(7), k=3)
    b = localize(vol, (vol, pts), coarse, rng=np.random.default_rng(7), k=3)
    c = localize(vol, (vol, pts), coarse, rng=np.random.default_rng(8), k=3)
    assert np.array_equal(a.trajectories_mm, b.trajectories_mm)
    assert not np.array_equal(a.trajectories_mm[0], c.trajectories_mm[0])
    lo, hi = vol.extent_mm()
    assert np.all(a.trajectories_mm >= lo - 1e-9) and np.all(a.trajectories_mm <= hi + 1e-9)


def test_one_batched_call_per_step_and_chunking():
    vol = encoded_volume()
    pts = support_points(vol)
    oracle = PositionOracle((4, 6, 6))
    localize(vol, (vol, pts), oracle, schedule=("coarse", "coarse"), rng=np.random.default_rng(0), k=5,
             batch_size=64)
    # support, 30 starts, then the 6 landmarks (every run reached its landmark: each patch embedded once)
    assert oracle.calls == 1 + 2 and oracle.patches == 6 + 30 + 6
    oracle.calls = 0
    res = localize(vol, (vol, pts), oracle, rng=np.random.default_rng(0), k=5, batch_size=7)
    assert oracle.calls == 1 + 5                                         # 30 patches in chunks of 7
    assert np.abs(res.points_mm - pts).max() < 1e-3


def test_shared_starts_and_average_step_embed_each_patch_once():
    vol = encoded_volume()
    pts = support_points(vol)
    oracle = PositionOracle((4, 6, 6))
    res = localize(vol, (vol, pts), oracle, schedule=("coarse", "average", "coarse"), starts="shared",
                   rng=np.random.default_rng(0), k=5)
    start = res.trajectories_mm[0]
    assert np.array_equal(start, np.broadcast_to(start[:, :1], start.shape))   # same K starts for every landmark
    assert len(np.unique(start.reshape(-1, 3), axis=0)) <= 5
    assert oracle.patches <= 6 + 5 + 6                                   # support, K starts, P averaged runs
    assert np.allclose(res.trajectories_mm[2], res.trajectories_mm[1].mean(axis=0))
    assert len(res.step_wall_s) == 4 and 0 < sum(res.step_wall_s) <= res.wall_s     # setup + 3 steps
    assert np.abs(res.points_mm - pts).max() < 1e-3
    with pytest.raises(ValueError, match="starts must be one of"):
        localize(vol, (vol, pts), oracle, starts="grid", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="no network step"):
        localize(vol, (vol, pts), oracle, schedule=("average",), rng=np.random.default_rng(0))


def test_scatter_step_restarts_the_runs_around_their_mean():
    """A scatter step puts the K runs of every landmark uniformly within +-scatter_mm of their mean
    (the fine move then starts from K patches); the oracle still lands on the landmarks."""
    vol = encoded_volume()
    pts = support_points(vol)
    oracle = PositionOracle((4, 6, 6))
    kwargs = dict(schedule=("coarse", "scatter", "coarse"), starts="shared", k=8, scatter_mm=4.0)   # inside the scan
    res = localize(vol, (vol, pts), oracle, rng=np.random.default_rng(0), **kwargs)
    before, scattered = res.trajectories_mm[1], res.trajectories_mm[2]
    offsets = scattered - before.mean(axis=0)
    assert np.abs(offsets).max() <= 4.0 + 1e-9 and offsets.std(axis=0).min() > 1.0    # spread, within the cube
    assert len(np.unique(scattered.reshape(-1, 3), axis=0)) == 8 * len(pts)            # every run its own draw
    assert np.abs(res.points_mm - pts).max() < 1e-3
    again = localize(vol, (vol, pts), oracle, rng=np.random.default_rng(0), **kwargs)
    assert np.array_equal(again.trajectories_mm, res.trajectories_mm)                  # seeded: reproducible
    narrower = localize(vol, (vol, pts), oracle, rng=np.random.default_rng(0), **{**kwargs, "scatter_mm": 2.0})
    assert np.allclose(narrower.trajectories_mm[2] - before.mean(axis=0), offsets / 2, atol=1e-9)
    for bad in (0.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="finite scatter_mm > 0"):
            localize(vol, (vol, pts), oracle, rng=np.random.default_rng(0), **{**kwargs, "scatter_mm": bad})
    with pytest.raises(ValueError, match="give localize an rng"):
        localize(vol, (vol, pts), oracle, rng=None, start_mm=before, **kwargs)


def test_pooled_starts_are_distinct_per_landmark_and_cost_one_pool():
    vol = encoded_volume()
    pts = support_points(vol)
    starts = draw_starts(vol, 5, 6, np.random.default_rng(0), "pooled", pool_factor=3)
    assert starts.shape == (5, 6, 3)
    assert len(np.unique(starts.reshape(-1, 3), axis=0)) <= 15
    for p in range(6):                                                   # K distinct pool entries per landmark
        assert len(np.unique(starts[:, p], axis=0)) == len({tuple(v) for v in starts[:, p]})
    assert not np.array_equal(starts[:, 0], starts[:, 1])
    oracle = PositionOracle((4, 6, 6))
    res = localize(vol, (vol, pts), oracle, starts="pooled", pool_factor=3, rng=np.random.default_rng(0), k=5)
    assert oracle.patches <= 6 + 15 and np.abs(res.points_mm - pts).max() < 1e-3
    with pytest.raises(ValueError, match="pool_factor"):
        draw_starts(vol, 5, 6, np.random.default_rng(0), "pooled", pool_factor=0)


def test_support_embeddings_computed_once_give_the_same_result():
    vol = encoded_volume()
    pts = support_points(vol)
    oracle = PositionOracle((4, 6, 6))
    embeddings = encode_supports((vol, pts), {"coarse": oracle})
    oracle.patches = 0
    reused = localize(vol, (vol, pts), oracle, rng=np.random.default_rng(3), k=4, support_embeddings=embeddings)
    assert oracle.patches == 4 * 6                                       # no support patch embedded again
    again = localize(vol, (vol, pts), oracle, rng=np.random.default_rng(3), k=4)
    assert np.array_equal(reused.trajectories_mm, again.trajectories_mm)
    with pytest.raises(ValueError, match=r"support_embeddings must hold a \(6, 3\) array"):
        localize(vol, (vol, pts), oracle, rng=np.random.default_rng(3), support_embeddings={"coarse": np.zeros((2, 3))})


def test_few_shot_averages_support_embeddings():
    vol = encoded_volume()
    pts_a = support_points(vol, seed=5)
    pts_b = pts_a + np.array([6.0, 2.0, -2.0])                           # shifted by whole voxels
    res = localize(vol, [(vol, pts_a), (vol, pts_b)], PositionOracle((4, 6, 6)), rng=np.random.default_rng(0), k=3)
    assert np.abs(res.points_mm - (pts_a + pts_b) / 2).max() < 1e-3


@pytest.mark.parametrize("ensemble, schedule, starts", [
    ("mean_position", ("coarse", "fine"), "independent"),
    ("mean_embedding", ("coarse", "fine"), "independent"),
    ("mean_position", ("coarse", "average", "fine", "fine"), "shared"),
    ("mean_position", ("coarse", "scatter", "fine", "scatter", "fine"), "shared"),
    ("mean_embedding", ("coarse", "fine"), "pooled"),
])
def test_batched_engine_equals_naive_loop(ensemble, schedule, starts):
    rng = np.random.default_rng(0)
    vol = Volume(rng.random((24, 28, 30)).astype(np.float32) * (rng.random((24, 28, 30)) > 0.3), SPACING)
    support = Volume(rng.random((22, 26, 30)).astype(np.float32) + 0.01, SPACING)
    pts = support.idx_to_mm(rng.uniform(0, 20, size=(4, 3)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        coarse = PNet("han", 2, (4, 4, 4), r_mm=100.0, spacing_mm=[6.0, 4.0, 4.0]).eval()
        fine = PNet("han", 2, (4, 8, 8), r_mm=[10.0, 20.0, 20.0], spacing_mm=list(SPACING)).eval()
    # float32 batched and single-patch convolutions round differently; times r that is ~1e-3 mm
    kwargs = dict(schedule=schedule, k=3, ensemble=ensemble, organ_of_point=["A", "A", "B", "B"], starts=starts,
                  scatter_mm=6.0)
    fast = localize(vol, (support, pts), coarse, fine, rng=np.random.default_rng(9), **kwargs)
    slow = localize_naive(vol, (support, pts), coarse, fine, rng=np.random.default_rng(9), **kwargs)
    assert np.abs(fast.trajectories_mm - slow.trajectories_mm).max() < 1e-2
    assert set(fast.points_by_organ()) == {"A", "B"} and fast.points_by_organ()["B"].shape == (2, 3)
    assert fast.wall_s_per_organ == pytest.approx(fast.wall_s / 2)


def _small_pnets():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        coarse = PNet("han", 2, (4, 4, 4), r_mm=100.0, spacing_mm=[6.0, 4.0, 4.0])
        fine = PNet("han", 2, (4, 8, 8), r_mm=[10.0, 20.0, 20.0], spacing_mm=list(SPACING))
    return coarse, fine


def test_models_in_another_dtype_get_patches_in_that_dtype():
    rng = np.random.default_rng(0)
    vol = Volume(rng.random((24, 28, 30)).astype(np.float32) + 0.01, SPACING)
    pts = vol.idx_to_mm(rng.uniform(2, 20, size=(3, 3)))
    coarse, fine = (m.eval() for m in _small_pnets())
    kwargs = dict(schedule=("coarse", "fine"), k=3)
    single = localize(vol, (vol, pts), coarse, fine, rng=np.random.default_rng(1), **kwargs)
    double = localize(vol, (vol, pts), coarse.double(), fine.double(), rng=np.random.default_rng(1), **kwargs)
    assert np.abs(single.points_mm - double.points_mm).max() < 1e-2


def test_models_come_back_in_the_mode_they_had():
    rng = np.random.default_rng(0)
    vol = Volume(rng.random((24, 28, 30)).astype(np.float32) + 0.01, SPACING)
    pts = vol.idx_to_mm(rng.uniform(2, 20, size=(2, 3)))
    coarse, fine = _small_pnets()
    coarse.train()
    fine.eval()
    fine.head.train()           # a mixed model: only its head in training mode
    first = localize(vol, (vol, pts), coarse, fine, rng=np.random.default_rng(1), schedule=("coarse", "fine"), k=2)
    assert all(m.training for m in coarse.modules())
    assert [m.training for m in fine.modules()] == [m in set(fine.head.modules()) for m in fine.modules()]
    coarse.eval()               # eval mode inside either way: the same points
    again = localize(vol, (vol, pts), coarse, fine, rng=np.random.default_rng(1), schedule=("coarse", "fine"), k=2)
    assert np.array_equal(first.points_mm, again.points_mm)


# ---------------------------------------------------------------- bad input

def test_nan_and_outside_support_points():
    vol = encoded_volume()
    pts = support_points(vol)
    oracle = PositionOracle((4, 6, 6))
    bad = pts.copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match=r"landmark\(s\) \[2\] are NaN.*drop_missing_landmarks"):
        localize(vol, (vol, bad), oracle, rng=np.random.default_rng(0))
    bad = pts.copy()
    bad[4, 1] = vol.extent_mm()[1][1] + 10.0
    with pytest.raises(ValueError, match=r"landmark\(s\) \[4\].*outside the support volume"):
        localize(vol, (vol, bad), oracle, rng=np.random.default_rng(0))


def test_query_smaller_than_patch():
    vol = encoded_volume()
    small = Volume(vol.array[:6], SPACING, ORIGIN)
    oracle = PositionOracle((4, 6, 6), spacing_mm=[6.0, 4.0, 4.0])      # 6 slices -> 3 on the coarse grid
    with pytest.raises(ValueError, match=r"query on the coarse model's grid.*smaller than the patch"):
        localize(small, (vol, support_points(vol)), oracle, rng=np.random.default_rng(0))


def test_other_bad_arguments():
    vol = encoded_volume()
    pts = support_points(vol)
    oracle = PositionOracle((4, 6, 6))
    with pytest.raises(ValueError, match="uses the fine model"):
        localize(vol, (vol, pts), oracle, schedule=("coarse", "fine"), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="integer multiple"):
        localize(vol, (vol, pts), PositionOracle((4, 6, 6), spacing_mm=[4.0, 3.0, 3.0]), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="ensemble"):
        localize(vol, (vol, pts), oracle, ensemble="median", rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="patch_size"):
        localize(vol, (vol, pts), lambda x: x, rng=np.random.default_rng(0))


def test_missing_landmark_helpers_warn_and_drop():
    pts = np.arange(18, dtype=float).reshape(6, 3)
    pts[1, 0] = np.nan
    with pytest.warns(UserWarning, match="p1"):
        kept, keep = drop_missing_landmarks(pts, names=[f"p{i}" for i in range(6)])
    assert kept.shape == (5, 3) and not keep[1]
    with pytest.warns(UserWarning, match="Mandible"):
        stacked, organs, skipped = stack_organ_landmarks({"Brainstem": np.ones((6, 3)), "Mandible": pts,
                                                          "LeftParotid": None, "RightParotid": np.zeros((6, 3))})
    assert stacked.shape == (12, 3) and organs == ["Brainstem"] * 6 + ["RightParotid"] * 6
    assert skipped == ["Mandible", "LeftParotid"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drop_missing_landmarks(np.zeros((2, 3)))


def test_start_positions_can_be_given():
    """start_mm replaces the random draw, so a fine step can continue a coarse call's runs."""
    vol = encoded_volume()
    pts = support_points(vol, seed=5)
    coarse = PositionOracle((4, 4, 4), spacing_mm=[6.0, 4.0, 4.0], r_mm=40.0)
    fine = PositionOracle((4, 8, 8), r_mm=40.0)
    both = localize(vol, (vol, pts), coarse, fine, schedule=("coarse", "fine"), rng=np.random.default_rng(8), k=4)
    first = localize(vol, (vol, pts), coarse, rng=np.random.default_rng(8), k=4)
    then = localize(vol, (vol, pts), coarse, fine, schedule=("fine",), rng=np.random.default_rng(99), k=4,
                    start_mm=first.trajectories_mm[1])
    assert np.allclose(then.trajectories_mm[0], first.trajectories_mm[1])
    assert np.allclose(then.points_mm, both.points_mm)
    with pytest.raises(ValueError, match="start_mm has shape"):
        localize(vol, (vol, pts), coarse, rng=np.random.default_rng(0), k=4, start_mm=np.zeros((3, 6, 3)))
