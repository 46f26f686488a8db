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
# # 06 · CC2D: cascade embeddings, one-shot, then a detector trained on its answers
#
# CC2D (Yao et al., MICCAI 2021) is the other one-shot landmark method of the same year. It learns
# without labels to embed every pixel at several scales so that the same anatomy gets the same
# vector in any image; one labelled template then suffices:
#
# - **stage 1, CC2D-SSL**: a network maps an image to embeddings of length L = 16 at five scales
#   (stride 1 to 16). Training: a random crop holding a random point is cut from an image, rotated
#   and jittered; the point's embedding in the crop must pick out the point's cell in the whole
#   image's map (cosine similarity, softmax at temperature 0.1, cross-entropy), over the whole map
#   at the coarsest scale and within a window of cells at the finer ones. Inference: each template
#   landmark's embeddings are compared with every cell of the query, the five cosine maps upsampled
#   and multiplied, and the argmax is the prediction.
# - **stage 2, CC2D (TPL)**: stage 1 labels every training image with the template's landmarks
#   (pseudo-labels), and a heatmap + offset detector is trained on them; its top voxels vote.
#
# On OpenKBP the landmarks are the six extreme points of each organ (24), so an organ's box spans
# six predictions, scored like RPR-Loc's. What differs from the paper, and why:
# - 3D CT at 6 x 4 x 4 mm (the working grid pooled twice): stage 1 embeds whole volumes in every
#   training step, about 28 s a step on one CPU thread at 3 x 2 x 2 mm, 3.6 s at 6 x 4 x 4 mm.
# - A small U-Net (8-16-32-64-64 channels, instance norm) instead of the ImageNet VGG19: no
#   pretrained weights offline, and it has to train on a CPU.
# - 1,000 stage-1 steps and 3,000 TPL steps (the paper: thousands); crops of 144 x 128 x 192 mm, a
#   local window of 13 cells per axis (the ablation below); the checkpoint with the lowest
#   validation loss. The release was trained on a GPU lent for one session (stage 1: 80 s; the
#   pseudo-labels and the first 1,294 TPL steps, the rest resumed on this 2-core CPU); a CPU-only
#   retrain takes about an hour (see the model card).
# - The TPL template is the one-shot protocol's first support (a validation patient). One detector
#   per template: it answers with that template's landmarks whatever support is given, so its rows
#   carry that one support.
#
# Every setting came from the training and validation patients (losses, validation errors, the
# ablation below); the test queries only report. The networks are released in
# `weights/openkbp-han-cc2d/` (manifest, model card); retraining:
# `python -m rprloc_core.experiments.cc2d_predictions --profile demo` (resumable).

# %% tags=["parameters"]
profile = "demo"
overrides = {}     # profile settings to change
parallel = True    # two worker processes, one thread each (2-core CPU)

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from rprloc_core.evaluation.protocol import landmark_names, one_shot_protocol
from rprloc_core.experiments import cc2d_predictions, figures, findings, tables
from rprloc_core.experiments.paper import paper_table
from rprloc_core.paths import results_dir
from rprloc_core.reporting import markdown_table, save_figure, write_table
from rprloc_core.settings import load_settings

settings = load_settings(profile, overrides)
results = results_dir(profile)
protocol = one_shot_protocol(settings)
print(f"supports: {', '.join(protocol.supports)}; test queries: {len(protocol.queries)} patients; "
      f"landmarks: {len(landmark_names())}")

# %% [markdown]
# ## Training
# Both stages' validation history comes with the weights (the release's manifest): stage 1's loss on
# fixed crops of validation patients and the error of finding a crop's point in its whole volume;
# stage 2's loss and its error against stage 1's answers on the validation patients (pooled voxels
# of 6 x 4 x 4 mm).

# %%
files = cc2d_predictions.ensure_models(settings)
history = cc2d_predictions.history(settings)
checks = history.dropna(subset=["val_loss"]).groupby("stage", sort=False).tail(3)
write_table(checks, "cc2d_training", results, floatfmt=".3g")
display(Markdown(markdown_table(checks, floatfmt=".3g")))

# %% [markdown]
# How many steps: the first release (500 stage-1 steps, window 9) stopped with stage 1's validation
# error still falling (9.3 pooled voxels at step 500); with 1,000 steps and window 13 it reached
# 3.6 at step 950. Its TPL stage had reached 3.7 voxels at 2,000 steps, still falling; here it
# levels off at about 4 from step 2,100 on (the right-hand panels), so 3,000 steps are enough. The
# checkpoint with the lowest validation loss of each stage is the release's.

# %%
fig = figures.cc2d_training(history)
save_figure(fig, "cc2d_training", results)
plt.show()

# %% [markdown]
# ## Coarse to fine: the similarity maps
# Two landmarks of the first support searched in a test query: the cosine map of each scale
# (coarsest first) on the axial slice through the prediction, and their product. The coarse maps
# say roughly where; the finer ones are sharp but ambiguous alone (every similar-looking voxel
# lights up), and the product keeps what all scales agree on.

# %%
fig = figures.cc2d_similarity_maps(settings, protocol, landmarks=("Mandible y_min", "Brainstem z_max"))
save_figure(fig, "cc2d_similarity_maps", results)
plt.show()

# %% [markdown]
# ## Every test query
# CC2D-SSL for every support and query, CC2D (TPL) for its template and every query; cached per
# pair (keyed by the checkpoints' sha256). Each pair's time runs from the query volume to the
# predicted millimetres; the support's embeddings are made once per support, as RPR-Loc's are.

# %%
cc2d_predictions.predict_all(settings, protocol, parallel=parallel)

