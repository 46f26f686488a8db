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
source = None      # an OpenKBP upstream copy; None: $RPRLOC_OPENKBP_SOURCE, the profile's path, or download
limit = None       # first N patients per split only (None: all)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import SimpleITK as sitk
from IPython.display import Markdown, display

from data_prep.prepare import prepare
from rprloc_core.data import cases
from rprloc_core.data import dataset
from rprloc_core.settings import load_profile
from rprloc_core.data.organs import HAN_ORGANS, ORGANS
from rprloc_core.paths import results_dir
from rprloc_core.plotting import organ_legend, orthogonal_views
from rprloc_core.data.preprocess import INTENSITY_KNOTS_HU, INTENSITY_VALUES, intensity_map
from rprloc_core.reporting import markdown_table, save_figure, write_json, write_table

cfg = load_profile(profile)
results = results_dir(profile)
print(cfg["description"])

# %% [markdown]
# ## Fetch, convert, preprocess
# Conversion and preprocessing are resumable: a case already converted or already in the
# preprocessing cache (keyed by a hash of the parameters) is not done again, and a case is
# written under a temporary name and renamed into place, so an interrupted run leaves nothing
# half-written. The times below are for this run; on a second run they show the cost of checking
# the cache only.

# %%
start = time.perf_counter()
report = prepare(cfg, source=source, limit=limit, progress=True)
wall = time.perf_counter() - start
print(f"source: {report['source']}")
print(f"convert: {report['convert_s']:.1f} s, preprocess: {report['preprocess_s']:.1f} s, total {wall:.1f} s "
      f"for {report['n_cases']} cases")
if "conversion" in report:
    print(report["conversion"])
write_json({k: v for k, v in report.items() if k != "conversion"}
           | {"wall_s": wall, "converted_now": len(report.get("conversion").converted) if "conversion" in report else None},
           results / "benchmarks" / "data_prepare_notebook.json")

# %% [markdown]
# Cases that could not be converted or preprocessed (a corrupt file, an empty mask, a missing
# `voxel_dimensions`) are listed here with the file and the reason; every other case went on.

# %%
problems = pd.DataFrame(
    [(c, "conversion", m) for c, m in (report["conversion"].failed if "conversion" in report else [])]
    + [(c, "preprocessing", m) for c, m in report["preprocess_failed"]],
    columns=["case_id", "step", "problem"])
display(problems if len(problems) else Markdown("No case was skipped."))

# %% [markdown]
# ## The dataset
# The demo split follows the upstream one: `train-pats` are the unlabelled training volumes,
# `validation-pats` hold Pnet's validation volumes and the pool the one-shot support image is drawn
# from, `test-pats` are the queries. A patient counts as a query for an organ only when that organ
# was contoured. Spacing is in mm along (z, y, x) = (superior, posterior, patient left).

# %%
geometry = dataset.case_geometry(cfg)
organs = [o for o in ORGANS if geometry["organs"].str.contains(o).any()]
summary = dataset.dataset_summary(geometry, organs)
write_table(summary, "dataset", results)
display(Markdown(markdown_table(summary)))

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3))
for ax, axis in zip(axes, "zyx"):
    ax.hist(geometry[f"spacing_{axis}_mm"], bins=20, color="tab:blue", alpha=0.7, label="original")
    ax.axvline(cfg["preprocess"]["spacing_zyx"]["zyx".index(axis)], color="tab:red", lw=2, label="after resampling")
    ax.set_xlabel(f"spacing along {axis} (mm)")
    ax.set_ylabel("cases")
axes[0].legend(fontsize=8)
fig.suptitle(f"Voxel spacing of the {len(geometry)} cases ({profile})")
fig.tight_layout()
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
examples = [c for c in dataset.case_ids(cfg, "validation", organ="Brainstem")][: cfg["figures"]["n_example_cases"]]
shown = [o for o in (*HAN_ORGANS, "SpinalCord") if o in organs]
fig, axes = plt.subplots(2 * len(examples), 3, figsize=(10, 6.2 * len(examples)))
for i, case_id in enumerate(examples):
    original = cases.load_image(dataset.cases_root(cfg), case_id)
    original_labels = {}
    for organ in shown:
        try:
            original_labels[organ] = sitk.GetArrayFromImage(cases.load_label(dataset.cases_root(cfg), case_id, organ))
        except Exception:
            pass  # not contoured in this patient
    hu = sitk.GetArrayFromImage(original)
    centre = np.argwhere(original_labels["Brainstem"]).mean(axis=0)
    spacing = np.asarray(original.GetSpacing())[::-1]
    orthogonal_views(axes[2 * i], hu, spacing, centre, original_labels,
                     title=f"{case_id} original {np.round(spacing, 2).tolist()} mm")
    pre = dataset.load_case(cfg, case_id)
    centre = np.argwhere(pre.labels["Brainstem"]).mean(axis=0)
    orthogonal_views(axes[2 * i + 1], pre.hu, pre.spacing, centre, {o: m for o, m in pre.labels.items() if o in shown},
                     title=f"{case_id} resampled {pre.spacing.tolist()} mm")
organ_legend(fig, shown)
fig.tight_layout(rect=(0, 0.02, 1, 1))
save_figure(fig, "examples_before_after_resampling", results)
plt.show()

# %% [markdown]
# ## The intensity map
# HU are mapped piecewise-linearly with knots (-500, -100, 100, 1500) HU -> (0, 0.2, 0.8, 1) and
# clamped. Everything at or below -500 HU becomes exactly 0, which is what "non-air" means when
# patch centres are drawn later.

# %%
hu_axis = np.linspace(-1100, 2000, 400)
pre = dataset.load_case(cfg, examples[0])
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.plot(hu_axis, intensity_map(hu_axis), color="k")
ax1.scatter(INTENSITY_KNOTS_HU, INTENSITY_VALUES, color="tab:red", zorder=3)
ax1.set_xlabel("HU")
ax1.set_ylabel("network input")
ax1.set_title("piecewise-linear intensity map")
centre = np.argwhere(pre.labels["Brainstem"]).mean(axis=0).round().astype(int)
ax2.imshow(pre.volume.array[centre[0]], cmap="gray", vmin=0, vmax=1,
           extent=(0, pre.volume.shape[2] * pre.spacing[2], pre.volume.shape[1] * pre.spacing[1], 0))
ax2.set_title(f"{examples[0]}: mapped intensities, axial slice")
ax2.set_xticks([])
ax2.set_yticks([])
fig.tight_layout()
save_figure(fig, "intensity_map", results)
plt.show()

# %% [markdown]
# ## Cost
# The wall time of conversion and preprocessing for all cases on this machine is printed above
# (target: under 5 minutes on 2 cores for all OpenKBP patients, from the compressed source). The
# benchmark `benchmarks/data_pipeline.py` measures the same from an empty data directory and writes
# `results/<profile>/benchmarks/data_pipeline.json`.

# %%
import json  # noqa: E402

bench = results / "benchmarks" / "data_pipeline.json"
if bench.is_file():
    b = json.loads(bench.read_text(encoding="utf-8"))
    print(f"benchmark (empty data directory): {b['n_cases']} cases, convert {b['convert_s']} s + preprocess "
          f"{b['preprocess_s']} s = {b['total_s']} s on {b['cpus']} CPUs (target {b['target_total_s']} s)")
else:
    print("no benchmark figures yet: run `python benchmarks/data_pipeline.py --profile", profile + "`")
