"""Every numbered notebook: paired with its py:percent source, free of outputs, and executed end to
end with the smoke profile (papermill), checking the files it must write."""

import json
import os

import jupytext
import pandas as pd
import pytest

from rprloc_core import reproduce

SMOKE_K = 4          # the smoke profile's k is 5: the notebooks run with this override instead
NOTEBOOKS = sorted(reproduce.NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
# What each notebook must leave under results/<profile>/.
EXPECTED = {
    "01_data_resampling": ["tables/dataset.csv", "tables/dataset.md", "figures/spacing_distribution.png",
                           "figures/examples_before_after_resampling.png", "figures/intensity_map.png"],
    "02_pnet_training": ["tables/pnet_training.csv", "figures/pnet_loss_curves.png"],
    "03_coarse_fine_inference": ["tables/table2_multistep.csv", "tables/table2_multistep_per_query.csv",
                                 "figures/method_on_real_ct.png", "figures/widget_default_view.png",
                                 "tables/r_sweep.csv", "tables/oracle_box_transfer.csv",
                                 "tables/self_localisation_axis_errors.csv", "figures/self_localisation_errors.png",
                                 "tables/centre_error_ceiling.csv", "figures/centre_error_ceiling.png",
                                 "tables/self_localisation_centre_errors.csv",
                                 "tables/schedule_validation.csv", "figures/schedule_validation.png"],
    "04_diagonal_vs_extreme": ["tables/table1_diagonal_vs_extreme.csv", "figures/mandible_diagonal_vs_extreme.png",
                               "tables/size_prior_validation.csv", "tables/size_prior_test.csv",
                               "tables/size_prior_centre_votes.csv",
                               "figures/size_prior_validation.png"],
    "05_template_matching_baselines": ["tables/table3_methods.csv", "figures/figure4_brainstem_boxes.png",
                                       "figures/autoencoder_training.png", "tables/table3_timing.csv",
                                       "tables/size_prior_template_matching.csv"],
    "06_cc2d": ["tables/cc2d_training.csv", "figures/cc2d_training.png", "figures/cc2d_similarity_maps.png",
                "tables/cc2d_methods.csv", "tables/cc2d_landmarks.csv", "tables/cc2d_scale_ablation.csv",
                "tables/cc2d_stage2_vs_stage1.csv",
                "figures/cc2d_scale_ablation.png"],
    "07_pin": ["tables/pin_variants.csv", "tables/pin_single_vs_multiple.csv", "tables/pin_methods.csv",
               "tables/pin_training.csv", "figures/pin_training.png", "figures/pin_convergence.png",
               "figures/pin_landmark_errors.png"],
    "08_references": ["tables/registration_validation.csv", "tables/references_methods.csv",
                      "figures/references_methods.png"],
}


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_paired_ipynb_in_step_and_without_outputs(source):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} missing: run `jupytext --sync {source}`"
    paired = json.loads(ipynb.read_text(encoding="utf-8"))
    assert not any(c.get("outputs") for c in paired["cells"] if c["cell_type"] == "code"), "strip outputs"
    from_py = jupytext.read(source)
    assert [c.source for c in jupytext.read(ipynb).cells] == [c.source for c in from_py.cells], \
        f"{ipynb.name} is out of step with {source.name}: run `jupytext --sync {source}`"
    tagged = [c for c in from_py.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "profile" in tagged[0].source
    assert "/work/" not in source.read_text(encoding="utf-8") and "/home/" not in source.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    old = {k: os.environ.get(k) for k in ("RPRLOC_DATA_DIR", "RPRLOC_RESULTS_DIR")}
    os.environ["RPRLOC_DATA_DIR"] = str(tmp / "data")
    os.environ["RPRLOC_RESULTS_DIR"] = str(tmp / "results")
    try:
        # an override of a profile setting must reach every computation, worker processes included
        assert reproduce.main(["--profile", "smoke", "--quiet", "--set", f"rprloc.inference.k={SMOKE_K}"]) == 0
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return tmp / "results" / "smoke"


@pytest.mark.notebooks
def test_every_notebook_runs_with_smoke_profile(smoke_results):
    manifest = json.loads((smoke_results / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["notebooks"]) == {s.stem for s in NOTEBOOKS}
    assert manifest["packages"]["torch"] and manifest["git_commit"]
    for source in NOTEBOOKS:
        assert (smoke_results / "executed" / f"{source.stem}.ipynb").is_file()
        for rel in EXPECTED.get(source.stem, []):
            path = smoke_results / rel
            assert path.is_file() and path.stat().st_size > 0, f"{source.stem} did not write {rel}"


@pytest.mark.notebooks
def test_smoke_dataset_table(smoke_results):
    table = pd.read_csv(smoke_results / "tables" / "dataset.csv")
    counts = dict(zip(table.split, table.n_cases))
    assert counts == {"train": 6, "validation": 2, "test": 3, "all": 11}
    assert (table["resampled_spacing_z_mm"] == 3.0).all()


@pytest.mark.notebooks
def test_overrides_reach_the_tables_and_the_manifest(smoke_results):
    manifest = json.loads((smoke_results / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["overrides"] == {"rprloc.inference.k": SMOKE_K}
    assert manifest["settings"]["rprloc"]["inference"]["k"] == SMOKE_K
    per_query = pd.read_csv(smoke_results / "tables" / "table2_multistep_per_query.csv")
    assert set(per_query.K) == {SMOKE_K}
    table1 = pd.read_csv(smoke_results / "tables" / "table1_diagonal_vs_extreme.csv")
    assert set(table1.K) == {1, 5}     # the smoke K grid cut at k_max = 6


def test_unknown_setting_or_parameter_fails_before_running(tmp_path, monkeypatch):
    monkeypatch.setenv("RPRLOC_RESULTS_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="unknown setting"):
        reproduce.main(["--profile", "smoke", "--set", "rprloc.inference.kk=3"])
    with pytest.raises(SystemExit, match="no notebook of this run has the parameter"):
        reproduce.main(["--profile", "smoke", "--only", "01", "--param", "parallel=False"])
    assert not list(tmp_path.rglob("*.ipynb"))


@pytest.mark.notebooks
def test_publish_then_use_a_release(smoke_results, tmp_path, monkeypatch):
    """The smoke run's trained models, published as a release, are what a release profile loads."""
    from rprloc_core.experiments import models, weights
    from rprloc_core.rprloc.pnet import read_checkpoint
    from rprloc_core.settings import load_settings

    monkeypatch.setenv("RPRLOC_DATA_DIR", str(smoke_results.parent.parent / "data"))
    release = tmp_path / "release"
    trained = load_settings("smoke", {"weights.release": str(release)})
    manifest = models.publish_release(trained)
    assert set(manifest["models"]) == set(models.train_configs(trained)) | {models.AUTOENCODER}
    with pytest.raises(Exception, match="already there"):
        models.publish_release(trained)
    released = load_settings("smoke", {"weights.source": "release", "weights.release": str(release)})
    for name in models.MAIN_MODELS:     # copied as they are
        assert weights.sha256(models.model_file(released, name)) == weights.sha256(models.trained_file(trained, name))
    for name in models.train_configs(trained):   # sweep models: same weights, start recorded by name only
        import torch

        ours, theirs = (models.load_models(s, [name])[name].state_dict() for s in (released, trained))
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
        init_from = read_checkpoint(models.model_file(released, name))["extra"]["train_config"]["init_from"]
        assert init_from in (None, "coarse", "fine")
    assert models.models_hash(released) == models.models_hash(trained)     # the cached predictions carry over
    summaries = {s["name"]: s for s in models.training_summaries(released)}
    assert summaries["coarse"]["stopped"] == "released" and summaries["coarse"]["steps"] == trained.rprloc.coarse.steps
    assert models.publish_release(trained, overwrite=True)["models"]["coarse"]["sha256"] == \
        manifest["models"]["coarse"]["sha256"]
    # One model alone: the release keeps every other entry as it was (a mark put on coarse's entry
    # survives), and only the named model's entry is written from the training folder.
    path = release / weights.MANIFEST
    marked = json.loads(path.read_text())
    for name in ("coarse", "fine"):
        marked["models"][name]["mark"] = "kept"
    path.write_text(json.dumps(marked))
    again = models.publish_release(trained, overwrite=True, names=["fine"])["models"]
    assert again["coarse"]["mark"] == "kept" and "mark" not in again["fine"]
    assert set(again) == set(manifest["models"])
    assert all(again[n]["sha256"] == manifest["models"][n]["sha256"] for n in again)
    with pytest.raises(ValueError, match="no model"):
        models.publish_release(trained, overwrite=True, names=["finer"])
    # Paused and resumed: the trainer's count of calls, or a run trained elsewhere saying so.
    from rprloc_core.rprloc.training import training_calls
    assert all(manifest["models"][n]["summary"]["resumed"] == (training_calls(models.models_dir(trained) / n) > 1)
               for n in models.train_configs(trained))
    provenance = models.models_dir(trained) / "fine" / models.PROVENANCE
    try:
        provenance.write_text(json.dumps({"machine": "a lent GPU", "resumed": True}))
        elsewhere = models.publish_release(trained, overwrite=True, names=["fine"])["models"]["fine"]
    finally:
        provenance.unlink()
    assert elsewhere["summary"]["resumed"] is True and elsewhere["provenance"]["machine"] == "a lent GPU"


def test_detector_and_pin_releases_say_whether_a_run_was_resumed(smoke_results, tmp_path, monkeypatch):
    """Published from the smoke run, the detector's and PIN's release entries record summary.resumed
    from their trainers' count of calls: one call each here, and a second counted call makes it true
    for that network only."""
    import torch

    from rprloc_core.checkpoints import calls_so_far
    from rprloc_core.experiments import detector_predictions as detector
    from rprloc_core.experiments import models
    from rprloc_core.experiments import pin_predictions as pin
    from rprloc_core.settings import load_settings

    monkeypatch.setenv("RPRLOC_DATA_DIR", str(smoke_results.parent.parent / "data"))
    settings = load_settings("smoke", {"detector.release": str(tmp_path / "detector"),
                                       "pin.release": str(tmp_path / "pin")})
    pin_last = sorted(pin.trained_dir(settings).glob("*/last.pt"))[0]
    for module, last, name in ((detector, detector.trained_dir(settings) / "last.pt", detector.NAME),
                               (pin, pin_last, pin_last.parent.name)):
        entries = module.publish(settings)["models"]
        assert name in entries and not any(e["summary"]["resumed"] for e in entries.values()), module.__name__
        saved = torch.load(last, weights_only=False)
        assert calls_so_far(saved) == 1
        torch.save({**saved, "calls": 2}, last)
        try:
            entries = module.publish(settings, overwrite=True)["models"]
        finally:
            torch.save(saved, last)
        assert [n for n, e in entries.items() if e["summary"]["resumed"]] == [name], module.__name__
    note = detector.trained_dir(settings) / models.PROVENANCE     # a run trained elsewhere says so
    note.write_text(json.dumps({"machine": "a lent GPU", "resumed": True}))
    try:
        told = detector.publish(settings, overwrite=True)["models"][detector.NAME]
    finally:
        note.unlink()
    assert told["summary"]["resumed"] and told["provenance"]["machine"] == "a lent GPU"


@pytest.mark.notebooks
def test_cached_runs_keep_k_max_for_the_first_step_and_k_after_it(smoke_results, monkeypatch):
    """Table 1 reads Mc's first step at every K up to k_max; the later stages hold the profile's K."""
    from rprloc_core.evaluation.protocol import one_shot_protocol
    from rprloc_core.experiments import rprloc_predictions
    from rprloc_core.settings import load_settings

    monkeypatch.setenv("RPRLOC_DATA_DIR", str(smoke_results.parent.parent / "data"))
    settings = load_settings("smoke", {"rprloc.inference.k": SMOKE_K})
    support_id, query_id = one_shot_protocol(settings).pairs[0]
    run = rprloc_predictions.read(settings, support_id, query_id)
    k_max = settings.rprloc.inference.k_max
    assert rprloc_predictions.stage_runs(run, "coarse1", k_max).shape[0] == k_max
    assert rprloc_predictions.stage_runs(run, "fine", SMOKE_K).shape[0] == SMOKE_K
    with pytest.raises(ValueError, match="runs after 'fine'"):
        rprloc_predictions.stage_runs(run, "fine", SMOKE_K + 1)


@pytest.mark.notebooks
def test_template_matching_per_query_equals_each_pair_alone(smoke_results, monkeypatch, tmp_path):
    """One job per query (all its supports' templates together) caches what each pair alone gives."""
    import shutil

    import numpy as np

    from rprloc_core.evaluation.protocol import one_shot_protocol
    from rprloc_core.experiments import template_predictions
    from rprloc_core.settings import load_settings

    data = tmp_path / "data"
    shutil.copytree(smoke_results.parent.parent / "data", data)
    monkeypatch.setenv("RPRLOC_DATA_DIR", str(data))
    settings = load_settings("smoke", {"rprloc.inference.k": SMOKE_K})
    protocol = one_shot_protocol(settings)
    query_id, supports = protocol.queries[0], list(protocol.supports)
    assert len(supports) > 1
    store = template_predictions.cache(settings)
    grouped = {s: store.read(s, query_id) for s in supports}      # written by the notebook's per-query job
    for support_id in supports:
        store.path(support_id, query_id).unlink()
        template_predictions.compute_pair(settings, support_id, query_id)
        alone = store.read(support_id, query_id)
        assert alone.organ_of_point == grouped[support_id].organ_of_point
        assert np.array_equal(alone["points_mm"], grouped[support_id]["points_mm"])
        assert np.allclose(alone["scores"], grouped[support_id]["scores"], rtol=1e-6, atol=1e-9)
