"""The command line on phantom scans written as a user would have them (NIfTI files)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from rprloc_core import cli
from rprloc_core.data.phantom import make_phantom_case


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    (root / "images").mkdir()
    for seed in range(1, 5):
        image, _ = make_phantom_case(seed)
        sitk.WriteImage(image, str(root / "images" / f"scan{seed}.nii.gz"))
    support, labels = make_phantom_case(11)
    sitk.WriteImage(support, str(root / "support.nii.gz"))
    (root / "support_labels").mkdir()
    for organ, mask in labels.items():
        sitk.WriteImage(mask, str(root / "support_labels" / f"{organ}.nii.gz"))
    query, query_labels = make_phantom_case(12)
    sitk.WriteImage(query, str(root / "query.nrrd"))
    return root, query, query_labels


@pytest.fixture(scope="module")
def trained(scans, tmp_path_factory):
    root = scans[0]
    out = tmp_path_factory.mktemp("models")
    assert cli.main(["train", "--images", str(root / "images"), "--out", str(out), "--profile", "smoke",
                     "--steps", "3"]) == 0
    return out


def test_train_then_localize(scans, trained, tmp_path):
    root, query, query_labels = scans
    assert (trained / "coarse" / "best.pt").is_file() and (trained / "fine" / "best.pt").is_file()
    out = tmp_path / "result.json"
    assert cli.main(["localize", "--models", str(trained), "--support", str(root / "support.nii.gz"),
                     "--support-labels", str(root / "support_labels"), "--organs", "Brainstem", "Mandible",
                     "--query", str(root / "query.nrrd"), "--out", str(out), "--k", "3",
                     "--overlay", str(tmp_path / "overlay.png")]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert set(result["organs"]) == {"Brainstem", "Mandible"}
    box = result["organs"]["Brainstem"]["box_lps_mm"]
    lo, hi = np.array(box["min"]), np.array(box["max"])
    assert np.all(lo <= hi)
    # untrained-ish models: only check the box lies inside the query's physical extent
    size = np.array(query.GetSize()) - 1
    corner_lo = np.array(query.GetOrigin())
    corner_hi = np.array(query.TransformIndexToPhysicalPoint([int(s) for s in size]))
    assert np.all(lo >= corner_lo - 1e-3) and np.all(hi <= corner_hi + 1e-3)
    assert (tmp_path / "overlay.png").stat().st_size > 0


def test_each_organ_carries_its_checks_and_the_warnings_are_printed(scans, trained, tmp_path, capsys):
    root = scans[0]
    common = ["localize", "--models", str(trained), "--support", str(root / "support.nii.gz"),
              "--support-labels", str(root / "support_labels"), "--organs", "Brainstem", "Mandible",
              "--query", str(root / "query.nrrd"), "--k", "3"]
    assert cli.main([*common, "--out", str(tmp_path / "fine.json")]) == 0
    printed = capsys.readouterr().err
    result = json.loads((tmp_path / "fine.json").read_text(encoding="utf-8"))
    warnings = []
    for organ, entry in result["organs"].items():
        checks = entry["checks"]
        assert set(checks) == {"points_on_scan_edge", "remaining_move_mm", "warnings"}
        assert set(checks["points_on_scan_edge"]) <= set(entry["extreme_points_lps_mm"])
        assert checks["remaining_move_mm"] >= 0
        warnings += [f"{organ}: {w}" for w in checks["warnings"]]
    assert [line.split(": ", 2)[-1] for line in printed.splitlines() if line.startswith("warning:")] == \
        [w.split(": ", 1)[1] for w in warnings]
    # two coarse steps: no fine model to ask, so only the edge is checked
    assert cli.main([*common, "--coarse-only", "--out", str(tmp_path / "coarse.json")]) == 0
    result = json.loads((tmp_path / "coarse.json").read_text(encoding="utf-8"))
    assert all(e["checks"]["remaining_move_mm"] is None for e in result["organs"].values())


def test_size_prior_draws_the_box(scans, trained, tmp_path, capsys):
    root = scans[0]

    def boxes(query, weight):
        out = tmp_path / f"{query.stem}-{weight}.json"
        argv = ["localize", "--models", str(trained), "--support", str(root / "support.nii.gz"),
                "--support-labels", str(root / "support_labels"), "--organs", "Brainstem", "--query", str(query),
                "--out", str(out), "--k", "3", *(["--size-prior", weight] if weight is not None else [])]
        assert cli.main(argv) == 0
        return json.loads(out.read_text(encoding="utf-8"))

    default = boxes(root / "query.nrrd", None)
    assert default["size_prior"] == cli.RELEASE_SIZE_PRIOR > 0
    paper = boxes(root / "query.nrrd", "0")["organs"]["Brainstem"]
    points = np.array(list(paper["extreme_points_lps_mm"].values()))
    assert np.allclose(paper["box_lps_mm"]["min"], points.min(axis=0))   # 0: the box of the predicted points
    assert np.allclose(paper["box_lps_mm"]["max"], points.max(axis=0))
    # 1: the support's box size, whatever the query
    drawn = [b["organs"]["Brainstem"]["box_lps_mm"]
             for b in (boxes(root / "query.nrrd", "1"), boxes(root / "images" / "scan1.nii.gz", "1"))]
    extents = [np.subtract(b["max"], b["min"]) for b in drawn]
    assert np.allclose(*extents, atol=1e-3)
    with pytest.raises(SystemExit):
        cli.main(["localize", "--support", "s", "--support-labels", "l", "--query", "q", "--out", "o",
                  "--size-prior", "1.5"])
    assert "between 0 and 1" in capsys.readouterr().err


def test_self_calibration_moves_the_answer_by_a_share_of_the_supports_own_bias(scans, trained, tmp_path):
    root = scans[0]

    def answer(weight):
        out = tmp_path / f"calibrated-{weight}.json"
        argv = ["localize", "--models", str(trained), "--support", str(root / "support.nii.gz"),
                "--support-labels", str(root / "support_labels"), "--organs", "Brainstem", "--query",
                str(root / "query.nrrd"), "--out", str(out), "--k", "3", "--size-prior", "0",
                *(["--self-calibration", weight] if weight is not None else [])]
        assert cli.main(argv) == 0
        report = json.loads(out.read_text(encoding="utf-8"))
        organ = report["organs"]["Brainstem"]
        return report, np.array(list(organ["extreme_points_lps_mm"].values())), organ["checks"]

    default, half, half_checks = answer(None)
    assert default["self_calibration"] == cli.RELEASE_SELF_CALIBRATION > 0 and default["self_calibration_runs"] >= 1
    assert default["support_self_calibration_s"] > 0
    off, raw, raw_checks = answer("0")
    assert off["support_self_calibration_s"] < default["support_self_calibration_s"]
    _, full, _ = answer("1")
    assert not np.allclose(half, raw)
    assert np.allclose(half - raw, 0.5 * (full - raw), atol=1e-3)      # the same bias, a share of it taken off
    assert half_checks == raw_checks                                     # the checks judge the networks' points


def test_a_scatter_step_is_run_with_its_width_and_recorded(scans, trained, tmp_path):
    root = scans[0]

    def answer(*extra):
        out = tmp_path / f"scatter{'-'.join(extra)}.json"
        argv = ["localize", "--models", str(trained), "--support", str(root / "support.nii.gz"),
                "--support-labels", str(root / "support_labels"), "--organs", "Brainstem", "--query",
                str(root / "query.nrrd"), "--out", str(out), "--k", "3", "--size-prior", "0",
                "--self-calibration", "0", *extra]
        assert cli.main(argv) == 0
        report = json.loads(out.read_text(encoding="utf-8"))
        return report, np.array(list(report["organs"]["Brainstem"]["extreme_points_lps_mm"].values()))

    plain, plain_points = answer()
    assert plain["scatter_mm"] == cli.RELEASE_SCATTER_MM and "scatter" not in plain["schedule"]
    scattered, scattered_points = answer("--steps", "coarse,scatter,fine", "--scatter-mm", "9")
    assert scattered["schedule"] == ["coarse", "scatter", "fine"] and scattered["scatter_mm"] == 9.0
    assert not np.allclose(scattered_points, plain_points)          # the fine move made from other patches


def test_a_series_of_queries_gives_each_the_result_of_a_single_call(scans, trained, tmp_path, capsys):
    """Several queries: the support is embedded once, each query's boxes are those of a call with
    that query alone, each overlay is written and its figure closed; a broken query is reported and the others go on (exit 2); --resume skips the
    queries already done with the same settings and redoes the others."""
    root = scans[0]
    common = ["localize", "--models", str(trained), "--support", str(root / "support.nii.gz"),
              "--support-labels", str(root / "support_labels"), "--organs", "Brainstem", "Mandible", "--k", "3"]
    queries = [root / "query.nrrd", root / "images" / "scan1.nii.gz"]
    import matplotlib.pyplot as plt

    plt.close("all")
    assert cli.main([*common, "--query", *map(str, queries), "--out", str(tmp_path / "series"),
                     "--overlay", str(tmp_path / "overlays")]) == 0
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir()) == ["query.png", "scan1.png"]
    assert plt.get_fignums() == []              # each overlay's figure closed: a long series piles none up
    for query, name in zip(queries, ("query", "scan1")):
        single = tmp_path / f"{name}-single.json"
        assert cli.main([*common, "--query", str(query), "--out", str(single)]) == 0
        ours, alone = (json.loads(f.read_text(encoding="utf-8")) for f in (tmp_path / "series" / f"{name}.json", single))
        assert ours["organs"] == alone["organs"] and ours["support_embedding_shared_by"] == 2
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b garbage")
    capsys.readouterr()
    code = cli.main([*common, "--query", str(broken), *map(str, queries), "--out", str(tmp_path / "series"),
                     "--resume"])
    printed = capsys.readouterr()
    assert code == 2 and "broken.nii.gz" in printed.err and "2 of 3 queries already done" in printed.out
    code = cli.main([*common, "--seed", "1", "--query", *map(str, queries), "--out", str(tmp_path / "series"),
                     "--resume"])
    assert code == 0 and json.loads((tmp_path / "series" / "scan1.json").read_text(encoding="utf-8"))["seed"] == 1


def test_a_series_refuses_queries_that_would_share_a_result_file(scans, tmp_path, capsys):
    root = scans[0]
    (tmp_path / "b").mkdir()
    other = tmp_path / "b" / "scan1.nii.gz"
    other.write_bytes((root / "images" / "scan1.nii.gz").read_bytes())
    code = cli.main(["localize", "--support", str(root / "support.nii.gz"), "--support-labels",
                     str(root / "support_labels"), "--query", str(root / "images" / "scan1.nii.gz"), str(other),
                     "--out", str(tmp_path / "out")])
    assert code == 2 and "same result scan1.json" in capsys.readouterr().err


def test_missing_organ_is_a_clear_error(scans, trained, tmp_path, capsys):
    root, _, _ = scans
    code = cli.main(["localize", "--models", str(trained), "--support", str(root / "support.nii.gz"),
                     "--support-labels", str(root / "support_labels"), "--organs", "Pancreas",
                     "--query", str(root / "query.nrrd"), "--out", str(tmp_path / "r.json")])
    assert code == 2 and "no mask for Pancreas" in capsys.readouterr().err


def test_bad_model_and_bad_image_are_clear_errors(scans, trained, tmp_path, capsys):
    root, _, _ = scans
    (tmp_path / "models" / "coarse").mkdir(parents=True)
    (tmp_path / "models" / "coarse" / "best.pt").write_text("not a model", encoding="utf-8")
    code = cli.main(["localize", "--models", str(tmp_path / "models"), "--support", str(root / "support.nii.gz"),
                     "--support-labels", str(root / "support_labels"), "--query", str(root / "query.nrrd"),
                     "--out", str(tmp_path / "r.json")])
    assert code == 2 and "best.pt" in capsys.readouterr().err
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    code = cli.main(["localize", "--models", str(trained), "--support", str(bad), "--support-labels",
                     str(root / "support_labels"), "--query", str(root / "query.nrrd"), "--out", str(tmp_path / "r.json")])
    assert code == 2 and "broken.nii.gz" in capsys.readouterr().err


def test_detect_boxes_every_organ_in_physical_space_whatever_the_storage_order(scans, tmp_path):
    root, query, _ = scans
    flipped = sitk.Flip(query, [True, False, True])   # same anatomy, stored in another voxel order
    sitk.WriteImage(flipped, str(tmp_path / "flipped.nii.gz"))
    reports = []
    for name, image in (("query.nrrd", root / "query.nrrd"), ("flipped.json", tmp_path / "flipped.nii.gz")):
        out = tmp_path / f"{name}.json"
        assert cli.main(["detect", "--image", str(image), "--out", str(out),
                         "--overlay", str(tmp_path / f"{name}.png")]) == 0
        reports.append(json.loads(out.read_text(encoding="utf-8")))
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    plain, other = reports
    assert set(plain["organs"]) == {"Brainstem", "Mandible", "LeftParotid", "RightParotid"}
    corner_lo = np.array(query.GetOrigin())
    corner_hi = np.array(query.TransformIndexToPhysicalPoint([int(s) - 1 for s in query.GetSize()]))
    for organ, result in plain["organs"].items():
        lo, hi = np.array(result["box_lps_mm"]["min"]), np.array(result["box_lps_mm"]["max"])
        assert np.all(lo <= hi) and np.all(lo >= corner_lo - 1e-3) and np.all(hi <= corner_hi + 1e-3)
        assert 0.0 <= result["peak_probability"] <= 1.0
        np.testing.assert_allclose(other["organs"][organ]["box_lps_mm"]["min"], lo, atol=1e-3)
        np.testing.assert_allclose(other["organs"][organ]["box_lps_mm"]["max"], hi, atol=1e-3)
        # the voxel box of the flipped file is the same physical box
        idx = other["organs"][organ]["box_index_zyx"]
        ends = [flipped.TransformContinuousIndexToPhysicalPoint([float(v) for v in reversed(p)])
                for p in (idx["min"], idx["max"])]
        np.testing.assert_allclose(np.min(ends, axis=0), lo, atol=1e-3)
        np.testing.assert_allclose(np.max(ends, axis=0), hi, atol=1e-3)


def test_detect_without_a_release_is_a_clear_error(scans, tmp_path, capsys):
    root = scans[0]
    code = cli.main(["detect", "--image", str(root / "query.nrrd"), "--out", str(tmp_path / "r.json"),
                     "--weights", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "manifest" in err and "\n" not in err
    assert not (tmp_path / "r.json").exists()
