"""The drift check CI runs after regenerating the demo results into a scratch folder."""

import pandas as pd

from rprloc_core import compare_results


def write(folder, name, frame):
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "tables" / name, index=False)


def table(iou=(30.0, 40.0), seconds=(0.1, 0.2), organ=("Brainstem", "Mandible")):
    return pd.DataFrame({"method": ["Mc + Mf", "Mc + Mf"], "organ": list(organ), "iou_pct": list(iou),
                         "awd_mm": [10.0, float("nan")], "time_s_per_organ": list(seconds)})


def test_equal_within_tolerance_and_timings_ignored(tmp_path):
    write(tmp_path / "a", "t.csv", table())
    write(tmp_path / "b", "t.csv", table(iou=(30.04, 40.0), seconds=(5.0, 9.0)))
    assert compare_results.compare_folders(tmp_path / "a", tmp_path / "b") == {}
    assert compare_results.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0


def test_moved_rows_are_named(tmp_path, capsys):
    write(tmp_path / "a", "t.csv", table())
    write(tmp_path / "b", "t.csv", table(iou=(30.0, 50.0)))
    problems = compare_results.compare_folders(tmp_path / "a", tmp_path / "b")
    assert list(problems) == ["t.csv"] and "organ=Mandible" in problems["t.csv"][0]
    assert "iou_pct: 40.0 -> 50.0" in problems["t.csv"][0]
    assert compare_results.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "1 of 1 tables drifted" in capsys.readouterr().out


def test_text_columns_missing_and_new_tables(tmp_path):
    write(tmp_path / "a", "t.csv", table())
    write(tmp_path / "a", "gone.csv", table())
    write(tmp_path / "b", "t.csv", table(organ=("Brainstem", "LeftParotid")))
    write(tmp_path / "b", "new.csv", table())
    problems = compare_results.compare_folders(tmp_path / "a", tmp_path / "b")
    assert problems["gone.csv"] == ["not regenerated"]
    assert "regenerated but not committed" in problems["new.csv"][0]
    assert "organ: 'Mandible' -> 'LeftParotid'" in problems["t.csv"][0]


def test_columns_and_row_counts(tmp_path):
    write(tmp_path / "a", "t.csv", table())
    write(tmp_path / "b", "t.csv", table().drop(columns=["awd_mm"]))
    assert "missing ['awd_mm']" in compare_results.compare_folders(tmp_path / "a", tmp_path / "b")["t.csv"][0]
    write(tmp_path / "b", "t.csv", table().iloc[:1])
    assert compare_results.compare_folders(tmp_path / "a", tmp_path / "b")["t.csv"] == ["2 rows committed, 1 regenerated"]


def test_prose_columns_compare_words_not_numbers(tmp_path):
    def claims(here, verdict):
        return pd.DataFrame({"claim": ["fast"], "paper": ["0.15 s"], "here": [here], "verdict": [verdict]})

    write(tmp_path / "a", "c.csv", claims("0.16 s (one CPU thread), 5x", "reproduced"))
    write(tmp_path / "b", "c.csv", claims("0.21 s (one CPU thread), 1,200x", "reproduced"))
    assert compare_results.compare_folders(tmp_path / "a", tmp_path / "b") == {}
    write(tmp_path / "b", "c.csv", claims("0.16 s (two CPU threads), 5x", "reproduced"))
    assert "here" in compare_results.compare_folders(tmp_path / "a", tmp_path / "b")["c.csv"][0]
    write(tmp_path / "b", "c.csv", claims("0.16 s (one CPU thread), 5x", "not reproduced"))
    assert "verdict" in compare_results.compare_folders(tmp_path / "a", tmp_path / "b")["c.csv"][0]


def test_a_timing_claims_verdict_is_not_compared(tmp_path):
    def claims(verdicts):
        return pd.DataFrame({"claim": ["fast", "accurate"], "paper": ["0.15 s", "55 %"], "here": ["0.3 s", "40 %"],
                             "verdict": list(verdicts), "evidence": ["table3_methods (timing)", "table3_methods"]})

    write(tmp_path / "a", "c.csv", claims(["reproduced", "reproduced"]))
    write(tmp_path / "b", "c.csv", claims(["not reproduced", "reproduced"]))
    assert compare_results.compare_folders(tmp_path / "a", tmp_path / "b") == {}
    write(tmp_path / "b", "c.csv", claims(["reproduced", "not reproduced"]))
    assert "claim=accurate" in compare_results.compare_folders(tmp_path / "a", tmp_path / "b")["c.csv"][0]
