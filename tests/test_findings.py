"""Findings sentences computed from result tables: they must follow the numbers."""

import pandas as pd

from rprloc_core.experiments.findings import schedule_findings


def schedule_table(rows):
    return pd.DataFrame([{"schedule": name, "IoU %": iou, "AWD mm": 9.0, "s/organ": seconds,
                          "IoU vs Mc > Mf (pts)": f"{iou - rows[0][1]:+.1f}"} for name, iou, seconds in rows])


def test_schedule_findings_names_a_candidate_that_beats_the_default():
    table = schedule_table([("Mc > Mf", 36.7, 1.5), ("default", 35.6, 0.15), ("cheaper", 36.4, 0.10),
                            ("slower", 36.0, 0.4)])
    text = schedule_findings(table, "default")
    assert "cheaper (36.4 % IoU" in text and "slower (" not in text and "no longer the best" in text


def test_schedule_findings_say_nothing_more_when_the_default_is_not_beaten():
    table = schedule_table([("Mc > Mf", 36.7, 1.5), ("default", 35.6, 0.10), ("slower", 36.0, 0.4)])
    assert "no longer the best" not in schedule_findings(table, "default")
