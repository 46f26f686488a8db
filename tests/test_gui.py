"""The K / r widget's runs: a new K reuses every step it can, and each view equals a direct run of
the profile's default schedule from the same starts."""

import numpy as np
import pytest
from test_inference import SPACING, PositionOracle, encoded_volume

from rprloc_core import gui
from rprloc_core.data.preprocess import PreprocessedCase
from rprloc_core.rprloc.inference import localize
from rprloc_core.settings import load_settings


def fake_case(case_id: str) -> PreprocessedCase:
    volume = encoded_volume()
    mask = np.zeros(volume.shape, np.uint8)
    mask[5:12, 6:15, 8:20] = 1
    return PreprocessedCase(case_id, volume, np.zeros(volume.shape, np.int16), {"Brainstem": mask})


@pytest.fixture
def oracles(monkeypatch):
    # a small r saturates tanh, so the result depends on the starts (not a perfect landing)
    models = {"coarse": PositionOracle((4, 4, 4), spacing_mm=[6.0, 4.0, 4.0], r_mm=30.0),
              "fine": PositionOracle((4, 8, 8), spacing_mm=list(SPACING), r_mm=8.0)}
    monkeypatch.setattr(gui.models, "load_models", lambda settings: models)
    monkeypatch.setattr(gui.models, "model_name", lambda settings, kind, r_mm: kind)
    monkeypatch.setattr(gui.dataset, "load_case", lambda settings, case_id: fake_case(case_id))
    return models


def widget_runs(steps, ensemble="mean_position"):
    settings = load_settings("smoke", {"rprloc.inference.steps": list(steps), "rprloc.inference.ensemble": ensemble,
                                       "rprloc.inference.starts": "shared"})
    return gui.KrRuns(settings, fake_case("support"), ["query"], ["Brainstem"])


@pytest.mark.parametrize("steps, ensemble", [(("coarse", "average", "fine"), "mean_position"),
                                             (("coarse", "fine"), "mean_position"),
                                             (("coarse", "fine"), "mean_embedding")])
def test_a_view_equals_a_direct_run_from_the_same_starts(oracles, steps, ensemble):
    runs = widget_runs(steps, ensemble)
    for k in (3, 7):
        points, seconds = runs.predict("query", k, 0, 0)
        direct = localize(runs.query("query").volume, (runs.support.volume, runs.points), oracles["coarse"],
                          oracles["fine"], rng=np.random.default_rng(0), schedule=steps, k=k, ensemble=ensemble,
                          start_mm=runs._start_positions("query")[:k])
        np.testing.assert_allclose(points, direct.points_mm, atol=1e-6)
        assert runs.kept("query", k, 0, 0) and (seconds > 0 or k > 3)   # K = 7 may come from K = 3's runs
    assert runs.predict("query", 3, 0, 0)[1] == 0.0                    # kept: no computation


def test_a_new_k_costs_only_the_steps_after_the_average(oracles):
    runs = widget_runs(("coarse", "average", "fine"))
    runs.predict("query", 5, 0, 0)
    coarse_patches, fine_patches = oracles["coarse"].patches, oracles["fine"].patches
    runs.predict("query", 9, 0, 0)
    assert oracles["coarse"].patches == coarse_patches                  # the K_max coarse runs are reused
    assert oracles["fine"].patches - fine_patches == len(runs.points)   # one fine patch per landmark


def test_without_an_average_step_a_new_k_needs_no_network_call(oracles):
    runs = widget_runs(("coarse", "fine"))
    runs.predict("query", 5, 0, 0)
    calls = oracles["coarse"].calls + oracles["fine"].calls
    assert runs.kept("query", 12, 0, 0)
    runs.predict("query", 12, 0, 0)
    assert oracles["coarse"].calls + oracles["fine"].calls == calls


def test_a_new_size_prior_only_redraws(oracles):
    runs = widget_runs(("coarse", "average", "fine"))
    gui.k_r_view(runs, "query", 5, 0, 0)
    calls = oracles["coarse"].calls + oracles["fine"].calls
    fig = gui.k_r_view(runs, "query", 5, 0, 0, size_prior=1.0)
    assert oracles["coarse"].calls + oracles["fine"].calls == calls          # same points, no network call
    assert "size prior w = 1" in fig.axes[0].get_title() + fig.axes[1].get_title() + fig.axes[2].get_title()
