"""PIN's building blocks (rprloc_core.pin): the shape model, the 2.5D sampler, the update rules on
a field whose fixed point is known, the network's shapes and the losses' gradients."""

import numpy as np
import pytest
import torch

from rprloc_core.geometry.volume import Volume
from rprloc_core.pin.network import PINNet, pin_loss
from rprloc_core.pin.patches25d import cut_25d
from rprloc_core.pin.shape_model import ShapeModel, fit_shape_model
from rprloc_core.pin.update_rules import class_steps, direction_class, iterate, localise


def sample_trilinear(volume, points_mm, fill=0.0):
    """The reference: values at points (..., 3) mm, trilinear between voxel centres, `fill` beyond
    the outer ones, written as plainly as possible."""
    idx = volume.mm_to_idx(points_mm)
    shape = np.asarray(volume.shape)
    inside = np.all((idx >= 0) & (idx <= shape - 1), axis=-1)
    idx = np.clip(idx, 0, shape - 1)
    lo = np.minimum(np.floor(idx).astype(np.int64), shape - 2).clip(min=0)
    frac = idx - lo
    out = np.zeros(idx.shape[:-1])
    for corner in np.ndindex(2, 2, 2):
        weight = np.prod([np.where(c, frac[..., a], 1 - frac[..., a]) for a, c in enumerate(corner)], axis=0)
        at = [np.minimum(lo[..., a] + c, shape[a] - 1) for a, c in enumerate(corner)]
        out += weight * volume.array[at[0], at[1], at[2]]
    return np.where(inside, out, fill)


def test_shape_model_round_trip_and_kept_variance():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(4, 3)) * 50
    basis = np.linalg.qr(rng.normal(size=(12, 2)))[0].T              # two true modes
    b = rng.normal(size=(30, 2)) * [20.0, 5.0]
    configs = mean + (b @ basis).reshape(30, 4, 3)
    model = fit_shape_model(configs, keep_variance=0.995)
    assert model.n_modes == 2 and model.n_landmarks == 4
    np.testing.assert_allclose(model.decode(model.encode(configs)), configs, atol=1e-9)
    np.testing.assert_allclose(model.modes @ model.modes.T, np.eye(2), atol=1e-12)
    assert model.sd[0] > model.sd[1]
    assert fit_shape_model(configs, keep_variance=0.9).n_modes == 1       # the first mode holds ~94 %
    again = ShapeModel.from_dict(model.to_dict())
    np.testing.assert_allclose(again.decode(np.ones(2)), model.decode(np.ones(2)))
    with pytest.raises(ValueError):
        fit_shape_model(configs[:1])
    with pytest.raises(ValueError):
        fit_shape_model(np.where(np.arange(12).reshape(4, 3) == 0, np.nan, configs))


def test_25d_patches_equal_direct_slices_on_the_voxel_grid():
    rng = np.random.default_rng(1)
    array = rng.normal(size=(20, 24, 28)).astype(np.float32)
    spacing = np.array([2.0, 2.0, 2.0])
    volume = Volume(array, spacing)
    centre_idx = np.array([10, 12, 14])
    z, y, x = centre_idx
    # on the voxel grid (centre at a voxel, odd size) each plane is exactly a slice of the array
    size = 5
    patches = cut_25d(volume, volume.idx_to_mm(centre_idx), size, pixel_mm=2.0)
    h = size // 2
    np.testing.assert_allclose(patches[0, 0], array[z, y - h:y + h + 1, x - h:x + h + 1], atol=1e-5)   # axial
    np.testing.assert_allclose(patches[0, 1], array[z - h:z + h + 1, y, x - h:x + h + 1], atol=1e-5)   # coronal
    np.testing.assert_allclose(patches[0, 2], array[z - h:z + h + 1, y - h:y + h + 1, x], atol=1e-5)   # sagittal


