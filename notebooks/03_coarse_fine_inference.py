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
# # 03 · One-shot localization: coarse and fine steps (paper Table 2)
#
# One support image with its organ masks; for each organ, the six extreme points of its box are the
# landmarks. In a query image, K random non-air starts per landmark move by
# `c1 = c0 + r_c tanh(p_s - p_q(c0))` with the coarse model Mc, then either again with Mc ("two /
# three steps") or once with the fine model Mf. The prediction is the mean of the K final positions,
# the predicted box spans the six predicted points. Metrics as in the paper: IoU of the boxes in the
# query's voxel coordinates and AWD (mean absolute wall distance, mm).
#
# One-shot results depend on the support: every number here is averaged over the test queries for
# each of several support images (drawn from the validation split with a fixed seed), then the
# mean and the spread (SD) over supports are reported. The predictions are cached per (support,
# query) pair (`rprloc_core.evaluation.predictions`), so notebooks 04 and 05 read the same ones.

# %% tags=["parameters"]
profile = "demo"
overrides = {}     # profile settings to change, e.g. {"rprloc.inference.k": 10}
parallel = True
n_self = 6         # validation patients in the self-localisation test

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from rprloc_core import gui
from rprloc_core.data import dataset
from rprloc_core.evaluation.protocol import one_shot_protocol, validation_protocol
from rprloc_core.experiments import (
    answer_checks,
    error_analysis,
    few_shot,
    figures,
    findings,
    models,
    rprloc_predictions,
    schedules,
    tables,
)
from rprloc_core.experiments.paper import STAGE_LABELS, paper_mean
from rprloc_core.paths import results_dir
from rprloc_core.reporting import markdown_table, save_figure, write_table
from rprloc_core.rprloc.config import RELEASE_REMAINING_MOVE_WARN_MM
from rprloc_core.settings import load_settings

settings = load_settings(profile, overrides)
results = results_dir(profile)
protocol = one_shot_protocol(settings)
print(f"supports (validation): {list(protocol.supports)}")
print(f"queries (test): {len(protocol.queries)} patients")

# %% [markdown]
# ## Run every (support, query) pair
# Extreme and diagonal points: K_max random starts per landmark take the first coarse step (Table 1
# reads it at every K up to K_max); the first K of them take two more coarse steps and, from the first
# coarse step, the fine step. Plus the profile's default schedule (`rprloc.inference`: its steps,
# ensemble and starts; chosen below on validation patients), run on its own, and each support's
# self-calibration (below), computed once per support and taken off the default's points.

# %%
rprloc_predictions.predict_all(settings, protocol, parallel=parallel)

# %% [markdown]
# ## Table 2: multi-step localization (extreme points, K = 15)

# %%
table2 = tables.table2(settings, protocol)
tables.write_paper_table(table2, "table2_multistep", results)
display(Markdown(markdown_table(table2.shown(["method"]), floatfmt=".1f")))

# %%
fig = figures.table2_chart(table2.table)
save_figure(fig, "table2_multistep", results)
plt.show()

# %%
display(Markdown(findings.table2_findings(table2.table)))

