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
# # 08 · The references: atlas registration and a supervised detector
#
# Two references frame RPR-Loc. Below it, what a user would try first; above it, what labelled
# data buys.
#
# **Atlas registration.** With one labelled CT and a new scan, the tool most people reach for first is registration: align
# the labelled scan (the atlas, here RPR-Loc's support) to the new one and carry its organ masks
# over. This notebook measures that on the same supports and queries as RPR-Loc
# (`rprloc_core.baselines.registration`, SimpleITK):
#
# - a translation, rigid or affine transform, initialised by the images' moments (centres of mass
#   and principal axes of the intensity);
# - mean squares on the intensity-mapped volumes (CT to CT: same modality), evaluated on 1 % of the
#   voxels drawn with a fixed seed, regular-step gradient descent, a pyramid shrinking the volumes
#   4x, 2x then 1x;
# - each support mask resampled into the query (nearest neighbour), its six extreme points the
#   prediction, scored exactly like RPR-Loc's.
#
# The transform and the number of levels are chosen on validation patients (the first training
# support of the validation protocol, every validation query); the test queries only report.
#
# **A supervised detector** (`rprloc_core.detector`), the upper bound of the comparison, in the
# spirit of the paper's Retina U-Net (a one-stage detector with segmentation supervision), sized
# for a CPU: a 3D U-Net on the working grid pooled 2x (6 x 4 x 4 mm) that segments the four organs
# and, at every voxel inside an organ, regresses the distances to the six faces of its box. It
# learns from the 170 training patients' masks (crops around the organs, mirrored left-right with
# the parotids swapped); the validation patients pick its checkpoint (lowest validation loss) and
# the rule that turns its outputs into a box. Unlike every other method here it needs labelled
# scans and no support. Its weights are released in `weights/openkbp-han-detector/` with a
# manifest and a model card; retraining: `python -m rprloc_core.experiments.detector_predictions`.
# The paper's Retina U-Net row keeps the paper's numbers (not reproduced: a different detector).

# %% tags=["parameters"]
profile = "demo"
overrides = {}     # profile settings to change
parallel = True    # two worker processes, one thread each (2-core CPU)

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from rprloc_core.evaluation.protocol import one_shot_protocol, validation_protocol
from rprloc_core.experiments import detector_predictions, figures, findings, tables
from rprloc_core.paths import results_dir
from rprloc_core.reporting import markdown_table, save_figure, write_table
from rprloc_core.settings import load_settings

settings = load_settings(profile, overrides)
results = results_dir(profile)
protocol = one_shot_protocol(settings)
validation = validation_protocol(settings)
print(f"validation: support {validation.supports[0]} (training split), {len(validation.queries)} queries")
print(f"test: supports {list(protocol.supports)}, {len(protocol.queries)} queries")

# %% [markdown]
# ## Choosing the registration on validation patients

# %%
candidates, chosen = tables.registration_validation(settings, validation, parallel=parallel)
write_table(candidates, "registration_validation", results, floatfmt=".3g")
display(Markdown(markdown_table(candidates, floatfmt=".3g")))
print(f"chosen (best mean IoU on validation): {chosen}")

# %% [markdown]
# ## The supervised detector: training and the box rule, on validation patients
# Its training history comes with the weights (the release's manifest); the IoU on the right is
# measured on the coarse grid while training, only to watch it learn.

# %%
detector_predictions.ensure_model(settings)
history = detector_predictions.history(settings)
fig = figures.detector_training(history)
save_figure(fig, "detector_training", results)
plt.show()

# %% [markdown]
# Two rules turn the network's outputs into a box: the box of the segmented organ (its largest
# connected component, upsampled to the working grid), or the median of the face distances that
# its voxels regress. Both on every validation patient; the better mean IoU is used on the test
# queries.

# %%
rules, detector_rule = detector_predictions.rule_validation(settings, validation.queries)
write_table(rules, "detector_validation", results, floatfmt=".3g")
display(Markdown(markdown_table(rules, floatfmt=".3g")))
print(f"chosen (best mean IoU on validation): {detector_rule}")

# %% [markdown]
# ## Registration and the supervised detector against RPR-Loc on the test queries
# Same supports, same queries, same metrics as Table 3; seconds per organ from each method timed
# alone on the same queries with one thread (a registration, or one pass of the detector, serves
# all organs of a query, so its time is divided by the organs, as RPR-Loc's batched call is). The
# detector uses no support: it is scored once per query, so it has no SD over supports.

# %%
references = tables.references_table(settings, protocol, chosen, parallel=parallel, detector_rule=detector_rule)
tables.write_paper_table(references, "references_methods", results)
display(Markdown(markdown_table(references.table[["method", "organ", "iou_pct", "iou_pct_sd_over_supports",
                                                  "awd_mm", "time_s", "paper_iou_pct", "paper_awd_mm"]],
                                floatfmt=".3g")))

# %%
fig = figures.table3_chart(references.table, references.extra["order"])
save_figure(fig, "references_methods", results)
plt.show()

# %%
fig = figures.detector_example(settings, protocol.queries[0], detector_rule)
save_figure(fig, "detector_example", results)
plt.show()

# %%
display(Markdown(findings.references_findings(references.table, chosen, profile, detector_predictions.LABEL)))
