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
# # 04 · Which landmarks make a box: diagonal vs. extreme points, and K (paper Table 1)
#
# An organ is localized through landmarks on its bounding box. **Diagonal points** are two box
# corners, (min z, min y, min x) and (max z, max y, max x); they usually lie outside the organ, in
# tissue that says little about where the box is. **Extreme points** are six organ voxels, one on
# each face of the box (here: the middle voxel, in raster order, of the organ's voxels on that face,
# as in the authors' code); the predicted box spans the six predicted points. The paper's Table 1
# compares them with the coarse model, one step, K = 1, and then varies the number of runs K for
# extreme points (the K grid is the profile's `rprloc.inference.k_grid`). All numbers come from the
# predictions cached by notebook 03 (a smaller K uses the first
# K of the same K_max runs).

# %% tags=["parameters"]
profile = "demo"
overrides = {}     # profile settings to change, e.g. {"rprloc.inference.k_grid": [1, 2, 4, 8, 16]}

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from rprloc_core.evaluation.protocol import one_shot_protocol
from rprloc_core.experiments import figures, findings, rprloc_predictions, tables
from rprloc_core.paths import results_dir
from rprloc_core.reporting import markdown_table, save_figure
from rprloc_core.settings import load_settings

settings = load_settings(profile, overrides)
results = results_dir(profile)
protocol = one_shot_protocol(settings)
rprloc_predictions.predict_all(settings, protocol)  # a no-op after notebook 03

# %% [markdown]
# ## Table 1

# %%
table1 = tables.table1(settings, protocol)
tables.write_paper_table(table1, "table1_diagonal_vs_extreme", results)
display(Markdown(markdown_table(table1.shown(["strategy", "K"]), floatfmt=".1f")))

# %%
fig = figures.table1_chart(table1.table)
save_figure(fig, "table1_diagonal_vs_extreme", results)
plt.show()

# %%
display(Markdown(findings.table1_findings(table1.table)))

# %% [markdown]
# ## Diagonal vs. extreme points on the mandible
# Top: the support's mandible with its two diagonal corners (red squares) and six extreme points
# (yellow), each with the coarse model's patch around it (red: diagonal, yellow: extreme). The
# corners lie in whatever happens to surround the mandible's box; the extreme points lie on bone.
# Bottom: a query with the true box (white), the box from the two predicted corners (red dashed)
# and from the six predicted extreme points (yellow dashed), coarse model, K = 1.

# %%
fig = figures.mandible_diagonal_vs_extreme(settings, protocol)
save_figure(fig, "mandible_diagonal_vs_extreme", results)
plt.show()