# %% [markdown]
# ## Choosing the default schedule on validation patients
# Table 2 follows the paper. What a user runs by default (`rprloc localize`, Table 3's RPR-Loc row
# and its timing, the widget below) was chosen here, on validation patients only: supports drawn
# from the training patients, every validation patient as a query, K as above, each candidate from
# the same seeded starts (a paired comparison). Candidates: the paper's mean of the K final
# positions, the authors' code's mean of the K query embeddings, K starts shared by every landmark
# (the first step then embeds K query patches instead of K x P), pooled starts (each landmark takes
# K distinct starts from one pool of 2K, 4K or 8K: uniform starts per landmark, few shared, at most
# the pool's patches embedded) and an "average" step that replaces the K runs by their mean so that
# later steps cost one patch per landmark. The IoU difference to Mc > Mf comes with a paired 95 %
# interval over (support, query, organ). Seconds per organ: one thread, inside the worker processes
# that run the comparison (the benchmark below times the chosen schedule alone). Two earlier
# candidates (shared starts with the mean of positions: -1.4 ± 0.8 points; Mc > Mc > avg > Mf > Mf:
# +0.2 ± 1.4) were dropped to keep `make reproduce` short; the module `experiments.schedules` keeps
# their numbers. With the release of 2026-11-28 the table below shows a second fine move
# (Mc > avg > Mf > Mf) ahead of the default on these 3 supports; it was then tested on 9 training
# supports x the 33 validation queries against a rule written first (>= +1 point on the paper's
# box, no larger AWD, up on >= 7 of 9, no loss with the size prior): +0.03 ± 1.45 points (5 of 9
# up), AWD +0.26 mm, size prior -0.35. Not adopted; the default stays Mc > avg > Mf. Once
# self-calibration (below) was the default, the table's last row (the calibrated default) still
# trailed the uncalibrated second fine move on these 3 supports, so the second fine move was scored
# calibrated too (its bias from the same schedule; 9 training supports x 33 validation queries, rule
# written first: +1 point over the calibrated default, no larger AWD, up on >= 7 of 9): -0.57 ±
# 1.95 points (5 of 9 up), AWD +0.34 mm, size prior -0.66. The 3 supports' lead is within their
# spread; the default stays.

# %%
validation = validation_protocol(settings)
schedules.predict_all(settings, validation, k=settings.rprloc.inference.k, parallel=parallel)
schedule_table = schedules.schedule_table(schedules.per_query(settings, validation, settings.rprloc.inference.k))
write_table(schedule_table, "schedule_validation", results, floatfmt=".3g")
display(Markdown(markdown_table(schedule_table, floatfmt=".3g")))
default = schedules.default_schedule(settings)
fig = figures.schedule_tradeoff(schedule_table, default.label)
save_figure(fig, "schedule_validation", results)
plt.show()
display(Markdown(findings.schedule_findings(schedule_table, default.label)))

# %% [markdown]
# ### Self-calibration: the support's own bias taken off (adopted 2026-11-28)
# The self-localisation below shows the networks misplacing landmarks even when the query is the
# support, with a signed bias (most of it along z). Part of that error belongs to the landmark's
# look, not to the query, so it should recur in every query. Self-calibration measures it once per
# support: the support is localised in itself with the default schedule (3 runs from their own
# seeded starts, uniform over the support as over a query), and a share of each landmark's mean
# signed error is taken off the query's prediction (`rprloc.self_calibration`). It needs nothing
# but the one labelled support.
#
# Scored on validation patients only, each step with its rule written before scoring (scratch
# scripts outside the package; the numbers are kept here). Paired IoU differences to the default
# schedule, mean ± SD over supports, the same seeded query starts:
#
# | supports (training patients) x 33 validation queries | full bias taken off | half the bias | rule |
# |---|---|---|---|
# | 9 (as for the other fixes) | +1.14 ± 1.65 (7 of 9 up), AWD -0.09 mm; size prior +0.75 | +1.15 ± 1.01 (8 of 9), AWD -0.19; size prior +0.57 | full: >= +1, no larger AWD, >= 7 of 9, size prior not lower: passed |
# | 15 fresh | +0.48 ± 3.03 (9 of 15), AWD +0.04; size prior +0.27 | +0.77 ± 1.86 (12 of 15), AWD -0.16; size prior +0.48 | full: >= +0.5, >= 10 of 15, no larger AWD: **failed** |
# | 20 never used for a choice | +0.30 ± 4.41 (15 of 20), AWD +0.19; size prior -0.62 | **+0.64 ± 2.43 (17 of 20), AWD -0.11; size prior +0.03** | half (written after the 15, hence new supports): >= +0.5, >= 14 of 20, no larger AWD, size prior not lower: **passed** |
#
# The full correction failed its confirmation: one support's bias, from 3 runs, is noisy, and
# taking all of it off adds that noise (its spread over supports is twice the half's). Half the
# bias passed on supports never used before, so it is the default (`self_calibration = 0.5`,
# the CLI's `--self-calibration`). Reported only: one run instead of 3 loses (-0.1 and +0.78 on
# the 15 and 9 with the full bias), the z axis alone gains nothing (-0.3 to +0.3), 6 runs with
# half the bias +0.71 on the 20. Per organ (half the bias, all three sets): brainstem +1.7 to
# +2.2 points, the parotids +0.2 to +1.7, the mandible -0.6 to +0.3. It is a small step, not the
# missing 15 points: most of the error across patients is not the networks' own bias.
#
# Costs: 3 localisations of the support in itself, once per support (the benchmark times them).
# A series of queries from one command pays them once; a single query from the CLI pays them with
# the support's embeddings. Where it does not apply: the few-shot table (fused supports; left out at
# every n so that the fusions compare the same runs), the answer checks (they judge the networks'
# own points, where their threshold was chosen), the centre votes of notebook 04 and the widget's
# K / r views (the paper's steps) are uncalibrated. The schedule table above has the calibrated
# default as its last row, on this notebook's 3 validation supports.

