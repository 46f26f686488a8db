"""Profiles parse into typed settings; unknown keys and impossible values are errors; overrides
are applied and recorded; settings survive a trip to a worker process."""

import pickle

import pytest

from rprloc_core.rprloc.config import (
    RELEASE_ENSEMBLE,
    RELEASE_SCATTER_MM,
    RELEASE_SELF_CALIBRATION,
    RELEASE_SELF_CALIBRATION_RUNS,
    RELEASE_SIZE_PRIOR,
    RELEASE_STARTS,
    RELEASE_STEPS,
    TrainConfig,
)
from rprloc_core.settings import SettingsError, available_profiles, load_settings


@pytest.mark.parametrize("profile", ["smoke", "demo", "paper"])
def test_every_profile_parses(profile):
    settings = load_settings(profile)
    assert settings.name == profile and profile in available_profiles()
    assert isinstance(settings.rprloc.coarse, TrainConfig) and settings.rprloc.coarse.mode == "coarse"
    assert settings.rprloc.fine.seed == settings.seed
    assert 1 <= settings.rprloc.inference.k <= settings.rprloc.inference.k_max
    assert isinstance(settings.preprocess.spacing_zyx, tuple)


def test_overrides_are_applied_recorded_and_picklable():
    settings = load_settings("demo", {"rprloc.inference.k": 5, "template_matching.autoencoder.steps": 7})
    assert settings.rprloc.inference.k == 5 and settings.template_matching.autoencoder.steps == 7
    assert dict(settings.overrides) == {"rprloc.inference.k": 5, "template_matching.autoencoder.steps": 7}
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert settings.to_dict()["rprloc"]["inference"]["k"] == 5
    assert load_settings("demo").rprloc.inference.k == 15      # the file itself is untouched


@pytest.mark.parametrize("overrides, message", [
    ({"rprloc.inference.kk": 3}, "unknown setting.*kk"),
    ({"rprloc.coarse.stepz": 3}, "unknown setting.*stepz"),
    ({"nonsense": 1}, "unknown setting.*nonsense"),
    ({"rprloc.inference.k": 50}, "k <= k_max"),
    ({"rprloc.inference.ensemble": "median"}, "ensemble must be one of"),
    ({"rprloc.inference.steps": ["average", "fine"]}, "steps must be a list of"),
    ({"rprloc.inference.steps": ["coarse", "median"]}, "steps must be a list of"),
    ({"rprloc.inference.steps": []}, "steps must be a list of"),
    ({"rprloc.inference.steps": ["scatter", "fine"]}, "steps must be a list of"),
    ({"rprloc.inference.steps": ["coarse", "scatter", "fine"], "rprloc.inference.scatter_mm": 0.0}, "scatter_mm"),
    ({"rprloc.inference.scatter_mm": -1.0}, "scatter_mm"),
    ({"rprloc.inference.scatter_mm": float("nan")}, "scatter_mm"),
    ({"rprloc.inference.scatter_mm": float("inf")}, "scatter_mm"),
    ({"data.dataset": "mnist"}, "data.dataset must be one of"),
    ({"seed.x": 1}, "is a value, not a section"),
])
def test_bad_settings_are_errors_that_name_the_key(overrides, message):
    with pytest.raises(SettingsError, match=message):
        load_settings("smoke", overrides)


def test_unknown_profile():
    with pytest.raises(SettingsError, match="available: .*demo"):
        load_settings("no-such-profile")


def test_k_values_are_the_grid_cut_at_k_max():
    assert load_settings("smoke").rprloc.inference.k_values == (1, 5)
    assert load_settings("demo").rprloc.inference.k_values == (1, 5, 10, 15, 20)
    listed = load_settings("demo", {"rprloc.inference.k_grid": [2, 40]})
    assert listed.rprloc.inference.k_values == (2,)
    assert hash(listed) == hash(load_settings("demo", {"rprloc.inference.k_grid": (2, 40)}))   # usable as a cache key


def test_the_cli_defaults_are_the_demo_profiles_default_schedule():
    """The released models answer the CLI with the schedule chosen for them on validation patients."""
    inference = load_settings("demo").rprloc.inference
    assert inference.default_options == {"schedule": RELEASE_STEPS, "ensemble": RELEASE_ENSEMBLE,
                                         "starts": RELEASE_STARTS, "pool_factor": inference.pool_factor,
                                         "scatter_mm": RELEASE_SCATTER_MM}
    assert inference.size_prior_weight == RELEASE_SIZE_PRIOR
    assert (inference.self_calibration, inference.self_calibration_runs) == (RELEASE_SELF_CALIBRATION,
                                                                              RELEASE_SELF_CALIBRATION_RUNS)


def test_a_fine_teacher_trains_first_and_is_named_by_its_checkpoint():
    from rprloc_core.experiments import models
    distilled = {"rprloc.fine_teacher.mode": "fine", "rprloc.fine_teacher.steps": 5, "rprloc.fine.first_width": 12,
                 "rprloc.fine.teacher": "fine_teacher", "rprloc.fine.init_from": "fine_teacher"}
    settings = load_settings("demo", distilled)
    assert settings.rprloc.fine_teacher.seed == settings.seed and load_settings("smoke").rprloc.fine_teacher is None
    release = load_settings("demo").rprloc            # the released Mf is distilled from its teacher
    assert release.fine.teacher == release.fine.init_from == "fine_teacher" and release.fine_teacher.first_width is None
    configs = models.train_configs(settings)
    assert list(configs)[:3] == ["coarse", "fine_teacher", "fine"]
    teacher_file = str(models.trained_file(settings, "fine_teacher"))
    assert configs["fine"].teacher == configs["fine"].init_from == teacher_file
    sweep = configs["fine_r30"]     # starts from the distilled Mf, learns the true offsets at its own r
    assert sweep.teacher is None and sweep.init_from == str(models.trained_file(settings, "fine"))
    assert sweep.first_width == 12
    stages = models.training_stages(settings, list(configs))
    assert stages[0] == ["coarse", "fine_teacher"] and "fine" in stages[1] and stages[2] == ["fine_r30", "fine_r90"]
    assert models.training_stages(settings, ["fine"]) == [["fine"]]     # its teacher is not trained in this call
    circle = load_settings("demo", {**distilled, "rprloc.fine_teacher.init_from": "fine"})
    with pytest.raises(ValueError, match="in a circle"):
        models.training_stages(circle, list(models.train_configs(circle)))