def test_trilinear_sampling_is_linear_and_fills_outside():
    z, y, x = np.meshgrid(np.arange(6), np.arange(7), np.arange(8), indexing="ij")
    volume = Volume((2 * z + 3 * y - x).astype(np.float32), (3.0, 2.0, 2.0))
    points_idx = np.array([[1.5, 2.25, 3.75], [4.0, 0.5, 6.9]])
    expected = 2 * points_idx[:, 0] + 3 * points_idx[:, 1] - points_idx[:, 2]
    np.testing.assert_allclose(sample_trilinear(volume, volume.idx_to_mm(points_idx)), expected, atol=1e-5)
    assert sample_trilinear(volume, volume.idx_to_mm([[-1.0, 0, 0]]), fill=-7.0)[0] == -7.0
    # the library's sampler, on the same field: exact wherever a plane's pixel lies inside, fill outside
    from rprloc_core.pin.patches25d import patch_grid_mm

    centres = volume.idx_to_mm(points_idx)
    grid_idx = volume.mm_to_idx(patch_grid_mm(centres, 4, 1.5))
    patches = cut_25d(volume, centres, 4, pixel_mm=1.5, fill=-7.0)
    inside = np.all((grid_idx >= 0) & (grid_idx <= np.asarray(volume.shape) - 1), axis=-1)
    linear = 2 * grid_idx[..., 0] + 3 * grid_idx[..., 1] - grid_idx[..., 2]
    np.testing.assert_allclose(patches[inside], linear[inside], atol=1e-4)
    assert (~inside).any() and (patches[~inside] == -7.0).all()


def _quadratic_field(target, step=1.0):
    """A predictor for the field f(s) = |s - target|^2: the regression answers the exact
    displacement, the classification puts its mass on the best axis-aligned direction."""
    target = np.asarray(target, dtype=float)

    def predict(states):
        d = target - states
        probabilities = np.full((len(states), 2 * states.shape[1]), 0.1 / (2 * states.shape[1] - 1))
        best = direction_class(d)
        # at the fixed point no move is better than another: a small step either way
        probabilities[np.arange(len(states)), best] = 0.9
        return probabilities, d
    return predict


@pytest.mark.parametrize("rule", ["A", "B", "C"])
def test_update_rules_reach_the_fixed_point_of_a_quadratic_field(rule):
    target = np.array([10.0, -4.0, 7.0])
    rng = np.random.default_rng(2)
    initial = target + rng.uniform(-30, 30, size=(19, 3))
    predicted = localise(_quadratic_field(target), initial, rule, step=1.0)
    # A moves one unit per step: it ends within a step of the target (it oscillates around it)
    assert np.abs(predicted - target).max() <= (1.0 if rule == "A" else 1e-6)


def test_memoised_rule_a_gives_the_same_walk_with_fewer_network_rows():
    from rprloc_core.pin.update_rules import memoised

    target = np.array([10.3, -4.1, 7.7])
    initial = target + np.random.default_rng(3).uniform(-30, 30, size=(19, 3))
    rows = []
    field = _quadratic_field(target)

    def counted(states):
        rows.append(len(states))
        return field(states)

    plain = iterate(field, initial, "A", iterations=350, step=[3.0, 2.0, 2.0], return_path=True)[1]
    remembered = iterate(memoised(counted), initial, "A", iterations=350, step=[3.0, 2.0, 2.0], return_path=True)[1]
    np.testing.assert_array_equal(remembered, plain)
    assert sum(rows) < 350 * 19 / 5            # the oscillation at the end is answered from memory


def test_rule_c_is_damped_by_the_confidence():
    target = np.zeros(2)
    final, path = iterate(_quadratic_field(target), np.array([[8.0, 0.0]]), "C", iterations=1, return_path=True)
    np.testing.assert_allclose(final, [[0.8, 0.0]])               # P_max = 0.9 of the way
    assert path.shape == (2, 1, 2)
    clipped = iterate(_quadratic_field(np.array([100.0, 0])), np.array([[0.0, 0.0]]), "B", iterations=1,
                      lower=[-5, -5], upper=[5, 5])
    np.testing.assert_allclose(clipped, [[5.0, 0.0]])


def test_direction_classes_and_class_steps():
    d = np.array([[0.0, -5.0, 1.0], [3.0, 0.0, -1.0]])
    np.testing.assert_array_equal(direction_class(d), [3, 0])      # -y, +z
    probabilities = np.eye(6)[[3, 0]]
    np.testing.assert_allclose(class_steps(probabilities, [3.0, 2.0, 2.0]), [[0, -2.0, 0], [3.0, 0, 0]])