# %% [markdown]
# ### Why the numbers fall short of the paper's, with evidence
# Three measurements, none of them on the test queries' tuning:
#
# 1. **The ceiling of box transfer** on the same supports and queries: the support's box, of the
#    support's size, moved so that its centre sits on the query's true box centre. A method that
#    found every organ's centre exactly would score this; the gap between it and Mc + Mf is the
#    localisation error, the gap between it and 100 % is the support's shape.
# 2. **Self-localisation** on validation patients: each is its own support and query, so the
#    networks are the only possible source of error. The signed error per axis shows a bias, the
#    absolute error its size, and each run's error against its start's distance shows whether
#    moves from far away fall short.
# 3. **What the networks learned**: their validation losses next to the localisation error.
# 4. **What the paper's level asks of the centres**: the ceiling's box moved off the true centre
#    by random errors of a known size (normal, the same SD on every axis, 64 seeded draws per box),
#    next to the default schedule's own centre errors on the same queries, and to the box centres
#    of the self-localisation test (2.), where only the networks can err.

# %%
oracle = error_analysis.oracle_table(settings, protocol)
write_table(oracle, "oracle_box_transfer", results)
display(Markdown(markdown_table(oracle[["organ", "iou_pct", "iou_pct_sd_over_supports", "awd_mm", "n_queries"]],
                                floatfmt=".1f")))

# %%
per_point, per_run = error_analysis.self_localisation(settings, dataset.case_ids(settings, "validation")[:n_self],
                                                      protocol.organs)
axis_errors = error_analysis.axis_error_table(per_point)
write_table(axis_errors, "self_localisation_axis_errors", results)
display(Markdown(markdown_table(axis_errors, floatfmt=".1f")))
fig = figures.self_localisation_errors(axis_errors, per_run)
save_figure(fig, "self_localisation_errors", results)
plt.show()
display(Markdown(findings.error_analysis_findings(axis_errors, oracle, table2.table)))

# %%
centre_errors = error_analysis.centre_error_table(error_analysis.centre_error_transfer(settings, protocol),
                                                  protocol.organs)
write_table(centre_errors, "centre_error_ceiling", results)
display(Markdown(markdown_table(centre_errors, floatfmt=".1f")))
same_scan = error_analysis.axis_error_table(error_analysis.box_centre_errors(per_point), count="n_boxes")
write_table(same_scan, "self_localisation_centre_errors", results)
display(Markdown(markdown_table(same_scan, floatfmt=".1f")))
paper_iou = paper_mean("rprloc_table2", method=STAGE_LABELS["fine"])
fig = figures.centre_error_ceiling(centre_errors, paper_iou, protocol.organs,
                                   same_scan_rms_mm=error_analysis.overall_rms_mm(same_scan, "Mc + Mf"))
save_figure(fig, "centre_error_ceiling", results)
plt.show()
display(Markdown(findings.centre_error_findings(centre_errors, paper_iou,
                                                error_analysis.sd_for_iou(centre_errors, paper_iou), same_scan)))

