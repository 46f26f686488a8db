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

from rprloc_core.evaluation.protocol import one_shot_protocol, validation_protocol
from rprloc_core.experiments import (centre_votes, figures, findings, rprloc_predictions, schedules, size_prior,
                                     tables)
from rprloc_core.paths import results_dir
from rprloc_core.reporting import markdown_table, save_figure, write_table
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

# %% [markdown]
# ## Beyond the paper: the support's box size as a prior
# The box spans the six predicted points, so it rests on the worst point of each axis. The support's
# box size is a good guess for the query's: notebook 03's oracle, which moves the support's box onto
# the true centre and keeps its size, reaches far more than the method. Here the predicted box is
# redrawn around the **mean of its six points** with an extent of **w x the support's box + (1 - w) x
# the predicted one** (`experiments.size_prior`, `geometry.landmarks.with_support_box_size`): w = 0
# keeps the predicted extent, w = 1 the support's. The networks and their points are unchanged; only
# the box built from them differs, and it could follow any method that predicts extreme points.
#
# The weight is chosen on **validation patients** (the default schedule's validation predictions of
# notebook 03: 3 training supports x the validation queries); the "IoU vs paper box" column is the
# mean and SD over supports of the paired per-support difference. A scratch run over 9 training
# supports gave the same order (profile comment at `size_prior_weight`); the profile uses w = 0.5.
# The weight was chosen before self-calibration (notebook 03) moved the points, so it was checked
# again once that was the default (2026-11-28, a scratch run: 9 training supports x 33 validation
# queries, calibrated points; rule written first: another w only at >= +0.5 points over 0.5, no
# larger AWD, up on >= 7 of 9). w = 0.25 / 0.375 / 0.5 / 0.625 / 0.75 give 41.6 / 42.0 / 42.2 /
# 42.2 / 42.1 % (the best, 0.625, +0.02): the curve is flat near 0.5, as it was without
# calibration, and w stays 0.5.

# %%
validation = validation_protocol(settings)
k = settings.rprloc.inference.k
schedules.predict_all(settings, validation, k=k)  # a no-op after notebook 03
prior_validation = size_prior.rule_table(size_prior.validation_per_query(settings, validation, k), validation.organs)
write_table(prior_validation, "size_prior_validation", results)
display(Markdown(markdown_table(prior_validation, floatfmt=".1f")))

# %%
fig = figures.size_prior_chart(prior_validation, size_prior.chosen_weight(settings))
save_figure(fig, "size_prior_validation", results)
plt.show()

# %% [markdown]
# **Where the box's centre comes from.** Each predicted point minus its support landmark votes for
# how far the organ moved from support to query; the box above sits on the mean of the organ's six
# votes. Other centres were compared on the same validation predictions (w as chosen, rules written
# down before scoring: adopt one only at >= +1 IoU point over the profile's, no more AWD, better on
# every support): the median of the six (robust to one wild point); the organ's mean pulled 25 % or
# 50 % toward the query-wide mean of every organ's votes (the organs move together: one head);
# the query-wide mean alone (a rigid shift of all four boxes); and, per axis, the two points that
# bound the box on that axis weighted x2 or x0.5 against the other four
# (`size_prior.CENTRE_RULES`, `size_prior.recentred`). The last column is the paired difference to
# the profile's rule per support.

# %%
centre_per_query = size_prior.centre_rules_per_query(settings, validation, k, size_prior.chosen_weight(settings))
profile_centre = f"size prior {size_prior.chosen_weight(settings):g}, centre: {next(iter(size_prior.CENTRE_RULES))}"
centre_rules = size_prior.rule_table(centre_per_query, validation.organs, reference=profile_centre,
                                     column="IoU vs profile's centre (pts)")
write_table(centre_rules, "size_prior_centre_rules", results)
display(Markdown(markdown_table(centre_rules, floatfmt=".1f")))
display(Markdown(findings.centre_rule_findings(centre_per_query, profile_centre)))

# %% [markdown]
# When it was run (2026-11-27) none passed: each organ's error is its own, the organs do not share
# one shift closely enough for their votes to help one another, and a wild point is rare enough
# that a median loses more than it saves.
#
# **More votes per organ.** If each point's error were its own, more landmarks per organ would
# average it away. Every organ also gets its mask's centroid and the six points midway between the
# centroid and each extreme point (13 landmarks, all localised with the default schedule from the
# same shared starts: about twice the patches), and the box (extent from the six extreme points, w as
# chosen) moves with the mean vote of a subset (`centre_votes.VOTES`, `centre_votes.voted_boxes`).
# Same rule as above, written down before scoring.

# %%
centre_votes.predict_all(settings, validation, k)
votes_per_query = centre_votes.per_query(settings, validation, k, size_prior.chosen_weight(settings))
profile_vote = f"size prior {size_prior.chosen_weight(settings):g}, centre: {centre_votes.PROFILE_VOTE}"
vote_table = size_prior.rule_table(votes_per_query, validation.organs, reference=profile_vote,
                                   column="IoU vs six extreme points (pts)")
write_table(vote_table, "size_prior_centre_votes", results)
display(Markdown(markdown_table(vote_table, floatfmt=".1f")))
display(Markdown(findings.centre_rule_findings(votes_per_query, profile_vote)))

# %% [markdown]
# When it was run (2026-11-27) none passed, here and in a scratch run over 9 training supports
# (all 13 points +0.5 ± 1.2, up on 7 of 9; the centroid alone -3.9): more landmarks do not average
# the error away, so it is shared by the organ's landmarks (the whole region matched a few mm off),
# not each point's own: what is left of the box error is where the network places the organ's
# region as a whole. With the 10,000-step Mf the table above gives all 13 points +0.9 ± 0.7 (3 of 3
# supports), just under the rule, so it was tested once more before anything changed: 15 training
# supports never used for a choice (seeded draws from those with all four organs), every validation
# query, the rule written down first (>= +1 point, no more AWD, up on >= 12 of 15). All 13 points:
# +0.7 ± 0.8 points, up on 12 of 15, AWD 8.14 against 8.30 mm. It fails the rule, so the profile
# keeps the six extreme points, at half the patches. With the release of 2026-11-28 the table above
# gives all 13 points +0.6 ± 1.3 (not scored against a rule again: further from it than before).
#
# The test queries with the profile's weight (reported, not tuned), the default schedule, K and
# supports as in Table 2. Notebook 05 tries the same prior on template matching.

# %%
weight = size_prior.chosen_weight(settings)
prior_test = size_prior.rule_table(size_prior.test_per_query(settings, protocol, weight), protocol.organs)
write_table(prior_test, "size_prior_test", results)
display(Markdown(markdown_table(prior_test, floatfmt=".1f")))

# %%
display(Markdown(findings.size_prior_findings(prior_validation, prior_test, weight, size_prior.RPRLOC_DEFAULT)))