def test_network_shapes_and_loss_gradients():
    torch.manual_seed(0)
    net = PINNet(in_channels=3 * 2, patch_size=32, n_dims=4, width=4, hidden=16)
    x = torch.randn(5, 6, 32, 32)
    logits, displacement = net(x)
    assert logits.shape == (5, 8) and displacement.shape == (5, 4)
    target = torch.randn(5, 4)
    for kind in ("C", "R", "C+R"):
        net.zero_grad()
        loss = pin_loss(*net(x), target, kind)
        loss.backward()
        grads = {name: p.grad is not None and p.grad.abs().sum().item() > 0 for name, p in net.named_parameters()}
        assert grads["classify.2.weight"] == (kind != "R")
        assert grads["regress.2.weight"] == (kind != "C")
    combined = pin_loss(logits, displacement, target, "C+R", alpha=0.5)
    assert combined.item() == pytest.approx(0.5 * pin_loss(logits, displacement, target, "C").item()
                                            + 0.5 * pin_loss(logits, displacement, target, "R").item())
    with pytest.raises(ValueError):
        PINNet(3, 40, 3)
    with pytest.raises(ValueError):
        pin_loss(logits, displacement, target, "X")


def _ramp_cases(n=4, seed=3):
    """Volumes whose intensity is a ramp centred on the landmark, different per axis, so that the
    patches say where the landmark is; the landmark moves between cases."""
    from rprloc_core.geometry.volume import Volume

    rng = np.random.default_rng(seed)
    cases = []
    z, y, x = np.meshgrid(np.arange(30), np.arange(30), np.arange(30), indexing="ij")
    for _ in range(n):
        truth_idx = rng.uniform(12, 18, size=3)
        array = 0.03 * (z - truth_idx[0]) + 0.02 * (y - truth_idx[1]) + 0.01 * (x - truth_idx[2])
        volume = Volume(array.astype(np.float32), (3.0, 3.0, 3.0))
        cases.append((volume, volume.idx_to_mm(truth_idx)))
    return cases


