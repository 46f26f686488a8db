"""Findings sentences computed from result tables: they must follow the numbers."""

import numpy as np
import pandas as pd

from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.experiments import findings
from rprloc_core.experiments.findings import schedule_findings


def schedule_table(rows):
    return pd.DataFrame([{"schedule": name, "IoU %": iou, "AWD mm": 9.0, "s/organ": seconds,
                          "IoU vs Mc > Mf (pts)": f"{iou - rows[0][1]:+.1f}"} for name, iou, seconds in rows])


def test_schedule_findings_names_a_candidate_that_beats_the_default():
    table = schedule_table([("Mc > Mf", 36.7, 1.5), ("default", 35.6, 0.15), ("cheaper", 36.4, 0.10),
                            ("slower", 36.0, 0.4)])
    text = schedule_findings(table, "default")
    assert "cheaper (36.4 % IoU" in text and "slower (" not in text and "not the best trade-off" in text


def test_schedule_findings_say_nothing_more_when_the_default_is_not_beaten():
    table = schedule_table([("Mc > Mf", 36.7, 1.5), ("default", 35.6, 0.10), ("slower", 36.0, 0.4)])
    assert "not the best trade-off" not in schedule_findings(table, "default")


def test_cc2d_findings_compare_with_rprloc_per_organ_and_name_the_costliest_scale():
    from rprloc_core.experiments.paper import RPRLOC_LABEL

    rows = []
    for method, values in (("CC2D-SSL", (20.0, 60.0, 22.0, 24.0)), ("CC2D", (5.0, 20.0, 3.0, 6.0)),
                           (RPRLOC_LABEL, (33.0, 60.0, 38.0, 32.0))):
        rows += [{"method": method, "organ": o, "iou_pct": v, "awd_mm": 10.0, "time_s": 0.3}
                 for o, v in zip(HAN_ORGANS, values)]
        rows.append({"method": method, "organ": "Mean", "iou_pct": float(np.mean(values)), "awd_mm": 10.0,
                     "time_s": 0.3})
    same_template = pd.DataFrame({"method": ["CC2D-SSL", "CC2D"], "iou_pct": [30.0, 20.0], "mre_mm": [28.0, 29.0],
                                  "template": "pt_1"})
    ablation = pd.DataFrame({"scales": ["all scales", "without scale 1", "without scale 5"],
                             "iou_pct": [29.0, 28.5, 27.0]})
    text = findings.cc2d_findings(pd.DataFrame(rows), same_template, ablation, "CC2D-SSL", "CC2D", "demo")
    assert "**CC2D-SSL**: 31.5 % IoU" in text and "(-9.2 IoU points for CC2D)" in text
    assert "Brainstem -13.0, Mandible +0.0" in text
    assert "(pt_1): 20.0 vs 30.0 % IoU, landmark MRE 29.0 vs 28.0 mm" in text and "does not improve on them" in text
    mixed = same_template.assign(mre_mm=[28.0, 27.0])
    assert "improves on them in part" in findings.cc2d_findings(pd.DataFrame(rows), mixed, ablation, "CC2D-SSL",
                                                                "CC2D", "demo")
    assert "without scale 5 changes the mean IoU the most (-2.0 points), without scale 1 the least (-0.5)" in text
    ablation_table = pd.DataFrame({"variant": ["L 16, window 9 (the release's settings)", "L 8", "window 13"],
                                   "steps": 250, "iou_pct": [21.3, 22.1, 23.1], "mre_mm": [40.2, 39.2, 34.7]})
    text = findings.cc2d_findings(pd.DataFrame(rows), same_template, ablation, "CC2D-SSL", "CC2D", "demo",
                                  ablation_table)
    assert "favours **window 13** over the release's settings: 23.1 vs 21.3 % IoU, landmark MRE 34.7 vs 40.2" in text
    text = findings.cc2d_findings(pd.DataFrame(rows), same_template, ablation, "CC2D-SSL", "CC2D", "demo",
                                  ablation_table.assign(iou_pct=[25.0, 22.1, 23.1]))
    assert "keeps the release's settings: no variant beats their 25.0 % IoU" in text



def test_centre_rule_findings_need_a_gain_on_every_support():
    def frame(gains_by_box):
        return pd.DataFrame([{"box": box, "support": s, "query": q, "organ": "Mandible", "iou_pct": 40.0 + g,
                              "awd_mm": 8.0 - 0.1 * g}
                             for box, gains in gains_by_box.items() for s, g in zip("abc", gains) for q in "xy"])

    ours = "size prior 0.5, centre: organ mean (profile)"
    passing = frame({ours: (0, 0, 0), "size prior 0.5, centre: median": (1.5, 2.0, 1.0)})
    assert findings.centre_rule_findings(passing, ours).startswith("**A centre passes the rule: median**")
    mixed = frame({ours: (0, 0, 0), "size prior 0.5, centre: median": (4.0, 2.0, -0.5)})   # +1.8 on average
    text = findings.centre_rule_findings(mixed, ours)
    assert text.startswith("**No centre passes") and "up on 2 of 3 supports" in text


def test_answer_check_findings_follow_the_table_and_flag_a_stale_cli_threshold():
    from rprloc_core.experiments.answer_checks import checks_table

    rows = []
    for variant, moves, edges in (("whole scan", [5.0, 6.0, 7.0, 30.0], [0, 0, 1, 0]),
                                  ("scan below the organs", [25.0, 35.0, 40.0, 9.0], [1, 1, 0, 1])):
        for i, (move, edge) in enumerate(zip(moves, edges)):
            whole = variant == "whole scan"
            rows.append({"variant": variant, "organ": f"organ {i}", "organ_in_scan": 1.0 if whole else 0.0,
                         "points_on_edge": edge, "remaining_move_mm": move,
                         "iou_pct": 40.0 - 20 * (move > 14 or edge) if whole else np.nan})
    table = checks_table(pd.DataFrame(rows), 14.0)
    text = findings.answer_check_findings(table, 14.0, 14.0)
    assert "the CLI warns above the same" in text
    assert "move warns of 25.0 % of the organs in whole scans" in text
    assert "score 20.0 % IoU against 40.0 %" in text
    assert "move warns of 75.0 % and the two checks together of 100.0 %" in text
    assert "mid-brainstem" not in text and "ends inside" not in text
    assert "update rprloc.config.RELEASE_REMAINING_MOVE_WARN_MM" in findings.answer_check_findings(table, 14.0, 15.0)
