# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Data: OpenKBP head-and-neck CT, converted and resampled
#
# RPR-Loc (Lei et al., *Contrastive Learning of Relative Position Regression for One-Shot Object
# Localization in 3D Medical Images*, MICCAI 2021) learns from unlabelled CT and localizes organs
# from a single labelled support image. This notebook gets the data ready for every later one:
#
# 1. read OpenKBP (Babier et al., *OpenKBP: The open-access knowledge-based planning grand
#    challenge and dataset*, Med. Phys. 48:5549, 2021; images from The Cancer Imaging Archive) in
#    its upstream layout, from a local copy or a download;
# 2. convert every patient to the project's standard case layout: a CT in HU and one mask per organ,
#    as NIfTI images with their real spacing, origin and LPS direction;
# 3. preprocess (METHOD 2.3): crop the air, resample to the working spacing, map intensities.
#
# With the `smoke` profile the same steps run on a synthetic phantom instead of OpenKBP.

# %% tags=["parameters"]
profile = "demo"   # smoke | demo | paper
overrides = {}     # profile settings to change, e.g. {"preprocess.workers": 1}
source = None      # an OpenKBP upstream copy; None: $RPRLOC_OPENKBP_SOURCE, the profile's path, or download
limit = None       # first N patients per split only (None: all)

# %%
import time

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from data_prep.prepare import prepare
from rprloc_core.experiments import figures, findings, tables
from rprloc_core.paths import results_dir
from rprloc_core.reporting import markdown_table, save_figure, write_json, write_table
from rprloc_core.settings import load_settings

settings = load_settings(profile, overrides)
results = results_dir(profile)
print(settings.description)

# %% [markdown]
# ## Fetch, convert, preprocess
# Conversion and preprocessing are resumable: a case already converted or already in the
# preprocessing cache (keyed by a hash of the parameters) is not done again, and a case is
# written under a temporary name and renamed into place, so an interrupted run leaves nothing
# half-written. The times below are for this run; on a second run they show the cost of checking
# the cache only.

# %%
start = time.perf_counter()
report = prepare(settings, source=source, limit=limit, progress=True)
wall = time.perf_counter() - start
print(f"source: {report['source']}")
print(f"convert: {report['convert_s']:.1f} s, preprocess: {report['preprocess_s']:.1f} s, total {wall:.1f} s "
      f"for {report['n_cases']} cases")
if "conversion" in report:
    print(report["conversion"])
write_json({k: v for k, v in report.items() if k != "conversion"}
           | {"wall_s": wall, "converted_now": len(report["conversion"].converted) if "conversion" in report else None},
           results / "benchmarks" / "data_prepare_notebook.json")

# %% [markdown]
# Cases that could not be converted or preprocessed (a corrupt file, an empty mask, a missing
# `voxel_dimensions`) are listed here with the file and the reason; every other case went on.

# %%
problems = tables.preparation_problems(report)
display(problems if len(problems) else Markdown("No case was skipped."))

# %% [markdown]
# ## The dataset
# The demo split follows the upstream one: `train-pats` are the unlabelled training volumes,
# `validation-pats` hold Pnet's validation volumes and the pool the one-shot support image is drawn
# from, `test-pats` are the queries. A patient counts as a query for an organ only when that organ
# was contoured. Spacing is in mm along (z, y, x) = (superior, posterior, patient left).

# %%
geometry, summary = tables.dataset_table(settings)
write_table(summary, "dataset", results)
display(Markdown(markdown_table(summary)))

# %%
fig = figures.spacing_distribution(settings, geometry)
save_figure(fig, "spacing_distribution", results)
plt.show()

# %% [markdown]
# ## Before and after resampling
# Three orthogonal slices through the brainstem of a few patients, on the original grid (top) and
# on the working grid (bottom), with the organ contours. Axes are drawn in millimetres with the true
# aspect ratio; axial views show the patient's right on the left and anterior at the top; coronal and
# sagittal views show superior at the top. The mandible sits in front of the brainstem, the left
# parotid on the patient's left, the spinal cord below the brainstem.

# %%
fig = figures.before_after_resampling(settings)
save_figure(fig, "examples_before_after_resampling", results)
plt.show()

# %% [markdown]
# ## The intensity map
# HU are mapped piecewise-linearly with knots (-500, -100, 100, 1500) HU -> (0, 0.2, 0.8, 1) and
# clamped. Everything at or below -500 HU becomes exactly 0, which is what "non-air" means when
# patch centres are drawn later.

# %%
fig = figures.intensity_map_figure(settings)
save_figure(fig, "intensity_map", results)
plt.show()

# %% [markdown]
# ## Cost
# The wall time of conversion and preprocessing for all cases on this machine is printed above
# (target: under 5 minutes on 2 cores for all OpenKBP patients, from the compressed source). The
# benchmark `benchmarks/data_pipeline.py` measures the same from an empty data directory and writes
# `results/<profile>/benchmarks/data_pipeline.json`.

# %%
display(Markdown(findings.data_pipeline_benchmark(results, profile)))
