"""Self-calibration: the support's own bias, measured by localising it in itself, taken off."""

import numpy as np
import pytest
from test_inference import PositionOracle, encoded_volume, support_points

from rprloc_core.rprloc.inference import localize
from rprloc_core.rprloc.self_calibration import SELF_CALIBRATION_STREAM, calibrate, support_bias_mm
from rprloc_core.settings import SettingsError, load_settings

SCHEDULE = dict(schedule=("coarse", "average", "coarse"), starts="shared", k=5)


class ShortOracle(PositionOracle):
    """A network whose moves fall short: it sees positions at half their distance, so a move covers
    half the way to the landmark (as the released models do along z, notebook 03)."""

    def forward(self, patches):
        return 0.5 * super().forward(patches)


def test_a_perfect_network_has_no_bias():
    vol = encoded_volume()
    pts = support_points(vol)
    bias = support_bias_mm(vol, pts, PositionOracle((4, 6, 6)), repeats=2, **SCHEDULE)
    assert bias.shape == (6, 3) and np.abs(bias).max() < 1e-3


def test_the_bias_of_a_short_network_is_taken_off():
    vol = encoded_volume()
    pts = support_points(vol)
    short = ShortOracle((4, 6, 6))
    bias = support_bias_mm(vol, pts, short, repeats=1, seed=3, **SCHEDULE)
    assert np.abs(bias).max() > 1.0                                # two half moves leave a quarter of the way
    # the support as the query, from the starts its single calibration run drew: the same error, removed
    same_starts = np.random.default_rng([3, SELF_CALIBRATION_STREAM, 0])
    answer = localize(vol, (vol, pts), short, rng=same_starts, **SCHEDULE)
    assert np.abs(answer.points_mm - pts).max() > 1.0
    assert np.abs(calibrate(answer.points_mm, bias, 1.0) - pts).max() < 1e-3
    half = calibrate(answer.points_mm, bias, 0.5)
    assert np.allclose(half - pts, 0.5 * (answer.points_mm - pts))


def test_each_landmarks_bias_does_not_depend_on_the_others_with_shared_starts():
    """What lets the evaluation compute a support's bias once for all its organs and serve a query
    that has only some of them (experiments.rprloc_predictions.support_bias)."""
    vol = encoded_volume()
    pts = support_points(vol, n=12, seed=2)
    short = ShortOracle((4, 6, 6))
    both = support_bias_mm(vol, pts, short, repeats=2, **SCHEDULE)
    second = support_bias_mm(vol, pts[6:], short, repeats=2, **SCHEDULE)
    assert np.allclose(both[6:], second, atol=1e-6)
    independent = support_bias_mm(vol, pts[6:], short, repeats=2, **{**SCHEDULE, "starts": "independent"})
    assert not np.allclose(both[6:], independent, atol=1e-6)       # independent starts draw per landmark


def test_bad_calibration_arguments():
    vol = encoded_volume()
    pts = support_points(vol)
    with pytest.raises(ValueError, match="at least one run"):
        support_bias_mm(vol, pts, PositionOracle((4, 6, 6)), repeats=0, **SCHEDULE)
    with pytest.raises(ValueError, match="same landmarks"):
        calibrate(pts, pts[:3], 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibrate(pts, pts, 1.5)
    with pytest.raises(SettingsError, match="self_calibration must lie"):
        load_settings("demo", {"rprloc.inference.self_calibration": -0.1})
    with pytest.raises(SettingsError, match="self_calibration_runs"):
        load_settings("demo", {"rprloc.inference.self_calibration_runs": 0})
