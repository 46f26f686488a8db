"""The summary notebook's library: methods and claims read from a results folder, verdicts that
follow the numbers, and the README block it rewrites."""

import pandas as pd
import pytest

from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.experiments import summary
from rprloc_core.experiments.paper import CLEAR_MARGIN_PTS, RPRLOC_LABEL, STAGE_LABELS, TEMPLATE_LABELS, lead_verdict


def _long(method_values: dict, key="method", **extra) -> pd.DataFrame:
    """A long per-organ table: every organ and the Mean row get the method's (iou, awd)."""
    rows = []
    for method, (iou, awd) in method_values.items():
        for organ in (*HAN_ORGANS, "Mean"):
            rows.append({key: method, "organ": organ, "iou_pct": iou, "awd_mm": awd, "iou_pct_sd_over_supports": 1.0,
                         "n_queries": 10, **extra})
    return pd.DataFrame(rows)


def _results(tmp_path, fine_iou, tm_iou, rprloc_time=0.1):
    tables = tmp_path / "tables"
    tables.mkdir()
    table1 = pd.concat([_long({"Diagonal": (10.0, 20.0)}, key="strategy").assign(K=1),
                        _long({"Extreme": (20.0, 15.0)}, key="strategy").assign(K=1),
                        _long({"Extreme": (25.0, 14.0)}, key="strategy").assign(K=15)])
    table1.to_csv(tables / "table1_diagonal_vs_extreme.csv", index=False)
    stages = {STAGE_LABELS[s]: (24.0, 14.0) for s in ("coarse1", "coarse2", "coarse3")}
    _long({**stages, STAGE_LABELS["fine"]: (fine_iou, 12.0)}).to_csv(tables / "table2_multistep.csv", index=False)
    table3 = pd.concat([_long({RPRLOC_LABEL: (fine_iou, 12.0)}, time_s=rprloc_time, paper_iou_pct=55.1,
                              paper_awd_mm=6.12, paper_time_s_per_organ=0.15),
                        *[_long({m: (tm_iou, 20.0)}, time_s=1.0, paper_iou_pct=45.0, paper_awd_mm=9.0,
                                paper_time_s_per_organ=1000.0) for m in TEMPLATE_LABELS.values()]])
    table3.to_csv(tables / "table3_methods.csv", index=False)
    return tmp_path


def test_methods_table_reads_every_method(tmp_path):
    methods = summary.methods_table(_results(tmp_path, 30.0, 25.0)).set_index("method")
    assert len(methods) == 4 + 1 + len(TEMPLATE_LABELS)
    assert methods.loc[RPRLOC_LABEL + " default schedule", "s/organ"] == pytest.approx(0.1)
    assert methods.loc["GS MSE", "family"] == summary.FAMILIES["template"]
    assert pd.isna(methods.loc[STAGE_LABELS["fine"], "s/organ"])       # no time where the harness measured none


def test_size_prior_row_comes_from_its_table(tmp_path):
    results = _results(tmp_path, 30.0, 25.0)
    prior = pd.DataFrame([
        {"method": "RPR-Loc default schedule", "box rule": "extreme points (paper)", "w": None, "IoU %": 30.0,
         "IoU SD over supports": 1.0, "AWD mm": 12.0},
        {"method": "RPR-Loc default schedule", "box rule": "size prior 0.5", "w": 0.5, "IoU %": 36.0,
         "IoU SD over supports": 2.0, "AWD mm": 10.0, **{f"{o} IoU %": 36.0 for o in HAN_ORGANS}}])
    prior.to_csv(results / "tables" / "size_prior_test.csv", index=False)
    methods = summary.methods_table(results).set_index("method")
    row = methods.loc["RPR-Loc default schedule + size prior 0.5"]      # only the prior's row, not the paper box
    assert row["family"] == summary.FAMILIES["size_prior"] and row["IoU %"] == 36.0 and row["IoU SD"] == 2.0
    assert len(methods) == 4 + 1 + len(TEMPLATE_LABELS) + 1


@pytest.mark.parametrize("fine_iou, tm_iou, accuracy, fine_adds", [
    (30.0, 25.0, "reproduced", "reproduced"),            # 5 points ahead, lower AWD
    (30.0, 29.5, "reproduced in part", "reproduced"),    # ahead by less than the clear margin
    (22.0, 29.5, "reproduced in part", "not reproduced"),  # behind in IoU, lower AWD still
    (25.0, 24.0, "reproduced in part", "reproduced in part"),  # Mc + Mf one point over Mc: within the noise
])
def test_claim_verdicts_follow_the_numbers(tmp_path, fine_iou, tm_iou, accuracy, fine_adds):
    claims = summary.claims_table(_results(tmp_path, fine_iou, tm_iou)).set_index("claim")
    verdicts = {c.split(" (")[0].split(":")[0]: v for c, v in claims.verdict.items()}
    assert verdicts["RPR-Loc is more accurate than template matching"] == accuracy
    assert verdicts["The fine model adds accuracy"] == fine_adds
    assert verdicts["Extreme points beat diagonal points"] == "reproduced"
    assert verdicts["RPR-Loc is 10^3-10^5 times faster than template matching"] == "reproduced in part"   # 10x
    assert claims.verdict.isin(["reproduced", "not reproduced", "reproduced in part", "not tested"]).all()


@pytest.mark.parametrize("lead, partly, verdict", [
    (CLEAR_MARGIN_PTS, False, "reproduced"), (CLEAR_MARGIN_PTS - 0.1, False, "reproduced in part"),
    (0.0, False, "not reproduced"), (-3.0, True, "reproduced in part"), (-3.0, False, "not reproduced")])
def test_a_lead_within_the_margin_is_only_in_part(lead, partly, verdict):
    assert lead_verdict(lead, partly=partly) == verdict


@pytest.mark.parametrize("cc2d_iou, verdict", [(20.0, "reproduced"), (29.0, "reproduced in part"),
                                               (35.0, "not reproduced")])
def test_cc2d_rows_and_their_claim(tmp_path, cc2d_iou, verdict):
    results = _results(tmp_path, 30.0, 25.0)
    _long({"CC2D-SSL (one-shot)": (cc2d_iou, 13.0), "CC2D (one-shot, TPL)": (cc2d_iou - 10, 20.0),
           RPRLOC_LABEL: (30.0, 12.0)}, time_s=0.3).to_csv(results / "tables" / "cc2d_methods.csv", index=False)
    methods = summary.methods_table(results).set_index("method")
    assert methods.loc["CC2D-SSL (one-shot)", "family"] == summary.FAMILIES["cc2d"]
    assert methods.loc["CC2D (one-shot, TPL)", "IoU %"] == cc2d_iou - 10
    assert (methods.index == RPRLOC_LABEL).sum() == 0          # RPR-Loc's row beside CC2D is not a second row
    claims = summary.claims_table(results, methods.reset_index()).set_index("evidence")
    assert claims.loc["cc2d_methods", "verdict"] == verdict and "CC2D-SSL" in claims.loc["cc2d_methods", "here"]
    assert "Not implemented" not in summary.readme_section(methods.reset_index(), claims.reset_index(), "demo")


def test_update_readme_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n{summary.README_BEGIN}\nold\n{summary.README_END}\ntail\n", encoding="utf-8")
    assert summary.update_readme(readme, "new table")
    assert readme.read_text(encoding="utf-8") == f"# title\n{summary.README_BEGIN}\nnew table\n{summary.README_END}\ntail\n"
    assert not summary.update_readme(readme, "new table")
    readme.write_text("no markers", encoding="utf-8")
    with pytest.raises(ValueError):
        summary.update_readme(readme, "x")
