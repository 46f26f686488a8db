"""Every numbered notebook: paired with its py:percent source, free of outputs, and executed end to
end with the smoke profile (papermill), checking the files it must write."""

import json
import os
from pathlib import Path

import jupytext
import pandas as pd
import pytest

from rprloc_core import reproduce

NOTEBOOKS = sorted(reproduce.NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
# What each notebook must leave under results/<profile>/.
EXPECTED = {
    "01_data_resampling": ["tables/dataset.csv", "tables/dataset.md", "figures/spacing_distribution.png",
                           "figures/examples_before_after_resampling.png", "figures/intensity_map.png"],
    "05_template_matching_baselines": ["tables/table3_methods.csv", "figures/figure4_brainstem_boxes.png",
                                       "figures/autoencoder_training.png"],
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
        assert reproduce.main(["--profile", "smoke", "--quiet"]) == 0
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