def test_pin_training_learns_resumes_exactly_and_refuses_other_settings(tmp_path):
    from rprloc_core.errors import DataError
    from rprloc_core.pin.training import LandmarkSpace, PINTrainConfig, load_network, predictor, train_pin

    space = LandmarkSpace((20.0, 20.0, 20.0))
    config = PINTrainConfig(patch_size=32, pixel_mm=3.0, width=4, hidden=16, loss="R", steps=120, batch_size=16,
                            lr=3e-3, checkpoint_every=20)
    cases = _ramp_cases()
    summary = train_pin(space, config, cases, tmp_path / "straight", progress=False)
    history = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)["history"]
    assert summary["steps"] == 120 and history[-1]["loss"] < 0.5 * history[0]["loss"]      # it learns

    short = PINTrainConfig(**{**config.__dict__, "steps": 60})
    train_pin(space, short, cases, tmp_path / "resumed", progress=False)
    again = train_pin(space, config, cases, tmp_path / "resumed", progress=False)     # more steps: a resume
    assert again["resumed"] and again["steps"] == 120 and again["calls"] == 2 and summary["calls"] == 1
    assert train_pin(space, config, cases, tmp_path / "resumed", progress=False)["calls"] == 2   # finished
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["calls"] == 2
    a, b = load_network(tmp_path / "straight" / "last.pt"), load_network(tmp_path / "resumed" / "last.pt")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name

    with pytest.raises(DataError):
        train_pin(space, PINTrainConfig(**{**config.__dict__, "lr": 1e-2}), cases, tmp_path / "straight",
                  progress=False)

    volume, truth = cases[0]
    predict = predictor(a, space, volume, config)
    probabilities, displacement = predict(truth[None] + [[15.0, -15.0, 10.0]])
    assert probabilities.shape == (1, 6) and displacement.shape == (1, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    start = truth + np.random.default_rng(0).uniform(-15, 15, size=(19, 3))
    final = localise(predict, start, "B", iterations=5)
    # the error after the moves is smaller than the starts' (the ramp makes the landmark findable)
    assert np.linalg.norm(final - truth) < np.linalg.norm(start - truth, axis=1).mean()


def test_fast_25d_patches_equal_the_reference_sampler():
    from rprloc_core.geometry.volume import Volume
    from rprloc_core.pin.patches25d import patch_grid_mm

    rng = np.random.default_rng(4)
    volume = Volume(rng.normal(size=(17, 21, 25)).astype(np.float32), (3.0, 2.0, 2.0), origin_mm=(1.0, -2.0, 0.5))
    centres = volume.idx_to_mm(rng.uniform(-3, [19, 23, 27], size=(7, 3)))     # some near or past the border
    fast = cut_25d(volume, centres, 8, pixel_mm=2.5, fill=-1.0)
    reference = sample_trilinear(volume, patch_grid_mm(centres, 8, 2.5), fill=-1.0)
    np.testing.assert_allclose(fast, reference, atol=1e-5)
    assert (fast == -1.0).any()


def test_pin_tables_from_known_errors():
    """The paper-table analogues aggregate per-query errors as stated: mean and population SD over
    queries, variants in the paper's order with its numbers beside, the overall row of Table 2."""
    import pandas as pd

    from rprloc_core.experiments.paper import paper_table
    from rprloc_core.experiments.pin_predictions import VARIANTS, single_vs_multiple_table, variants_table

    rows = []
    for i, variant in enumerate(VARIANTS):
        rows += [{"model": variant, "query": q, "landmark": "Mandible z_min", "error_mm": e + i, "axis_error_mm": e,
                  "time_s": 0.1}
                 for q, e in (("a", 2.0), ("b", 6.0))]
    for model, shift in (("PIN-Single", 0.0), ("PIN-Multiple", 1.0)):
        rows += [{"model": model, "query": q, "landmark": m, "error_mm": e + shift, "axis_error_mm": shift,
                  "time_s": 0.01}
                 for q, e in (("a", 1.0), ("b", 3.0)) for m in ("L1", "L2")]
    errors = pd.DataFrame(rows)
    variants = variants_table(errors, paper_table("pin_table1"))
    assert list(variants.variant) == list(VARIANTS)
    assert variants.error_mean_mm.tolist() == [4.0, 5.0, 6.0, 7.0, 8.0]
    assert variants.error_sd_mm.tolist() == [2.0] * 5
    assert variants.set_index("variant").loc["PIN5", "paper_error_mean_mm"] == 5.47
    table = single_vs_multiple_table(errors, paper_table("pin_table2")).set_index("landmark")
    assert list(table.index) == ["L1", "L2", "Overall"]
    assert table.loc["Overall", "PIN-Single error_mean_mm"] == 2.0
    assert table.loc["Overall", "PIN-Multiple error_mean_mm"] == 3.0
    assert table.loc["L2", "PIN-Multiple axis_error_mean_mm"] == 1.0
    assert table.loc["Overall", "paper PIN-Multiple error_mean_mm"] == 5.59
    assert np.isnan(table.loc["L1", "paper PIN-Single error_mean_mm"])


def test_pin_training_reports_a_validation_error_in_mm(tmp_path):
    """The validation sample is fixed by the seed, and its error after one move is in mm: a network
    that answers zero leaves every displaced start where it is (error = the mean start distance)."""
    from rprloc_core.pin.config import PINTrainConfig
    from rprloc_core.pin.training import LandmarkSpace, build_network, validate, validation_set

    rng = np.random.default_rng(1)
    volume = Volume(rng.normal(size=(20, 24, 24)).astype(np.float32), np.array([3.0, 2.0, 2.0]))
    cases = [(volume, np.array([30.0, 24.0, 24.0])), (volume, np.array([27.0, 20.0, 26.0]))]
    space, config = LandmarkSpace((10.0, 10.0, 10.0)), PINTrainConfig(width=4, hidden=8)
    first, again = validation_set(space, config, cases), validation_set(space, config, cases)
    np.testing.assert_array_equal(first["states"], again["states"])
    net = build_network(space, config)
    for head in (net.regress[-1],):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    result = validate(net, space, config, first)
    start_distance = np.linalg.norm(first["states"] - first["truth_mm"][:, 0], axis=1).mean()
    assert result["val_error_mm"] == pytest.approx(start_distance)


def test_pin_trains_in_the_shared_loop_and_validates_at_every_checkpoint(tmp_path):
    """PIN runs in training_loop.run_training, as the detector and CC2D do: one history row per
    checkpoint with the training loss and the validation loss and error, `best.pt` from the step with
    the lowest validation loss, and the summary's last loss from the last row."""
    from rprloc_core.pin.training import LandmarkSpace, PINTrainConfig, train_pin

    space = LandmarkSpace((20.0, 20.0, 20.0))
    config = PINTrainConfig(patch_size=32, width=4, hidden=16, loss="R", steps=30, batch_size=8, lr=3e-3,
                            checkpoint_every=10)
    cases = _ramp_cases()
    summary = train_pin(space, config, cases, tmp_path, progress=False, validation_cases=cases[:2])
    history = torch.load(tmp_path / "last.pt", weights_only=False)["history"]
    assert [row["step"] for row in history] == [10, 20, 30]
    assert all({"loss", "val_loss", "val_error_mm"} <= set(row) for row in history)
    assert summary["last_loss"] == history[-1]["loss"] and summary["calls"] == 1
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert best["val_loss"] == min(row["val_loss"] for row in history)
    assert best["step"] == min(history, key=lambda row: row["val_loss"])["step"]