# %% [markdown]
# For scale: OpenKBP's CT has a median in-plane spacing of 3.9 mm and 2.5 mm between slices
# (notebook 01's dataset table), so the paper's level asks RPR-Loc to place an organ's centre in
# another patient to within about one native voxel per axis. Self-localisation, where the query is
# the support itself and only the networks can err, already leaves more than that at the box
# centres (the last finding above). The few-shot table below shows what more supports buy on the
# same scale.

# %%
training = tables.pnet_training_table(settings, models.training_summaries(settings))
display(Markdown(findings.training_evidence(settings, table2.per_query, training)))

# %% [markdown]
# ### Fixes at inference time, measured and not adopted (2026-11-27)
# Both were scored with the models released on 2026-11-27 and the default schedule on validation
# patients only: 9 training patients as supports x the 33 validation queries, every candidate from the same seeded
# starts; the candidate was picked on 6 supports and confirmed on the other 3 (this notebook's
# validation supports). The rule, written before scoring: >= +1 IoU point (paper's box, mean paired
# difference over supports) with no larger AWD and up on at least 5 of the 6, then >= +0.5 on the 3.
# The scripts were scratch work and are not part of the package; the numbers are kept here.
#
# - **A gain on the moves.** The self-localisation above shows moves that fall short (z -12.8 mm
#   after one Mc step), so each step's move was scaled by a gain (r -> g r): Mc by 1.1 or 1.2 (all
#   axes, or z only), Mf by 1.15 or 1.3 (likewise), 25 cells. Every gain above 1 loses: the best, Mf
#   x 1.15 along z, -0.3 ± 0.2 points on the 6 supports and -0.5 on the 3; Mc x 1.2 along z -1.4.
#   The shortfall is not a scale the networks got wrong; it is where they place the region.
# - **The support's embedding averaged over its neighbourhood.** Three supports fused gain 8 points
#   (few-shot below), so some error may sit in the one support's embedding. Each landmark's
#   embedding was averaged over 27 positions around it (offsets of 0 or ±1 or ±2 model voxels per
#   axis, symmetric, so the mean position is the landmark's). Best: ±2 voxels for Mc and ±1 for Mf,
#   +0.8 ± 1.3 points on the 6 supports (4 of 6 up; AWD 9.22 -> 9.00 mm) and +0.95 ± 1.2 on the 3
#   (8.30 -> 8.15 mm); with the size prior +0.7 and +0.5. Consistent, but under the rule, and it
#   costs 27 support patches per landmark (about 2 s per organ on this machine when the support is
#   embedded with each query): not adopted. The averaging buys a fraction of what a second
#   patient's support buys, so most of the few-shot gain comes from anatomy that one patient cannot
#   stand for, not from noise in its patches.
#   Measured again on 2026-11-28, before this entry was read, with a wider cube (±2 coarse voxels,
#   ±12 mm along z and ±8 mm in-plane, for both models) on 24 other training supports (the 9 and the
#   15 below), rule written first (+1.0 on the 9 with 7 up, then +0.5 on the 15 with 10 up): +1.10 ±
#   1.67 points on the 9 (7 up, AWD -0.27 mm), +0.54 ± 1.01 on the 15 (11 up); 7-centre stars of ±1
#   to ±4 voxels +0.31 to +0.91, the coarse model alone +0.45, the fine alone +0.77. It scraped past
#   that day's rule, but it is this lever, at this size again (about +0.8 points over all 33
#   supports measured): adopting it now would pick the rule after the result, so it stays out.
#
# Two more, later the same day, on the same 9 supports x 33 validation queries (default schedule, the
# same seeded starts), each with its rule written before scoring: to go on to a confirmation on 15
# fresh training supports, a candidate had to gain on the paper's box and on the size-prior box
# (w 0.5), with no larger AWD and up on at least 8 of the 9. Neither passed.
#
# - **Left-right mirrored test-time augmentation.** The query and the support (volume and
#   landmarks) mirrored along x, localised again, the points mirrored back and averaged with the
#   plain run's. Paper's box +1.1 ± 0.7 points (9 of 9 supports up, AWD -0.34 mm), size-prior box
#   +0.8 ± 0.5 (8 of 9, AWD -0.22 mm), against a rule of +1.0 on both; the mirrored run alone +0.1 /
#   +0.4. It doubles every patch. As the paper's box (Table 2's) passed its part, that part alone was
#   then asked of 15 fresh training supports (rule written first: >= +1.0, no larger AWD, up on >= 12
#   of 15): +0.8 ± 1.1 points, up on 11 of 15, AWD -0.21 mm (size prior +0.6 ± 0.7). It fails;
#   not adopted: under a point, at twice the cost.
# - **Pseudo-supports (still one labelled support).** The support's landmarks were first localised
#   in 2, 4 or 8 unlabelled training patients, and the query was localised with the embeddings of
#   the support and these pseudo-supports averaged, as the few-shot table below fuses labelled
#   supports (rule: +2 points on the paper's box, +1.5 with the size prior). n = 2: -1.3 ± 1.4
#   points; n = 4: +0.1 ± 0.8; n = 8: -0.1 ± 1.8 (size prior -1.4, -0.6, -0.1). Landmarks that
#   RPR-Loc itself placed carry its error into every pseudo-support, so averaging them buys nothing.
#   The few-shot gain needs supports whose landmarks come from their own labels.
#
# One more (2026-11-27, same 9 supports x 33 validation queries, rule written before scoring: +2.0
# points on the paper's box, lower AWD, up on at least 8 of 9, then a confirmation on the 15 fresh
# supports):
#
# - **Atlas registration as the fine model's start.** Notebook 08's chosen registration (affine,
#   support to query) maps each support mask into the query; its extreme points gave the fine model
#   its start instead of the coarse step. Registration's errors come from a global fit, not from a
#   patch's look, so they might have been the ones Mc does not make. On these supports registration
#   alone scores 29.1 % (default schedule 38.4 %). One fine move from its points: -5.6 ± 3.0 points
#   (0 of 9 up, AWD +3.1 mm); two fine moves: -3.6 ± 2.1; one fine move from halfway between the
#   registration's point and the coarse runs' average: -1.1 ± 1.3 (1 of 9); the mean of the default's
#   and the registration's points: -3.7 ± 3.2. With the size prior, likewise (-1.2 to -6.2). It fails.
#   The registration's extreme points lie 36.5 mm from the true ones on average; one fine move brings
#   them to 28.7 mm and two to 27.0, where the default schedule ends at 23.7. Not adopted; no
#   confirmation run.
#
# One more (2026-11-29, the same 9 supports x 33 validation queries, seeded starts, rule written
# before the scorer: with self-calibration, +1.0 point on the paper's box, up on >= 7 of 9, no
# larger AWD, size-prior box not lower; then +1.0 on 6 fresh supports, as it doubles the patches):
#
# - **Round-trip correction.** After the default schedule puts the support's landmarks s at q in
#   the query, the query serves as a support with landmarks q and they are localised back in the
#   support (same schedule, own seeded starts), giving s'. The round trip's error s' - s is known
#   without the query's labels; the answer is q minus w times it, on top of the self-calibration.
#   If the two directions erred independently, w = 0.5 would halve the error's variance. The round
#   trip misses by 11-17 mm on average (brainstem most). With self-calibration: w = 0.5 (the
#   candidate) **-0.02 ± 1.10 points** (4 of 9 up, AWD +0.22 mm, size prior +0.05); w = 0.25
#   +0.58 ± 0.61 (7 of 9); w = 1 -3.6 ± 2.0 (0 of 9). It fails. Without self-calibration the
#   round trip gains +0.9 (w = 0.5, against the uncalibrated default), about what self-calibration
#   gains, and the two do not add up: both mostly take off the networks' own bias, which the
#   support's self-localisation measures more cheaply. Not adopted.

