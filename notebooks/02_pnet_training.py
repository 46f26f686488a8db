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
# # 02 · Pnet: self-supervised training of the coarse and fine models
#
# Pnet (Lei et al., MICCAI 2021) embeds a patch into a 3-vector p; the offset from a query patch q
# to a support patch s is predicted as `d = r * tanh(p_s - p_q)` (mm, per axis), and the loss is the
# squared error against the true offset `(c_s - c_q) * spacing`. The targets come from where the
# patches were cut, so **training reads no annotation**: the training and validation volumes are
# loaded with `dataset.unlabelled_volumes`, which opens only the intensity array of each case.
#
# - **Mc (coarse)**: both patch centres anywhere in a volume (non-air); large r.
# - **Mf (fine)**: support centre within a small neighbourhood of the query centre; small r.
#
# Every n patches cut from one volume give n(n-1) ordered pairs for the cost of n forward passes
# (Pnet embeds each patch on its own), so each step uses all of them. Validation uses a fixed set of
# pairs drawn once from the validation volumes with a seeded generator, so the curves are comparable
# across steps; the best model by validation loss is kept. Training checkpoints after every
# validation and resumes where it stopped.
#
# **Released weights.** The demo profile uses the committed models in `weights/openkbp-han-demo/`
# (`weights.source = "release"`): this notebook then trains nothing, and its table and curves are the
# release's own training record (its `manifest.json`, with a sha256 per file, the training
# settings, the data split and the validation history; `MODEL_CARD.md` says what they are for). To
# retrain them: `make train` (resumable; it writes to `data/`, never over the release; publishing a
# new release is `python -m rprloc_core.experiments.retrain --profile demo --publish --overwrite`).
# With `overrides = {"weights.source": "train"}`, or the smoke profile, this notebook trains.

# %% tags=["parameters"]
profile = "demo"
overrides = {}     # profile settings to change, e.g. {"rprloc.coarse.steps": 4000}
parallel = True    # train two models at once, one thread each (2-core CPU)

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from rprloc_core.experiments import figures, models, tables
from rprloc_core.paths import results_dir
from rprloc_core.reporting import markdown_table, save_figure, write_table
from rprloc_core.settings import load_settings

settings = load_settings(profile, overrides)
results = results_dir(profile)
tables.pnet_settings_table(settings)

# %% [markdown]
# ## The network
# The layer table stands in for the paper's architecture figure: five residual blocks (channels
# 2b, 2b, 4b, 8b, 4b; the HaN block convolves (1,3,3), (3,1,1), (1,3,3), (1,3,3), each followed by
# instance norm and ReLU, with a 1x1x1 shortcut), max-pooling after blocks 1-3, and three linear
# layers with no activation between them, as in the authors' code.

# %%
for name in models.MAIN_MODELS:
    layers, about = tables.pnet_layer_table(settings, name)
    write_table(layers, f"pnet_layers_{name}", results)
    display(Markdown(f"**{name}**: patch {about['patch_voxels']} voxels on a {about['grid_mm']} mm grid = "
                     f"{about['patch_mm']} mm; {about['parameters']:,} parameters"))
    display(Markdown(markdown_table(layers, floatfmt=".0f")))

# %% [markdown]
# ## Training
# Main models first (in parallel), then the r-sweep models, which start from the main model's
# weights with another r. With released weights: their training record.

# %%
summaries = models.training_summaries(settings, parallel=parallel)
training = tables.pnet_training_table(settings, summaries)
write_table(training, "pnet_training", results, floatfmt=".1f")
display(Markdown(markdown_table(training, floatfmt=".1f")))

# %% [markdown]
# A row with `stopped = already_done` was trained earlier and only read back here, one with
# `stopped = released` comes from the release's manifest (in both, `train_time_s` is the time of the
# original run).

# %%
fig = figures.pnet_loss_curves(settings)
save_figure(fig, "pnet_loss_curves", results)
plt.show()

# %% [markdown]
# ## What a CPU budget buys, and the choices made here
# The paper trained for 250 epochs on a GPU. This demo has a fixed wall-time budget per model
# (`time_limit_s` in the profile) on 2 CPU cores, so the choices that matter are those that buy the
# most learning per second:
#
# - **resolution and patch**: Mc runs on the working grid pooled 2x (6 x 4 x 4 mm) with 16^3
#   patches (96 x 64 x 64 mm); Mf on the 3 x 2 x 2 mm grid;
# - **all pairs**: n patches per volume give n(n-1) pairs per n forward passes;
# - **threads**: two single-thread processes, one per model, rather than one two-thread process.
#
# The validation losses above are in mm^2 over all three axes; their square root is the typical
# per-axis error of one Pnet step from one start. How far this is from the authors' released models
# (validation MSE about 380 mm^2 for HaN after hundreds of thousands of GPU iterations) is discussed
# with the localization results in notebook 03.
