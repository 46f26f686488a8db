"""Training: the loss goes down on structured phantoms, checkpoints, resume, time limit."""

import dataclasses

import numpy as np
import pytest
import torch

from rprloc_core.geometry.volume import Volume
from rprloc_core.rprloc.pnet import load_pnet, read_checkpoint
from rprloc_core.rprloc.training import TrainConfig, load_history, plot_history, train_pnet, training_calls

torch.set_num_threads(1)


def phantom(seed: int, shape=(20, 28, 28)) -> Volume:
    """A head-like phantom: an ellipsoid body in air with a few bright and dark blobs at fixed
    anatomical places (jittered per 'patient') and smooth random texture."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"), -1)
    shift = rng.normal(0, 0.05, 3)
    g = grid - shift
    body = ((g / [0.95, 0.85, 0.8]) ** 2).sum(-1) < 1
    img = 0.35 + 0.05 * rng.random(shape)
    for centre, radius, value in [((-0.5, 0.0, 0.0), 0.3, 0.9), ((0.4, -0.3, 0.3), 0.25, 0.1),
                                  ((0.3, 0.4, -0.4), 0.2, 0.7), ((0.0, 0.5, 0.3), 0.2, 0.6)]:
        d = np.linalg.norm(g - np.asarray(centre), axis=-1)
        img = np.where(d < radius, value, img)
    return Volume(np.where(body, img, 0.0).astype(np.float32), (3.0, 2.0, 2.0))


def small_config(**changes) -> TrainConfig:
    config = TrainConfig(mode="coarse", variant="han", base_width=4, patch_size=(6, 8, 8), r_mm=60.0,
                         downsample=1, volumes_per_step=2, patches_per_volume=6, steps=40, lr=3e-3,
                         lr_decay_every=20, val_every=10, val_pairs=300, seed=0)
    return dataclasses.replace(config, **changes)


@pytest.fixture(scope="module")
def volumes():
    return [phantom(s) for s in range(4)], [phantom(s) for s in range(10, 12)]


def test_short_training_lowers_validation_loss(volumes, tmp_path):
    train, val = volumes
    summary = train_pnet(small_config(), train, val, tmp_path, device="cpu", progress=False)
    history = load_history(tmp_path)
    assert summary["steps"] == 40 and summary["stopped"] == "steps"
    assert list(history["step"]) == [0, 10, 20, 30, 40]
    untrained = history["val_loss_mm2"].iloc[0]
    assert summary["best_val_loss_mm2"] < 0.8 * untrained
    assert summary["pairs_per_s"] > 0 and np.isnan(history["train_loss_mm2"].iloc[0])
    best = load_pnet(tmp_path / "best.pt")
    assert best.config["spacing_mm"] == [3.0, 2.0, 2.0] and best.config["patch_size"] == [6, 8, 8]
    assert read_checkpoint(tmp_path / "best.pt")["extra"]["step"] == summary["best_step"]
    import matplotlib
    matplotlib.use("Agg")
    assert plot_history(history).get_ylabel().startswith("offset MSE")
    legend = [t.get_text() for t in plot_history(history, distilled=True).get_legend().get_texts()]
    assert "teacher" in legend[0] and "true offsets" in legend[1]


def test_first_block_width_reaches_the_trained_model(volumes, tmp_path):
    train, val = volumes
    train_pnet(small_config(steps=10, first_width=2), train, val, tmp_path, device="cpu", progress=False)
    best = load_pnet(tmp_path / "best.pt")
    assert best.config["first_width"] == 2 and best.encoder.block1.shortcut.out_channels == 2
    assert read_checkpoint(tmp_path / "best.pt")["extra"]["train_config"]["first_width"] == 2


def test_a_wider_start_is_cut_to_the_first_block_width(volumes, tmp_path):
    from rprloc_core.rprloc.pruning import narrow_first_block
    train, val = volumes
    train_pnet(small_config(steps=4, val_every=2), train, val, tmp_path / "wide", device="cpu", progress=False)
    wide = read_checkpoint(tmp_path / "wide" / "best.pt")["state_dict"]
    train_pnet(small_config(steps=0, first_width=3, init_from=str(tmp_path / "wide" / "best.pt")), train, val,
               tmp_path / "narrow", device="cpu", progress=False)
    start = read_checkpoint(tmp_path / "narrow" / "best.pt")["state_dict"]
    expected = narrow_first_block(wide, 3)
    assert start["encoder.block1.norm.weight"].shape == (3,)
    assert all(torch.equal(start[k], expected[k]) for k in expected)


def test_a_teacher_replaces_the_true_offsets_in_the_training_loss(volumes, tmp_path):
    # A teacher whose last layer is zero predicts a zero offset for every pair: a student distilled
    # from it learns to answer zero, while its validation loss (true offsets) stays high.
    from rprloc_core.rprloc.pnet import save_checkpoint
    from rprloc_core.rprloc.training import build_model, pair_errors_mm
    train, val = volumes
    config = small_config(steps=30, val_every=10, lr=1e-2, weight_decay=0.0)
    teacher = build_model(config, [3.0, 2.0, 2.0])
    with torch.no_grad():
        teacher.head.fc3.weight.zero_()
    save_checkpoint(tmp_path / "teacher.pt", teacher)
    distilled = train_pnet(dataclasses.replace(config, teacher=str(tmp_path / "teacher.pt")), train, val,
                           tmp_path / "student", device="cpu", progress=False)
    taught = train_pnet(config, train, val, tmp_path / "truth", device="cpu", progress=False)
    history = load_history(tmp_path / "student")
    assert history["train_loss_mm2"].iloc[-1] < 0.05 * history["train_loss_mm2"].iloc[1]
    assert taught["best_val_loss_mm2"] < 0.8 * history["val_loss_mm2"].iloc[-1]
    from rprloc_core.rprloc.sampling import draw_training_groups
    from rprloc_core.rprloc.training import GridPatches
    groups = draw_training_groups(train, 2, 6, "coarse", np.random.default_rng(5))
    patches = GridPatches(train, (6, 8, 8), "cpu")(groups)
    with torch.no_grad():
        assert float(pair_errors_mm(teacher, patches, groups, (3.0, 2.0, 2.0), 60.0, teacher=teacher).abs().max()) == 0
    other = build_model(dataclasses.replace(config, patch_size=(6, 6, 6)), [3.0, 2.0, 2.0])
    save_checkpoint(tmp_path / "other.pt", other)
    with pytest.raises(ValueError, match="other.pt: PNet checkpoint has patch_size"):
        train_pnet(dataclasses.replace(config, teacher=str(tmp_path / "other.pt")), train, val, tmp_path / "x",
                   device="cpu", progress=False)
    assert distilled["steps"] == 30


def test_resume_gives_the_same_weights_as_one_run(volumes, tmp_path):
    train, val = volumes
    config = small_config(steps=8, val_every=3, lr_decay_every=4, mode="fine", fine_range_vox=(4, 6, 6),
                          r_mm=[12.0, 12.0, 12.0], downsample=(1, 2, 2), patch_size=(6, 6, 6))
    one = train_pnet(config, train, val, tmp_path / "one", device="cpu", progress=False)
    config = dataclasses.replace(config, steps=5)
    first = train_pnet(config, train, val, tmp_path / "two", device="cpu", progress=False)
    assert first["steps"] == 5
    config = dataclasses.replace(config, steps=8)
    second = train_pnet(config, train, val, tmp_path / "two", device="cpu", progress=False)
    assert second["resumed"] and second["steps"] == 8 and one["steps"] == 8
    a = read_checkpoint(tmp_path / "one" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "two" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_history(tmp_path / "two")["step"].tolist() == [0, 3, 5, 6, 8]
    again = train_pnet(config, train, val, tmp_path / "two", device="cpu", progress=False)
    assert again["stopped"] == "already_done" and again["steps"] == 8
    # the release says whether a run was paused: two calls trained it, the one that had nothing to do is not counted
    assert training_calls(tmp_path / "one") == 1 and training_calls(tmp_path / "two") == 2
    assert training_calls(tmp_path / "none") == 0
    (tmp_path / "other").mkdir()
    torch.save({"step": 3}, tmp_path / "other" / "last.pt")
    with pytest.raises(ValueError, match="not a training state"):
        training_calls(tmp_path / "other")
    assert load_pnet(tmp_path / "two" / "last.pt").config["spacing_mm"] == [3.0, 4.0, 4.0]


def test_time_limit_and_changed_config(volumes, tmp_path):
    train, val = volumes
    summary = train_pnet(small_config(time_limit_s=0.0, val_pairs=60), train, val, tmp_path, progress=False)
    assert summary["stopped"] == "time_limit" and summary["steps"] == 1
    assert (tmp_path / "last.pt").exists()
    with pytest.raises(ValueError, match="cannot resume.*lr"):
        train_pnet(small_config(lr=1.0, val_pairs=60), train, val, tmp_path, progress=False)


def test_volumes_must_share_spacing_and_fit_the_patch(volumes, tmp_path):
    train, val = volumes
    odd = Volume(train[0].array, (2.0, 2.0, 2.0))
    with pytest.raises(ValueError, match="spacing"):
        train_pnet(small_config(), train + [odd], val, tmp_path, progress=False)
    with pytest.raises(ValueError, match="smaller than the patch"):
        train_pnet(small_config(patch_size=(32, 8, 8)), train, val, tmp_path, progress=False)


def test_grid_patches_kept_on_the_device_cut_the_same_patches():
    from rprloc_core.rprloc.sampling import draw_training_groups
    from rprloc_core.rprloc.training import GridPatches
    vols = [phantom(seed=s) for s in range(3)]
    groups = draw_training_groups(vols, 5, 4, "coarse", np.random.default_rng(0))
    kept = GridPatches(vols, (6, 8, 8), "cpu", keep_on_device=True)
    each_time = GridPatches(vols, (6, 8, 8), "cpu")
    assert torch.equal(kept(groups), each_time(groups)) and torch.equal(kept(groups), each_time(groups))
    assert len(kept._cutters) == len(set(groups.volume_index)) and not each_time._cutters


def test_a_release_entry_names_the_teacher_and_the_start(volumes, tmp_path, monkeypatch):
    # The distilled model's entry and checkpoint say "fine_teacher", never this machine's path.
    from rprloc_core.experiments import models
    from rprloc_core.rprloc.pnet import save_checkpoint
    from rprloc_core.rprloc.training import build_model
    from rprloc_core.settings import load_settings

    monkeypatch.setenv("RPRLOC_DATA_DIR", str(tmp_path))
    settings = load_settings("demo")
    train, val = volumes
    teacher_file = models.trained_file(settings, "fine_teacher")
    teacher_file.parent.mkdir(parents=True)
    save_checkpoint(teacher_file, build_model(small_config(), [3.0, 2.0, 2.0]))
    config = small_config(steps=2, val_every=1, first_width=3, teacher=str(teacher_file), init_from=str(teacher_file))
    train_pnet(config, train, val, models.models_dir(settings) / "fine", device="cpu", progress=False)
    entry = models._pnet_entry(settings, "fine", config)
    assert entry["training"]["teacher"] == entry["training"]["init_from"] == "fine_teacher"
    recorded = read_checkpoint(entry["source"])["extra"]["train_config"]
    assert recorded["teacher"] == recorded["init_from"] == "fine_teacher"
    assert str(tmp_path) not in repr(entry["training"]) + repr(recorded)


def test_augmented_training_resumes_exactly_and_validates_on_plain_pairs(volumes, tmp_path):
    train, val = volumes
    config = small_config(steps=6, val_every=3, augment_zoom=0.1, augment_yaw_deg=10.0)
    one = train_pnet(config, train, val, tmp_path / "one", device="cpu", progress=False)
    train_pnet(dataclasses.replace(config, steps=4), train, val, tmp_path / "two", device="cpu", progress=False)
    train_pnet(config, train, val, tmp_path / "two", device="cpu", progress=False)
    a = read_checkpoint(tmp_path / "one" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "two" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)      # the transforms' draws are part of the saved stream
    plain = train_pnet(dataclasses.replace(config, augment_zoom=0.0, augment_yaw_deg=0.0), train, val,
                       tmp_path / "plain", device="cpu", progress=False)
    c = read_checkpoint(tmp_path / "plain" / "last.pt")["state_dict"]
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the augmentation reached the training patches
    # the untrained model's validation loss is the same with or without augmentation: plain pairs
    untrained = [load_history(tmp_path / run)["val_loss_mm2"].iloc[0] for run in ("one", "plain")]
    assert untrained[0] == untrained[1]
    assert one["steps"] == plain["steps"] == 6
    with pytest.raises(ValueError, match="augment_zoom must be in"):
        train_pnet(dataclasses.replace(config, augment_zoom=-0.1), train, val, tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match="cannot resume.*augment_zoom"):
        train_pnet(dataclasses.replace(config, augment_zoom=0.2, steps=8), train, val, tmp_path / "one",
                   device="cpu", progress=False)