# %% [markdown]
# ### Scattered fine starts: measured, kept as an option, not the default (2026-11-29)
# In the default schedule the "average" step collapses the K coarse runs to one position, so the
# fine model moves each landmark once, from one patch: its own error is never averaged. A "scatter"
# step (`rprloc.inference`, the CLI's `--steps coarse,scatter,fine --scatter-mm d`) instead draws K
# starts uniformly within ±d mm per axis of the coarse runs' mean, and the fine model moves from
# each; the answer is the mean of the K moves. Self-calibration runs the same schedule on the
# support, so the bias it takes off is the scattered schedule's own.
#
# Scored with the released models on validation patients only, the rule written before the scorer
# (scratch script outside the package; the numbers are kept here): paired IoU differences to the
# calibrated default, mean ± SD over supports, with self-calibration, the same seeded query starts.
#
# | supports (training patients) x 33 validation queries | d = 4 mm | d = 8 mm | d = 12 mm | d = 16 mm |
# |---|---|---|---|---|
# | 9 (stage 1: >= +1.0, >= 7 of 9 up, no larger AWD, size prior not lower) | +0.74 ± 0.34 (9 of 9) | +1.05 ± 0.38 (9 of 9) | **+1.29 ± 0.50 (9 of 9), AWD -0.38 mm; size prior +0.49** | |
# | 20 never used for a model choice (stage 2: >= +0.5, >= 14 of 20 up, no larger AWD) | | +0.37 ± 0.83 (14 of 20) | **+0.49 ± 1.16 (13 of 20), AWD -0.25 mm; size prior +0.25: fails** | +0.52 ± 1.59 (12 of 20) |
#
# d = 12 mm passed the first stage and missed the second by a hair on both counts, so the default
# stays Mc > avg > Mf. The gain is real but small (about +0.8 points over all 29 supports, every
# organ up by 0.3 to 0.6 on the 20), and it costs the fine model K patches per landmark instead of
# one: the schedule table above has it as a candidate on this notebook's 3 validation supports
# (uncalibrated: +0.4 points over the uncalibrated default at 0.32 instead of 0.03 s per organ,
# about 10 times the time). A user who has the time can ask for it. Reported only: without self-calibration
# it gains less (+0.5 to +0.7 points against the uncalibrated default), so part of its gain is a
# steadier bias estimate. In the same session a weight average ("soup") of the released models
# and their fine-tuned copies (notebook 02) gained +0.3 to +0.45 points on the 9, under its rule
# of +1.0; not adopted.

