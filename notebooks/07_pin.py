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
# # 07 · PIN: a patch-based iterative network (supervised)
#
# PIN (Li et al., 2018) finds a landmark by walking to it: at the current position it cuts three
# orthogonal 2D patches (2.5D), and a CNN answers with a **class** (which way to move: +- each axis)
# and a **displacement** (how far). An update rule turns the answer into a move, repeated from
# several starts; the prediction is the mean of the final positions:
#
# - rule **A**: one voxel in the most probable direction, 350 iterations (classification only;
#   a walk on the voxel lattice that ends oscillating, so the network's answer for a position
#   already visited is remembered: same path, a fraction of the network passes);
# - rule **B**: x += d, 10 iterations (regression only);
# - rule **C**: x += P_max d, 10 iterations (the move damped by the network's confidence).
#
# Trained with loss C (cross-entropy of the class), R (squared error of the displacement) or C+R
# (half of each), these give the paper's variants PIN1-PIN5. **PIN-Single** has one network per
# landmark; **PIN-Multiple** one network for all landmarks, moving in the parameter space of a PCA
# shape model (99.5 % of the variance), its input the 2.5D patches of every landmark.
#
# PIN is supervised. On OpenKBP its landmarks are the six extreme points of each of the four organs
# (24), taken from the training patients' masks, and the shape model is fitted on them. Each 2.5D
# patch is 32 x 32 pixels of 3 mm (a 96 mm field, sampled in millimetres so that it is square in the
# body whatever the slice thickness). Positions are in a frame centred on the body (millimetres from
# the centre of the preprocessed volume, which is cropped to the body): over the training patients
# the landmarks spread 19, 10 and 13 mm (SD along z, y, x) in that frame, against 38, 10 and 74 mm
# from the volume's corner, which moves with the width of the cropped body. So a training patient's
# landmark is a plausible start in any new patient: the 19 starts of a query are the landmark (or
# the shape parameters) of 19 training patients drawn with a generator seeded by the query.
#
# Every setting came from the training patients or the validation curves, never from the test
# queries: the frame (from the spread above), the paper's 19 starts, T and alpha, a training range
# (+- 60 mm per axis, +- 1.5 SD per shape mode) wider than that spread, and 3,000 steps (the
# validation error after one move was still falling at 1,500, the first run's length). The
# methods-table rows use PIN5 (loss C+R, rule C), the paper's best,
# chosen before any test query was seen.
#
# The networks are released in `weights/openkbp-han-pin/` (manifest, model card); retraining:
# `python -m rprloc_core.experiments.pin_predictions --profile demo` (resumable).

# %% tags=["parameters"]
profile = "demo"
overrides = {}     # profile settings to change
parallel = True    # two worker processes, one thread each (2-core CPU)

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from rprloc_core.evaluation.protocol import one_shot_protocol
from rprloc_core.experiments import figures, findings, pin_predictions, tables
from rprloc_core.experiments.paper import paper_table
from rprloc_core.paths import results_dir
from rprloc_core.reporting import markdown_table, save_figure, write_table
from rprloc_core.settings import load_settings

settings = load_settings(profile, overrides)
results = results_dir(profile)
protocol = one_shot_protocol(settings)
print(f"test queries: {len(protocol.queries)} patients; landmarks: {len(pin_predictions.landmark_names())}")

# %% [markdown]
# ## The networks and their training
# 24 PIN-Single networks (loss C+R), the variants' landmark also with losses C and R, and
# PIN-Multiple. Their training history comes with the weights (the release's manifest): the loss on
# the training steps and, on a fixed sample of validation patients, the landmark error after one
# regression move from a displaced start.

# %%
files = pin_predictions.ensure_models(settings, parallel=parallel)
shape = pin_predictions.released_shape_model(settings)
print(f"{len(files)} networks; shape model: {shape.n_modes} modes keep {settings.pin.keep_variance:.1%} of the "
      f"variance of the 24 landmarks ({len(pin_predictions.training_landmarks(settings))} training patients)")
history = pin_predictions.history(settings)
last = history.groupby("network", sort=False).tail(1)
write_table(last, "pin_training", results, floatfmt=".3g")
display(Markdown(markdown_table(last, floatfmt=".3g")))

# %%
fig = figures.pin_training(history)
save_figure(fig, "pin_training", results)
plt.show()

# %% [markdown]
# ## Every test query
# PIN-Single and PIN-Multiple (rule C) on all 24 landmarks, and PIN1-PIN5 on the variants' landmark.

# %%
pin_predictions.predict_all(settings, protocol.queries, parallel=parallel)
errors = pin_predictions.landmark_errors(settings, protocol.queries)

# %% [markdown]
# ## The paper's Table 1: loss x update rule (one landmark)
# Mean and SD of the error over the test queries, seconds per landmark (one thread).

# %%
variants = pin_predictions.variants_table(errors, paper_table("pin_table1"))
write_table(variants, "pin_variants", results, floatfmt=".3g")
display(Markdown(markdown_table(variants, floatfmt=".3g")))

# %% [markdown]
# ## The paper's Table 2: PIN-Single against PIN-Multiple, per landmark

# %%
single_vs_multiple = pin_predictions.single_vs_multiple_table(errors, paper_table("pin_table2"))
write_table(single_vs_multiple, "pin_single_vs_multiple", results, floatfmt=".3g")
display(Markdown(markdown_table(single_vs_multiple, floatfmt=".3g")))

# %%
fig = figures.pin_landmark_errors(single_vs_multiple)
save_figure(fig, "pin_landmark_errors", results)
plt.show()

# %% [markdown]
# Read the mandible's superior (z_max) and posterior (y_max) points with care: both condyles, and
# both rami, reach almost the same height and depth, so the voxel that defines the point (the
# median of the organ's voxels on that face of its box) sits on the left in some patients and on
# the right in others, and no network can tell which. Their Euclidean errors are large, but the
# error along the axis the point bounds (`axis_error_mean_mm`, all that matters to the box) is
# not, which is why the mandible's box IoU below stays high.

# %% [markdown]
# ## The starts walking to the landmark
# Rule C from the 19 starts on one test query (the first with the landmark's organ), on three
# slices through the true landmark.

# %%
fig = figures.pin_convergence(settings, protocol.queries)
save_figure(fig, "pin_convergence", results)
plt.show()

# %% [markdown]
# ## Organ boxes: PIN in the methods table
# The box of an organ spans its six predicted extreme points, scored like every other method
# (IoU, AWD); RPR-Loc's default schedule on the same queries beside it (one-shot; its seconds are
# Table 3's). PIN needs no support: it is scored once per query, so it has no SD over supports.

# %%
pin_methods = tables.pin_methods_table(settings, protocol)
tables.write_paper_table(pin_methods, "pin_methods", results)
display(Markdown(markdown_table(pin_methods.table[["method", "organ", "iou_pct", "awd_mm", "point_error_mm",
                                                   "time_s", "n_queries"]], floatfmt=".3g")))

# %%
display(Markdown(findings.pin_findings(variants, single_vs_multiple, pin_methods.table, pin_predictions.SINGLE_LABEL,
                                       pin_predictions.MULTIPLE_LABEL, profile)))
