"""CC2D in the project's protocol (experiments.cc2d_predictions) on the smoke profile's phantoms:
its settings parse and refuse impossible values, stage 1 reads no mask, a trained pair of stages
is published and loaded back (sha256 checked, never replaced unasked), every (support, query) pair
gets finite scores with points inside the query, and a longer run resumes the trained one."""

import json
import shutil

import numpy as np
import pytest
import torch

from rprloc_core.data import dataset
from rprloc_core.data.phantom import write_phantom_dataset
from rprloc_core.errors import DataError
from rprloc_core.evaluation.protocol import one_shot_protocol
from rprloc_core.experiments import cc2d_predictions as cc2d
from rprloc_core.experiments import models, weights
from rprloc_core.geometry.volume import Volume
from rprloc_core.settings import CC2DSettings, SettingsError, load_settings

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(folder, settings, training summaries): the smoke phantoms and both stages trained on them."""
    tmp = tmp_path_factory.mktemp("cc2d")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RPRLOC_DATA_DIR", str(tmp / "data"))
        settings = load_settings("smoke", {"cc2d.release": str(tmp / "release")})
        data = settings.data
        write_phantom_dataset(dataset.cases_root(settings), data.n_train, data.n_validation, data.n_test,
                              seed=settings.seed)
        yield tmp, settings, cc2d.train(settings, progress=False)


def released(tmp, release=None, **overrides):
    """The smoke profile reading CC2D from a release (`weights.release` must name some folder)."""
    return load_settings("smoke", {"cc2d.release": str(release or tmp / "release"), "weights.source": "release",
                                   "weights.release": str(tmp / "no-rprloc-release"), **overrides})


# ------------------------------------------------------------------------------------- settings

@pytest.mark.parametrize("profile", ["smoke", "demo", "paper"])
def test_every_profile_has_a_cc2d_section(profile):
    section = load_settings(profile).cc2d
    assert isinstance(section, CC2DSettings)
    assert section.train.dims == section.tpl.dims == 3 and section.tpl.n_landmarks == 24
    assert isinstance(section.sdr_radii_mm, tuple) and isinstance(section.train.crop_shape(), tuple)


def test_demo_runs_on_the_6_4_4_mm_grid_with_its_own_release():
    settings = load_settings("demo")
    grid = np.asarray(settings.preprocess.spacing_zyx) * settings.cc2d.downsample
    assert grid.tolist() == [6.0, 4.0, 4.0] and settings.cc2d.release == "weights/openkbp-han-cc2d"


@pytest.mark.parametrize("overrides, message", [
    ({"cc2d.downsample": 0}, "cc2d.downsample"),
    ({"cc2d.n_train": 0}, "cc2d.n_train"),
    ({"cc2d.n_validation": -1}, "cc2d.n_validation"),
    ({"cc2d.top_k": 0}, "cc2d.top_k"),
    ({"cc2d.sdr_radii_mm": []}, "cc2d.sdr_radii_mm"),
    ({"cc2d.tpl.n_landmarks": 6}, "cc2d.tpl.n_landmarks"),
    ({"cc2d.train.dims": 2, "cc2d.train.crop_size": 16}, "cc2d.train.dims"),
    ({"cc2d.train.steps": 0}, "cc2d.train.steps"),
    ({"cc2d.train.temperature": 0.0}, "cc2d.train.temperature"),
    ({"cc2d.train.norm": "layer"}, r"\[cc2d\] \[train\]: norm must be one of"),
    ({"cc2d.tpl.stepz": 3}, "unknown setting.*stepz"),
])
def test_bad_cc2d_settings_are_errors_that_name_the_key(overrides, message):
    with pytest.raises(SettingsError, match=message):
        load_settings("smoke", overrides)


# ----------------------------------------------------------------------------------------- grid

def test_pooled_voxels_go_back_to_the_centre_of_their_block_and_stay_inside_the_case():
    volume = Volume(np.zeros((5, 6, 7), np.float32), (3.0, 2.0, 2.0))
    grid = volume.downsample(2)                                       # 3 x 3 x 4 voxels
    np.testing.assert_allclose(cc2d.to_case_mm(grid, volume, [[0, 0, 0]]), [[1.5, 1.0, 1.0]])
    # the last pooled voxel of an odd axis is centred beyond the last full voxel: clipped to it
    np.testing.assert_allclose(cc2d.to_case_mm(grid, volume, [[2, 2, 3]]), [[12.0, 9.0, 12.0]])
    np.testing.assert_allclose(cc2d.to_index(grid, [[1.5, 1.0, 1.0], [-5.0, 3.0, 5.0]]), [[0, 0, 0], [0, 0.5, 1]])


def test_sdr_columns_follow_the_reference_tables():
    assert cc2d.sdr_column(5) == "sdr_5mm_pct" and cc2d.sdr_column(2.5) == "sdr_2_5mm_pct"


# ------------------------------------------------------------------------------------- training

def test_stage1_material_reads_no_mask(trained, monkeypatch):
    _, settings, _ = trained

    def no_masks(*args, **kwargs):
        raise AssertionError("a labelled case was loaded")

    cc2d._material.cache_clear()
    monkeypatch.setattr(dataset, "load_case", no_masks)
    train = cc2d.material(settings, "train")
    assert [c for c, _ in train] == dataset.case_ids(settings, "train")
    full = dataset.load_volume(settings, train[0][0]).shape
    assert train[0][1].shape == tuple(-(-n // 2) for n in full)      # pooled 2x (ceil)
    assert len(cc2d.material(settings, "validation")) == settings.cc2d.n_validation


def test_train_publish_and_load_round_trip(trained, tmp_path):
    tmp, settings, summaries = trained
    assert [(s["name"], s["steps"]) for s in summaries] == [("ssl", settings.cc2d.train.steps),
                                                           ("tpl", settings.cc2d.tpl.steps)]
    template = one_shot_protocol(settings).supports[0]
    assert summaries[1]["template"] == template
    manifest = cc2d.publish(settings)
    assert set(manifest["models"]) == {"ssl", "tpl"} and manifest["template"] == template
    assert manifest["data_split"]["train"] == dataset.case_ids(settings, "train")
    assert manifest["cc2d"]["spacing_zyx_mm"] == [6.0, 6.0, 6.0]
    assert manifest["models"]["tpl"]["summary"]["steps"] == settings.cc2d.tpl.steps
    with pytest.raises(DataError, match="already there"):
        cc2d.publish(settings)
    again = cc2d.publish(settings, overwrite=True)
    assert again["models"]["ssl"]["sha256"] == manifest["models"]["ssl"]["sha256"]
    assert "provenance" not in again["models"]["ssl"]          # trained here: nothing to say
    assert not any(again["models"][stage]["summary"]["resumed"] for stage in ("ssl", "tpl"))   # one call each
    note = cc2d.trained_dir(settings) / "ssl" / models.PROVENANCE
    note.write_text(json.dumps({"machine": "a lent GPU", "resumed": True}))   # a stage trained elsewhere says so
    try:
        told = cc2d.publish(settings, overwrite=True)
    finally:
        note.unlink()
    assert told["models"]["ssl"]["provenance"] == {"machine": "a lent GPU", "resumed": True}
    assert "provenance" not in told["models"]["tpl"]
    assert told["models"]["ssl"]["summary"]["resumed"] and not told["models"]["tpl"]["summary"]["resumed"]
    last = cc2d.tpl_dir(settings) / "last.pt"                  # the trainer counted a second call
    saved = torch.load(last, weights_only=False)
    torch.save({**saved, "calls": 2}, last)
    try:
        counted = cc2d.publish(settings, overwrite=True)
    finally:
        torch.save(saved, last)
    assert counted["models"]["tpl"]["summary"]["resumed"] and not counted["models"]["ssl"]["summary"]["resumed"]

    release = released(tmp)
    assert cc2d.template_id(release) == template
    for stage in cc2d.STAGES:
        path = cc2d.model_file(release, stage)
        assert path.parent == tmp / "release" and weights.sha256(path) == manifest["models"][stage]["sha256"]
        ours, theirs = cc2d.load(release, stage).state_dict(), cc2d.load(settings, stage).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert set(cc2d.history(release).stage) == {"ssl", "tpl"}

    damaged = tmp_path / "damaged"
    shutil.copytree(tmp / "release", damaged)
    with open(damaged / "tpl.pt", "ab") as f:
        f.write(b"\0")
    with pytest.raises(DataError, match="sha256"):
        cc2d.load(released(tmp, damaged), "tpl")
    with pytest.raises(DataError, match="pooled 2x"):
        cc2d.model_file(released(tmp, **{"cc2d.downsample": 1}), "ssl")


@pytest.fixture(scope="module")
def predicted(trained):
    """(settings reading the published release, protocol) with every pair predicted."""
    tmp, settings, _ = trained
    if not weights.is_release(tmp / "release"):
        cc2d.publish(settings)
    release = released(tmp)
    protocol = one_shot_protocol(release)
    cc2d.predict_all(release, protocol, parallel=False, progress=False)
    return release, protocol


def test_every_pair_is_predicted_inside_the_query_and_scored(predicted):
    release, protocol = predicted
    assert not cc2d.cache(release, "ssl").missing(protocol.pairs)
    template = cc2d.template_id(release)

    for stage in cc2d.STAGES:
        for support_id, query_id in cc2d.pairs(release, stage, protocol):
            run = cc2d.cache(release, stage).read(support_id, query_id)
            idx = dataset.load_case(release, query_id).mm_to_idx(run["points_mm"])
            shape = np.asarray(dataset.load_case(release, query_id).volume.shape)
            assert run["points_mm"].shape == (24, 3) and float(run["wall_s"]) > 0
            assert np.all(idx >= -1e-9) and np.all(idx <= shape - 1 + 1e-9)

    rows = cc2d.score(release, protocol)
    for label, supports in ((cc2d.SSL_LABEL, set(protocol.supports)), (cc2d.TPL_LABEL, {template})):
        part = rows[rows.method == label]
        expected = {(s, q, o) for s in supports for q in protocol.queries
                    for o in protocol.organs if o in dataset.load_case(release, q).labels}
        assert set(zip(part.support, part["query"], part.organ)) == expected and len(part) == len(expected)
    metrics = rows[["iou_pct", "awd_mm", "point_error_mm", "time_s"]].to_numpy(float)
    assert np.isfinite(metrics).all() and (rows.strategy == "extreme").all()

    errors = cc2d.landmark_errors(release, protocol)
    table = cc2d.landmark_table(errors, release.cc2d.sdr_radii_mm)
    assert list(table.method) == [cc2d.SSL_LABEL, cc2d.TPL_LABEL]
    sdr = table[[cc2d.sdr_column(r) for r in release.cc2d.sdr_radii_mm]].to_numpy()
    assert np.isfinite(table.mre_mm).all() and (np.diff(sdr, axis=1) >= 0).all() and sdr.max() <= 100
    # the point error of the box rows is the mean of the same landmark errors
    ssl = errors[errors.method == cc2d.SSL_LABEL]
    assert rows[rows.method == cc2d.SSL_LABEL].point_error_mm.mean() == pytest.approx(
        ssl.groupby(["support", "query", ssl.landmark.str.split().str[0]]).error_mm.mean().mean(), rel=1e-6)


def test_the_scale_ablation_leaves_out_one_scale_at_a_time_and_its_full_row_is_cc2d_ssl(predicted):
    release, protocol = predicted
    n = release.cc2d.train.n_scales
    subsets = cc2d.scale_subsets(release)
    assert list(subsets.values()) == [tuple(range(n))] + [tuple(i for i in range(n) if i != s) for s in range(n)]
    assert "without scale 1 (6 x 6 x 6 mm cells)" in subsets              # smoke: 3 mm voxels pooled 2x
    table = cc2d.scale_ablation(release, protocol).set_index("scales")
    assert list(table.index) == list(subsets)
    ssl_rows = cc2d.score(release, protocol)
    ssl_rows = ssl_rows[ssl_rows.method == cc2d.SSL_LABEL]
    landmarks = cc2d.landmark_table(cc2d.landmark_errors(release, protocol), release.cc2d.sdr_radii_mm)
    assert table.loc["all scales", "iou_pct"] == pytest.approx(ssl_rows.iou_pct.mean(), rel=1e-9)
    assert table.loc["all scales", "mre_mm"] == pytest.approx(landmarks.set_index("method").loc[cc2d.SSL_LABEL,
                                                                                                  "mre_mm"], rel=1e-9)
    assert np.isfinite(table[["iou_pct", "awd_mm", "mre_mm"]].to_numpy()).all()


def test_stage2_is_compared_with_stage1_on_its_own_template_only(predicted):
    release, protocol = predicted
    table = cc2d.template_comparison(release, protocol).set_index("method")
    template = cc2d.template_id(release)
    assert list(table.index) == [cc2d.SSL_LABEL, cc2d.TPL_LABEL] and (table.template == template).all()
    errors = cc2d.landmark_errors(release, protocol)
    ssl = errors[(errors.method == cc2d.SSL_LABEL) & (errors.support == template)]
    assert table.loc[cc2d.SSL_LABEL, "mre_mm"] == pytest.approx(ssl.error_mm.mean(), rel=1e-9)
    assert table.loc[cc2d.SSL_LABEL, "n_landmarks"] == table.loc[cc2d.TPL_LABEL, "n_landmarks"] == len(ssl)


def test_training_ablation_changes_one_setting_per_variant_and_is_released(trained, tmp_path, monkeypatch):
    from rprloc_core.experiments import cc2d_ablation

    tmp, settings, _ = trained
    shutil.copytree(tmp / "data", tmp_path / "data")
    monkeypatch.setenv("RPRLOC_DATA_DIR", str(tmp_path / "data"))
    cc2d._material.cache_clear()
    variants = cc2d_ablation.variants(settings)
    base = next(iter(variants.values()))
    assert len(variants) == 3 and all(c.steps == settings.cc2d.ablation_steps for c in variants.values())
    for config in list(variants.values())[1:]:
        changed = {k for k, v in config.to_dict().items() if base.to_dict()[k] != v}
        assert len(changed) == 1 and changed <= {"embedding_length", "local_window"}
    table = cc2d_ablation.run(settings, parallel=False, progress=False)
    assert list(table.variant) == list(variants) and (table.steps == settings.cc2d.ablation_steps).all()
    assert np.isfinite(table[["iou_pct", "awd_mm", "mre_mm", "train_minutes"]].to_numpy(float)).all()
    assert cc2d_ablation.train_variant(settings, table.variant[1])["stopped"] == "finished earlier"
    release = tmp_path / "release"
    cc2d.publish(load_settings("smoke", {"cc2d.release": str(release)}))
    shown = cc2d.training_ablation(released(tmp_path, release))
    assert shown is not None and list(shown.variant) == list(table.variant)
    np.testing.assert_allclose(shown.iou_pct, table.iou_pct)


def test_a_longer_run_resumes_stage1_and_starts_stage2_afresh(trained, tmp_path, monkeypatch):
    tmp, settings, _ = trained
    shutil.copytree(tmp / "data", tmp_path / "data")                # the other tests keep their models
    monkeypatch.setenv("RPRLOC_DATA_DIR", str(tmp_path / "data"))
    cc2d._material.cache_clear()
    first_tpl = cc2d.tpl_dir(settings)
    # without validation patients best.pt is the last step's weights, so stage 1 surely changes
    more = {"cc2d.train.steps": settings.cc2d.train.steps + 2, "cc2d.n_validation": 0}
    ssl, tpl = cc2d.train(load_settings("smoke", more), progress=False)
    assert ssl["resumed"] and ssl["steps"] == more["cc2d.train.steps"]
    assert cc2d.tpl_dir(load_settings("smoke", more)) != first_tpl   # new pseudo-labels: a new detector ...
    assert not tpl["resumed"] and tpl["steps"] == settings.cc2d.tpl.steps
    ssl, tpl = cc2d.train(load_settings("smoke", more | {"cc2d.tpl.steps": 6}), progress=False)
    assert ssl["stopped"] == "finished earlier" and tpl["resumed"] and tpl["steps"] == 6   # ... which resumes
    only_ssl = cc2d.train(load_settings("smoke", more | {"cc2d.use_tpl": False}), progress=False)
    assert [s["name"] for s in only_ssl] == ["ssl"]
    with pytest.raises(DataError, match="temperature"):
        cc2d.train(load_settings("smoke", more | {"cc2d.train.steps": 9, "cc2d.train.temperature": 0.5}),
                   progress=False)