# %% [markdown]
# ## Beyond the paper: does the spread of the K runs flag a bad box?
# A user of the CLI sees no labels, but sees the K runs of every landmark. If they scatter widely
# the networks disagree with themselves, which should warn of a bad box. Here: the paper's Mc + Mf
# (K runs, mean of positions) on every test pair, each box's spread (the RMS distance of the runs to
# their mean, averaged over its six landmarks) against its true point error and IoU. A "bad box" is
# one under 10 % IoU (fixed before looking: such a box barely touches the organ); the ROC AUC says
# how well ranking by spread finds them (0.5: chance).

# %%
spread = error_analysis.run_spread(settings, protocol)
spread_summary = error_analysis.spread_table(spread)
write_table(spread_summary, "run_spread", results)
display(Markdown(markdown_table(spread_summary, floatfmt=".2f")))
fig = figures.run_spread_figure(spread, error_analysis.BAD_BOX_IOU_PCT)
save_figure(fig, "run_spread", results)
plt.show()
display(Markdown(findings.spread_findings(spread_summary, error_analysis.BAD_BOX_IOU_PCT)))

# %% [markdown]
# ## Beyond the paper: does the answer check itself? Organs cut by the scan or missing from it
# RPR-Loc always answers: in a scan without the organ the runs still stop somewhere, and the CLI
# would write a box. Two checks need no labels (`rprloc.answer_checks`). The engine clamps moves to
# the scan, so a landmark placed beyond it ends on the scan's edge; and from the answer the fine
# model can be asked once more where the landmark is: at a landmark it recognises it asks for a few
# millimetres, elsewhere for more. Every pair runs the default schedule on the whole query, on the
# query cut 10 mm below its lowest organ (every organ missing) and on the query cut through the
# middle of its brainstem. The warning threshold on the remaining move is chosen on the validation
# protocol (training supports, validation queries; the 90th percentile for organs in whole scans,
# so one found organ in ten is warned of); the test queries report how often each check fires.
# `rprloc localize` prints both warnings and writes them into each organ's `checks`.