# %% [markdown]
# ## Organ boxes: CC2D in the methods table
# The box of an organ spans its six predicted extreme points, scored like every other method (IoU
# in the query's voxel coordinates, AWD in mm; mean over the queries per support, then mean and SD
# over the supports); one-shot RPR-Loc's default schedule on the same supports and queries beside
# it (its seconds are Table 3's).

# %%
cc2d_methods = tables.cc2d_methods_table(settings, protocol)
tables.write_paper_table(cc2d_methods, "cc2d_methods", results)
display(Markdown(markdown_table(cc2d_methods.table[["method", "organ", "iou_pct", "iou_pct_sd_over_supports", "awd_mm",
                                                    "time_s", "n_queries"]], floatfmt=".3g")))

# %% [markdown]
# ## Landmarks: mean radial error and successful detection rate
# The paper's metrics on the 24 extreme points (Euclidean error in mm; SDR: the share within each
# radius). The paper's radii, 2-4 mm, are 20-40 pixels of its 0.1 mm cephalograms; here a voxel is
# 6 x 4 x 4 mm, so the radii are 5-20 mm. The paper's rows (ISBI 2015, 2D) are below for their
# shape, not for comparison.

# %%
errors = cc2d_predictions.landmark_errors(settings, protocol)
landmarks = cc2d_predictions.landmark_table(errors, settings.cc2d.sdr_radii_mm)
write_table(landmarks, "cc2d_landmarks", results, floatfmt=".3g")
display(Markdown(markdown_table(landmarks, floatfmt=".3g")))
display(Markdown("The paper (ISBI 2015 cephalograms, one labelled image):\n\n"
                 + markdown_table(paper_table("cc2d_table1").tail(2), floatfmt=".3g")))

# %% [markdown]
# ## Stage 2 against stage 1, same template
# CC2D (TPL) answers for its template only, so it is compared with CC2D-SSL's answers for that
# same support (the rows above average CC2D-SSL over three supports).

# %%
same_template = cc2d_predictions.template_comparison(settings, protocol)
write_table(same_template, "cc2d_stage2_vs_stage1", results, floatfmt=".3g")
display(Markdown(markdown_table(same_template, floatfmt=".3g")))

# %% [markdown]
# ## Ablation: which scales
# The paper's Table 3: the product over all scales against each scale left out, from the same query
# maps as CC2D-SSL's answers (every support and test query; one network, nothing retrained).

# %%
scales = cc2d_predictions.scale_ablation(settings, protocol)
write_table(scales, "cc2d_scale_ablation", results, floatfmt=".3g")
display(Markdown(markdown_table(scales, floatfmt=".3g")))
fig = figures.cc2d_scale_ablation(scales, settings.cc2d.sdr_radii_mm[-1])
save_figure(fig, "cc2d_scale_ablation", results)
plt.show()

# %% [markdown]
# ## Ablation: embedding length and window
# The paper's Table 2, on validation patients: stage 1 retrained with one setting changed (every
# variant, the release's settings included, for the same shorter run from the same seed), each
# scored with the validation protocol's first support on every validation query. It trains, so it
# is not run here: `python -m rprloc_core.experiments.cc2d_ablation --profile demo` made the table,
# and the release's manifest holds it.

# %%
training_ablation = cc2d_predictions.training_ablation(settings)
if training_ablation is None:
    display(Markdown("*No training ablation in this release or training folder.*"))
else:
    write_table(training_ablation, "cc2d_training_ablation", results, floatfmt=".3g")
    display(Markdown(markdown_table(training_ablation, floatfmt=".3g")))

# %% [markdown]
# ## What it says
# Computed from the tables above:

# %%
display(Markdown(findings.cc2d_findings(cc2d_methods.table, same_template, scales, cc2d_predictions.SSL_LABEL,
                                        cc2d_predictions.TPL_LABEL, profile, training_ablation)))

# %% [markdown]
# ## Why CC2D trails RPR-Loc here
# - **What each method learns.** CC2D finds a landmark by what it looks like at five scales. The
#   extreme points of soft-tissue organs are defined by the organ's edge, which at 4-6 mm voxels
#   carries little texture of its own: the top of the brainstem or the lateral edge of a parotid
#   looks much like the tissue around it, so the product of the maps peaks at a similar-looking
#   place nearby (the brainstem row of the figure above: close in the axial plane, off in height). The
#   mandible, bone with a distinctive shape, is where CC2D-SSL matches or beats RPR-Loc. RPR-Loc regresses
#   the offset from any patch to the landmark: it learns the layout of the head, so it can place a
#   point where nothing local marks it.
# - **Resolution and training.** The paper's CC2D worked on 0.1 mm cephalograms with an ImageNet
#   VGG19 trained for thousands of steps on a GPU; here stage 1 is a small U-Net on a 6 x 4 x 4 mm
#   grid trained for 1,000 steps, and its validation loss was still falling slowly when the steps
#   ran out (the training figure). The ablation shows how much the shorter runs change with L and
#   the window. Training budget matters here: the first release (window 9, 500 stage-1 and 2,000
#   TPL steps on the CPU) scored 31.6 % (CC2D-SSL) and 22.1 % (TPL) mean IoU on these pairs; this
#   one (window 13, 1,000 and 3,000 steps) scores the rows above.
# - **The TPL stage** can only learn what stage 1 told it about the training patients (its targets
#   are stage 1's answers, which on the test queries are about 2.5 cm off on average), and it answers
#   for one template only. It improves on stage 1 in the paper because a detector averages
#   consistent pseudo-labels over many images; the same-template table says whether it does so
#   here. Its validation error against stage 1's answers levelled off at about 4 voxels.