# %%
answer_checks.predict_all(settings, validation, settings.rprloc.inference.k, parallel=parallel)
threshold_mm = answer_checks.warn_threshold(
    answer_checks.per_query(settings, validation, settings.rprloc.inference.k, score=False))
answer_checks.predict_all(settings, protocol, settings.rprloc.inference.k, parallel=parallel)
checks = answer_checks.per_query(settings, protocol, settings.rprloc.inference.k)
checks_table = answer_checks.checks_table(checks, threshold_mm)
write_table(checks_table, "answer_checks", results)
display(Markdown(markdown_table(checks_table, floatfmt=".3g")))
fig = figures.answer_checks_figure(checks, threshold_mm, answer_checks.VARIANTS)
save_figure(fig, "answer_checks", results)
plt.show()
display(Markdown(findings.answer_check_findings(checks_table, threshold_mm, RELEASE_REMAINING_MOVE_WARN_MM)))

# %% [markdown]
# ## Beyond the paper: few-shot
# The default schedule with more than one labelled support, fused two ways: the supports'
# embeddings of each landmark averaged before the moves (one run; what `localize` does with a list
# of supports), or one run per support with the predicted points averaged. The supports are the
# ones above plus further draws from the same validation pool; for n supports, every n-long cyclic
# window of that list is one support set, and the SD is over those sets. Test queries, reported only.
# Seconds per organ count the query's side: each support is embedded once and reused for every query
# (as the CLI and the widget do), so the embedding mean costs what one support costs.

# %%
few_shot.predict_all(settings, protocol, parallel=parallel)
few_shot_table = few_shot.few_shot_table(few_shot.per_query(settings, protocol), protocol.organs)
write_table(few_shot_table, "few_shot", results)
display(Markdown(markdown_table(few_shot_table, floatfmt=".3g")))
fig = figures.few_shot_chart(few_shot_table)
save_figure(fig, "few_shot", results)
plt.show()
display(Markdown(findings.few_shot_findings(few_shot_table)))

# %% [markdown]
# ## The method on real slices
# One landmark (the brainstem's superior extreme point), the first support, one query, a few of the
# K runs: the support patch (orange: Mc's patch, green dashed: Mf's patch), random starts with
# their Mc patches and the coarse move, then the fine move and the mean prediction.

# %%
fig = figures.method_on_real_ct(settings, protocol)
save_figure(fig, "method_on_real_ct", results)
plt.show()

# %% [markdown]
# ## Try it: K, r and the size prior
# The widget runs the default schedule on one of the first queries with the first support, for a
# chosen K and the models trained with other offset ranges r (notebook 02's r sweep; those models
# are warm-started from the main ones and trained briefly). Support embeddings and starts are
# computed once and every result is kept, so a change redraws at once: the runs before the schedule's
# average step are computed once for K_max runs per query and r pair, so a new K only averages their
# first K and takes the fine move from there (one patch per landmark). The size-prior slider (w,
# notebook 04; 0 is the paper's box) only redraws the boxes from the points already kept. Under
# papermill it runs once with its default values (the profile's K and w). It shows the networks'
# own points, without self-calibration (each r pair would need its own), as the paper's steps do.

# %%
widget, fig = gui.k_r_widget(settings, protocol)
save_figure(fig, "widget_default_view", results)
plt.show()

# %% [markdown]
# ## Effect of r
#
# Each r varied with the other at its main value; first support, the first `r_sweep_queries` queries, K as above.

# %%
r_table = tables.r_sweep_table(settings, protocol)
write_table(r_table, "r_sweep", results)
display(Markdown(markdown_table(r_table, floatfmt=".1f")))
display(Markdown("The sweep models other than the main pair were trained for only a few hundred steps from the "
                 "main models' weights: they show the direction of the effect of r, not a tuned optimum."))
