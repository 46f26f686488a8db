"""One function per figure of the notebooks. The `settings, protocol` functions read the data
and the cached predictions themselves (a notebook cell is one call); the `*_panel` and `*_chart`
functions draw what they are given.

    spacing_distribution, before_after_resampling, intensity_map_figure   notebook 01
    pnet_loss_curves                                                      notebook 02
    table2_chart, method_on_real_ct, self_localisation_errors,
    centre_error_ceiling, schedule_tradeoff, run_spread_figure,
    few_shot_chart                                                        notebook 03 (paper Table 2, beyond)
    table1_chart, mandible_diagonal_vs_extreme                            notebook 04 (paper Table 1)
    autoencoder_training, autoencoder_reconstructions, table3_chart,
    figure4                                                               notebook 05 (paper Table 3, Figure 4)
    cc2d_training, cc2d_similarity_maps, cc2d_scale_ablation               notebook 06 (CC2D)
    pin_training, pin_convergence, pin_landmark_errors                    notebook 07 (PIN)
    detector_training, detector_example                                   notebook 08 (supervised reference)
    accuracy_against_time                                                 notebook 09 (summary)
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

from rprloc_core.data import cases, dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.data.preprocess import INTENSITY_KNOTS_HU, INTENSITY_VALUES, intensity_map
from rprloc_core.evaluation.protocol import true_landmarks
from rprloc_core.evaluation.scoring import score_prediction
from rprloc_core.experiments import (
    cc2d_predictions,
    detector_predictions,
    models,
    pin_predictions,
    rprloc_predictions,
    template_predictions,
)
from rprloc_core.experiments.error_analysis import rms_over_axes
from rprloc_core.experiments.paper import RPRLOC_LABEL, TEMPLATE_LABELS
from rprloc_core.geometry.boxes import bounding_box, box_from_landmarks, mask_centroid
from rprloc_core.geometry.landmarks import EXTREME_POINT_NAMES, diagonal_points, extreme_points
from rprloc_core.plotting import (
    ORGAN_COLOURS,
    VIEW_AXES,
    VIEWS,
    boxes_in_views,
    draw_points,
    organ_legend,
    orthogonal_views,
    patch_rectangle,
    show_slice,
)
from rprloc_core.rprloc.training import plot_history

# ---------------------------------------------------------------------------------- notebook 01

def spacing_distribution(settings, geometry):
    """Histograms of the original voxel spacing per axis, with the working spacing marked."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    for ax, axis in zip(axes, "zyx"):
        ax.hist(geometry[f"spacing_{axis}_mm"], bins=20, color="tab:blue", alpha=0.7, label="original")
        ax.axvline(settings.preprocess.spacing_zyx["zyx".index(axis)], color="tab:red", lw=2, label="after resampling")
        ax.set_xlabel(f"spacing along {axis} (mm)")
        ax.set_ylabel("cases")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Voxel spacing of the {len(geometry)} cases ({settings.name})")
    fig.tight_layout()
    return fig


def before_after_resampling(settings, organs=(*HAN_ORGANS, "SpinalCord")):
    """Orthogonal slices through the brainstem of the first validation patients, on the original
    grid (top row of each pair) and on the working grid (bottom row), with organ contours."""
    examples = dataset.case_ids(settings, "validation", organ="Brainstem")[: settings.figures.n_example_cases]
    root = dataset.cases_root(settings)
    fig, axes = plt.subplots(2 * len(examples), 3, figsize=(10, 6.2 * len(examples)), squeeze=False)
    shown = set()
    for i, case_id in enumerate(examples):
        original = cases.load_image(root, case_id)
        contoured = [o for o in organs if o in cases.case_organs(root, case_id)]
        shown.update(contoured)
        labels = {o: sitk.GetArrayFromImage(cases.load_label(root, case_id, o)) for o in contoured}
        spacing = np.asarray(original.GetSpacing())[::-1]
        orthogonal_views(axes[2 * i], sitk.GetArrayFromImage(original), spacing,
                         mask_centroid(labels["Brainstem"]), labels,
                         title=f"{case_id} original {np.round(spacing, 2).tolist()} mm")
        pre = dataset.load_case(settings, case_id)
        orthogonal_views(axes[2 * i + 1], pre.hu, pre.spacing, mask_centroid(pre.labels["Brainstem"]),
                         {o: m for o, m in pre.labels.items() if o in organs},
                         title=f"{case_id} resampled {pre.spacing.tolist()} mm")
    organ_legend(fig, [o for o in organs if o in shown])
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return fig


def intensity_map_figure(settings):
    """The piecewise-linear HU map, and an axial slice of the first example patient after it."""
    case_id = dataset.case_ids(settings, "validation", organ="Brainstem")[0]
    pre = dataset.load_case(settings, case_id)
    hu_axis = np.linspace(-1100, 2000, 400)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(hu_axis, intensity_map(hu_axis), color="k")
    ax1.scatter(INTENSITY_KNOTS_HU, INTENSITY_VALUES, color="tab:red", zorder=3)
    ax1.set_xlabel("HU")
    ax1.set_ylabel("network input")
    ax1.set_title("piecewise-linear intensity map")
    centre = mask_centroid(pre.labels["Brainstem"]).round().astype(int)
    ax2.imshow(pre.volume.array[centre[0]], cmap="gray", vmin=0, vmax=1,
               extent=(0, pre.volume.shape[2] * pre.spacing[2], pre.volume.shape[1] * pre.spacing[1], 0))
    ax2.set_title(f"{case_id}: mapped intensities, axial slice")
    ax2.set_xticks([])
    ax2.set_yticks([])
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- notebook 02

def pnet_loss_curves(settings):
    """Training and validation MSE of every Pnet of the profile, one panel each."""
    configs = models.train_configs(settings)
    names = list(configs)
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.ravel(), names):
        plot_history(models.history(settings, name), ax=ax, distilled=bool(configs[name].teacher),
                     title=f"{name} (r = {configs[name].r_mm:g} mm)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- notebook 03

def table2_chart(table2):
    """Mean IoU and AWD over the organs of every Table 2 row (± SD over supports), next to the paper."""
    order = list(dict.fromkeys(table2.method))
    mean = table2[table2.organ == "Mean"].set_index("method").loc[order]
    x = np.arange(len(order))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))      # IoU and AWD each on its own scale
    for ax, metric, label in ((axes[0], "iou_pct", "IoU (%)"), (axes[1], "awd_mm", "AWD (mm)")):
        ax.bar(x - 0.2, mean[metric], 0.4, yerr=mean[f"{metric}_sd_over_supports"],
               label="this reproduction (mean ± SD over supports)")
        ax.bar(x + 0.2, mean[f"paper_{metric}"], 0.4, label="paper (HaN, their data)", color="lightgray")
        ax.set_xticks(x, [o.replace(" (", "\n(") for o in order], fontsize=7)
        ax.set_ylabel(f"mean over the 4 organs: {label}")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


POINT_WORDS = {"z_min": "inferior", "z_max": "superior", "y_min": "anterior", "y_max": "posterior",
               "x_min": "right", "x_max": "left"}


def method_on_real_ct(settings, protocol, organ: str = "Brainstem", point: str = "z_max"):
    """RPR-Loc on real slices, one landmark: the first support and query of the protocol, from the
    cached predictions (start, coarse step, fine step of the first K runs)."""
    support_id, query_id = protocol.supports[0], protocol.queries[0]
    support, query = dataset.load_case(settings, support_id), dataset.load_case(settings, query_id)
    run = rprloc_predictions.read(settings, support_id, query_id)
    organ = organ if organ in run.organs else run.organs[0]
    which = EXTREME_POINT_NAMES.index(point)
    k = settings.rprloc.inference.k
    stages = [run.organ_points(rprloc_predictions.stage_runs(run, s, k), organ)[:, which]
              for s in ("start", "coarse1", "fine")]
    configs = models.train_configs(settings)
    base = np.asarray(settings.preprocess.spacing_zyx, float)
    coarse_mm = np.asarray(configs["coarse"].patch_size) * base * configs["coarse"].downsample
    fine_mm = np.asarray(configs["fine"].patch_size) * base * configs["fine"].downsample
    return method_panel(support, query, extreme_points(support.labels[organ])[which], stages,
                        extreme_points(query.labels[organ])[which], coarse_mm, fine_mm,
                        landmark_name=f"{organ}, {POINT_WORDS[point]} extreme point")


def self_localisation_errors(axis_table, per_run):
    """Left: mean signed and mean absolute error per axis after each stage (query = support).
    Right: each run's error against its start's distance from the landmark (median per bin)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    stages = list(dict.fromkeys(axis_table.stage))
    x = np.arange(3)
    width = 0.8 / (2 * len(stages))
    for i, stage in enumerate(stages):
        part = axis_table[axis_table.stage == stage].set_index("axis").loc[["z", "y", "x"]]
        axes[0].bar(x + (2 * i) * width - 0.4 + width / 2, part.mean_signed_error_mm, width,
                    label=f"{stage}: mean signed error")
        axes[0].bar(x + (2 * i + 1) * width - 0.4 + width / 2, part.mean_absolute_error_mm, width, alpha=0.6,
                    label=f"{stage}: mean absolute error")
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_xticks(x, ["z (superior +)", "y (posterior +)", "x (patient left +)"])
    axes[0].set_ylabel("error of the mean of K runs (mm)")
    axes[0].legend(fontsize=7)
    bins = np.quantile(per_run.start_distance_mm, np.linspace(0, 1, 11))
    centres = (bins[:-1] + bins[1:]) / 2
    which = np.clip(np.digitize(per_run.start_distance_mm, bins) - 1, 0, len(centres) - 1)
    for column, label in (("error_Mc (one step)_mm", "after Mc (one step)"), ("error_Mc + Mf_mm", "after Mc + Mf")):
        medians = [np.median(per_run[column][which == b]) for b in range(len(centres))]
        axes[1].plot(centres, medians, marker="o", label=label)
    axes[1].plot(centres, centres, ls="--", color="gray", label="no move (error = start distance)")
    axes[1].set_xlabel("start's distance from the landmark (mm)")
    axes[1].set_ylabel("median error of one run (mm)")
    axes[1].legend(fontsize=7)
    fig.suptitle("Self-localisation on validation patients (each is its own support and query)", fontsize=9)
    fig.tight_layout()
    return fig


def centre_error_ceiling(table, paper_iou_pct: float, organs=HAN_ORGANS, same_scan_rms_mm: float | None = None):
    """The support's box on the true centre moved by random centre errors: IoU against the errors'
    SD per axis (mean and per organ), the paper's Mc + Mf level, and the default schedule's boxes
    placed at their centre's root mean square error (over the three axes). `same_scan_rms_mm`: the
    networks' own centre error within one scan (self-localisation), drawn as a vertical line."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    curve = table.dropna(subset=["sd_mm"]).sort_values("sd_mm")
    for organ in organs:
        ax.plot(curve.sd_mm, curve[f"{organ} IoU %"], lw=1, alpha=0.6, color=ORGAN_COLOURS.get(organ), label=organ)
    ax.plot(curve.sd_mm, curve["IoU %"], lw=2.5, color="k", marker="o", ms=4, label="mean over organs")
    ax.axhline(paper_iou_pct, ls="--", color="gray", lw=1)
    ax.text(curve.sd_mm.min(), paper_iou_pct + 0.8, f"paper, Mc + Mf: {paper_iou_pct:.1f} %", ha="left",
            fontsize=8, color="gray")
    rms_columns = [c for c in table.columns if c.startswith("centre_rms_")]
    for (_, row), marker in zip(table[table.sd_mm.isna()].iterrows(), ("s", "D")):
        rms = rms_over_axes(row[rms_columns])
        ax.plot([rms], [row["IoU %"]], marker=marker, ms=8, ls="none", color="tab:red",
                label=f"{row.method} ({row['IoU %']:.1f} %)")
    if same_scan_rms_mm is not None:
        ax.axvline(same_scan_rms_mm, ls=":", color="tab:purple", lw=1.5,
                   label=f"self-localisation, same scan: centre error {same_scan_rms_mm:.1f} mm")
    ax.set_xlabel("centre error: SD per axis (mm); markers at their root mean square error per axis")
    ax.set_ylabel("IoU % (test queries)")
    ax.set_ylim(0, 80)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("The support's box on the true centre, moved by random centre errors", fontsize=9)
    fig.tight_layout()
    return fig


def run_spread_figure(spread_frame, bad_iou_pct: float):
    """Each (support, query, organ) box: the spread of its K runs (known without labels) against its
    point error (left) and its IoU (right), coloured by organ; boxes under `bad_iou_pct` IoU ringed."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    bad = spread_frame.iou_pct < bad_iou_pct
    for organ, part in spread_frame.groupby("organ", sort=False):
        colour = ORGAN_COLOURS.get(organ)
        for ax, column in zip(axes, ("point_error_mm", "iou_pct")):
            ax.scatter(part.spread_mm, part[column], s=12, alpha=0.6, color=colour, label=organ)
    for ax, column in zip(axes, ("point_error_mm", "iou_pct")):
        ax.scatter(spread_frame.spread_mm[bad], spread_frame[column][bad], s=50, facecolors="none",
                   edgecolors="k", linewidths=0.8, label=f"IoU under {bad_iou_pct:g} %")
        ax.set_xlabel("spread of the K runs (RMS distance to their mean, mm)")
    axes[0].plot(*[[spread_frame.spread_mm.min(), spread_frame.spread_mm.max()]] * 2, ls="--", color="gray",
                 label="error = spread")
    axes[0].set_ylabel("mean landmark error (mm)")
    axes[1].set_ylabel("box IoU (%)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Does a wide spread of the K runs flag a bad box? (Mc + Mf, test queries, every support)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def answer_checks_figure(per_query_frame, threshold_mm: float, variants):
    """Left: the fine model's remaining move from each organ's answer, per scan variant (organs found
    in whole scans, missing from scans cut below them, cut by a scan ending mid-brainstem), with the
    warning threshold. Right: whole scans only, the box IoU against the remaining move, coloured by
    organ; boxes with a point on the scan's edge ringed."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    bins = np.logspace(np.log10(max(per_query_frame.remaining_move_mm.min(), 0.5)),
                       np.log10(per_query_frame.remaining_move_mm.max()), 40)
    for variant in variants:
        part = per_query_frame[per_query_frame.variant == variant]
        if len(part):
            axes[0].hist(part.remaining_move_mm, bins=bins, histtype="step", linewidth=1.5,
                         label=f"{variant} ({len(part)} organs)")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("remaining move of the fine model (mean over the organ's points, mm)")
    axes[0].set_ylabel("organs")
    whole = per_query_frame[per_query_frame.variant == variants[0]]
    for organ, part in whole.groupby("organ", sort=False):
        axes[1].scatter(part.remaining_move_mm, part.iou_pct, s=12, alpha=0.6, color=ORGAN_COLOURS.get(organ),
                        label=organ)
    edge = whole[whole.points_on_edge > 0]
    axes[1].scatter(edge.remaining_move_mm, edge.iou_pct, s=50, facecolors="none", edgecolors="k", linewidths=0.8,
                    label="a point on the scan's edge")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("remaining move (mm)")
    axes[1].set_ylabel("box IoU (%)")
    for ax in axes:
        ax.xaxis.set_major_locator(FixedLocator([1, 2, 5, 10, 20, 50, 100]))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.axvline(threshold_mm, ls="--", color="gray", label=f"warning above {threshold_mm:g} mm")
        ax.legend(fontsize=7)
    fig.suptitle("Does the answer check itself? Default schedule, test queries, every support", fontsize=9)
    fig.tight_layout()
    return fig


def few_shot_chart(table):
    """Mean IoU (and its SD over support sets) against the number of supports, per fusion."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    single = table[table.supports == 1]
    for fusion, part in table[table.supports > 1].groupby("fusion", sort=False):
        part = pd.concat([single, part]).sort_values("supports")
        ax.errorbar(part.supports, part["IoU %"], yerr=part["IoU SD over sets"], marker="o", capsize=3,
                    label=f"{fusion} of the supports")
    ax.set_xticks(sorted(table.supports.unique()))
    ax.set_xlabel("labelled supports")
    ax.set_ylabel("mean IoU over organs (%)")
    ax.legend(fontsize=8)
    ax.set_title("Few-shot RPR-Loc (default schedule, test queries)", fontsize=9)
    fig.tight_layout()
    return fig


def schedule_tradeoff(schedule_table, default_label: str | None = None):
    """Validation IoU against seconds per organ (log scale), one point per schedule; the paper's
    Mc > Mf and the chosen default are marked."""
    fig, ax = plt.subplots(figsize=(11, 4.2))
    # Points are numbered and named in a key beside the axes: several schedules cost about the same
    # and score about the same, and their names written next to the points overlapped.
    for i, row in enumerate(schedule_table.to_dict("records")):
        label = row["schedule"]
        style = dict(marker="*", s=180, color="C3") if label == default_label else \
            dict(marker="s", s=70, color="k") if i == 0 else dict(marker="o", s=40, color="C0")
        ax.scatter(row["s/organ"], row["IoU %"], zorder=3, label=f"{i + 1}. {label}", **style)
        ax.annotate(str(i + 1), (row["s/organ"], row["IoU %"]), xytext=(4, 3), textcoords="offset points",
                    fontsize=8)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_xscale("log")
    ax.set_xlabel("seconds per organ (one thread, support embedded once per pair)")
    ax.set_ylabel("mean IoU on validation patients (%)")
    ax.set_title("Inference schedules on validation patients (square: the paper's Mc > Mf; star: the default)",
                 fontsize=9)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- notebook 04

def table1_chart(table1):
    """Mean IoU and AWD against K for extreme points, diagonal points at K = 1, paper beside."""
    mean = table1[table1.organ == "Mean"]
    ext, diag = mean[mean.strategy == "Extreme"], mean[mean.strategy == "Diagonal"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, metric, label in ((axes[0], "iou_pct", "mean IoU (%)"), (axes[1], "awd_mm", "mean AWD (mm)")):
        ax.errorbar(ext.K, ext[metric], yerr=ext[f"{metric}_sd_over_supports"], marker="o", capsize=3,
                    label="extreme points (this reproduction)")
        ax.plot(ext.K, ext[f"paper_{metric}"], marker="s", ls="--", color="gray", label="extreme points (paper)")
        ax.errorbar(diag.K, diag[metric], yerr=diag[f"{metric}_sd_over_supports"], marker="D", ls="none", capsize=3,
                    color="tab:red", label="diagonal points, K = 1 (this reproduction)")
        ax.plot(diag.K, diag[f"paper_{metric}"], marker="x", ls="none", color="darkred", label="diagonal points (paper)")
        ax.set_xlabel("K (runs in the ensemble)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.suptitle("Mc one step, mean over brainstem, mandible and both parotids (± SD over supports)", fontsize=9)
    fig.tight_layout()
    return fig


def size_prior_chart(rule_table, chosen_weight: float):
    """IoU per organ and mean AWD against the size prior's weight w (validation patients), the
    paper's box as dashed lines of the same colours, the profile's w marked."""
    paper = rule_table[rule_table["w"].isna()].iloc[0]          # one method: the validation table
    rows = rule_table[rule_table["w"].notna()].sort_values("w")
    organs = [c[: -len(" IoU %")] for c in rule_table.columns if c.endswith(" IoU %")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, organ in enumerate([*organs, "Mean"]):
        column = "IoU %" if organ == "Mean" else f"{organ} IoU %"
        color, width = ("black", 2.2) if organ == "Mean" else (f"C{i}", 1.2)
        axes[0].plot(rows["w"], rows[column], marker="o", color=color, lw=width, label=organ)
        axes[0].axhline(paper[column], color=color, ls="--", lw=0.8)
    axes[1].plot(rows["w"], rows["AWD mm"], marker="o", color="black", lw=2.2, label="size prior")
    axes[1].axhline(paper["AWD mm"], color="black", ls="--", lw=0.8, label="box of the predicted points (paper)")
    for ax, label in ((axes[0], "IoU (%)"), (axes[1], "mean AWD (mm)")):
        ax.axvline(chosen_weight, color="gray", lw=0.8, ls=":")
        ax.set_xlabel("w: weight of the support's box size (0: predicted extent)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7, ncol=3)
    axes[1].legend(fontsize=7)
    fig.suptitle("Validation patients, default schedule: dashed = the paper's box, dotted = the profile's w",
                 fontsize=9)
    fig.tight_layout()
    return fig


def mandible_diagonal_vs_extreme(settings, protocol, organ: str = "Mandible"):
    """Top: the first support's mandible with its diagonal corners and extreme points and the
    coarse patch around each. Bottom: the first query with a mandible, the true box and the boxes
    from the predicted corners and extreme points (Mc one step, K = 1, cached predictions)."""
    support_id = protocol.supports[0]
    query_id = next(q for q in protocol.queries if organ in dataset.load_case(settings, q).labels)
    support, query = dataset.load_case(settings, support_id), dataset.load_case(settings, query_id)
    mask = support.labels[organ]
    ext_pts, diag_pts = extreme_points(mask), diagonal_points(mask)
    coarse = models.train_configs(settings)["coarse"]
    patch_mm = np.asarray(coarse.patch_size) * np.asarray(settings.preprocess.spacing_zyx) * coarse.downsample
    fig, axes = plt.subplots(2, 3, figsize=(13, 8.5))
    boxes_in_views(axes[0], support, {"box": (bounding_box(mask), "white", "-")}, mask_centroid(mask),
                   points={"extreme": (ext_pts, "yellow", "o"), "diagonal": (diag_pts, "red", "s")},
                   labels={organ: mask}, title=f"support {support_id}")
    for ax, view in zip(axes[0], VIEWS):
        for p in ext_pts:
            patch_rectangle(ax, p, patch_mm, support.spacing, view, "yellow", linewidth=0.6)
        for p in diag_pts:
            patch_rectangle(ax, p, patch_mm, support.spacing, view, "red", linewidth=0.6)
    predicted = {}
    for strategy in ("diagonal", "extreme"):
        run = rprloc_predictions.read(settings, support_id, query_id, strategy)
        points = run.organ_points(rprloc_predictions.stage_points(run, "coarse1", 1), organ)
        predicted[strategy] = query.mm_to_idx(points)
    boxes_in_views(axes[1], query,
                   {"true": (bounding_box(query.labels[organ]), "white", "-"),
                    "diagonal (K = 1)": (box_from_landmarks(predicted["diagonal"], "diagonal"), "red", "--"),
                    "extreme (K = 1)": (box_from_landmarks(predicted["extreme"], "extreme"), "yellow", "--")},
                   mask_centroid(query.labels[organ]),
                   points={"predicted extreme": (predicted["extreme"], "yellow", "o")},
                   labels={organ: query.labels[organ]}, title=f"query {query_id}")
    axes[1][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- notebook 05

def autoencoder_training(history, steps_planned: int | None = None):
    """Reconstruction MSE of every training batch and its running mean, log scale."""
    history = np.asarray(history, float)
    steps = np.arange(1, len(history) + 1)
    window = max(1, len(history) // 20)
    smooth = np.convolve(history, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 3.4))
    if window > 1:
        ax.plot(steps, history, color="lightgray", lw=0.8, label="batch")
        ax.plot(steps[window - 1:], smooth, color="tab:blue", lw=1.6, label=f"running mean ({window} steps)")
    else:
        ax.plot(steps, history, color="tab:blue", lw=1.2, label="batch")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("reconstruction MSE (intensity in [0, 1])")
    planned = f" of {steps_planned} planned" if steps_planned and steps_planned != len(history) else ""
    ax.set_title(f"Patch auto-encoder, {len(history)} steps{planned} (no labels used)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def autoencoder_reconstructions(pairs, patch_mm=None):
    """Central z slices of patches (top) and their reconstructions (bottom)."""
    fig, axes = plt.subplots(2, len(pairs), figsize=(2.3 * len(pairs), 5.0), squeeze=False)
    for i, (image, recon) in enumerate(pairs):
        for row, array in enumerate((image, recon)):
            ax = axes[row, i]
            ax.imshow(array, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, i].set_title(f"patch {i + 1}", fontsize=8)
    axes[0, 0].set_ylabel("input", fontsize=9)
    axes[1, 0].set_ylabel("reconstruction", fontsize=9)
    size = f" ({patch_mm[1]:g} x {patch_mm[2]:g} mm in-plane)" if patch_mm is not None else ""
    fig.suptitle(f"Validation patches, central axial slice{size}", fontsize=9)
    fig.tight_layout()
    return fig


def table3_chart(table, order, mean_organ: str = "Mean"):
    """Mean IoU over the organs (with SD over supports) and seconds per organ (log), this
    reproduction next to the paper, one group of bars per method."""
    mean = table[table.organ == mean_organ].set_index("method").reindex(order)
    x = np.arange(len(order))
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.2))
    ax = axes[0]
    ax.bar(x - 0.2, mean["iou_pct"], 0.4, yerr=mean["iou_pct_sd_over_supports"], capsize=2,
           label="this reproduction (mean ± SD over supports)")
    ax.bar(x + 0.2, mean["paper_iou_pct"], 0.4, color="lightgray", label="paper (their HaN data)")
    ax.set_ylabel("IoU (%), mean over the 4 HaN organs")
    ax = axes[1]
    ax.bar(x - 0.2, mean["time_s"], 0.4, label="this reproduction")
    ax.bar(x + 0.2, mean["paper_time_s_per_organ"], 0.4, color="lightgray", label="paper")
    ax.set_yscale("log")
    ax.set_ylabel("seconds per organ per query (log scale)")
    for ax in axes:
        ax.set_xticks(x, [m.replace(" (", "\n(") for m in order], fontsize=7)
        ax.legend(fontsize=7)
    for i, m in enumerate(order):            # mark methods with no reproduction (paper-only rows)
        if not np.isfinite(mean.loc[m, "iou_pct"]):
            axes[0].text(i - 0.2, 1, "not run", rotation=90, ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    return fig


def _zoom(ax, view, centre_idx, spacing, half_mm):
    _, (rows, cols) = VIEW_AXES[view]
    c = np.asarray(centre_idx, float) * np.asarray(spacing, float)
    ax.set_xlim(c[cols] - half_mm, c[cols] + half_mm)
    if view == "axial":   # anterior up: the y axis runs downwards there
        ax.set_ylim(c[rows] + half_mm, c[rows] - half_mm)
    else:
        ax.set_ylim(c[rows] - half_mm, c[rows] + half_mm)


def figure4_panel(query, organ: str, predictions: dict, metrics: dict | None = None, half_mm: float | None = None):
    """The paper's Figure 4: for one query and organ, the true box (green) and, one row per method,
    the predicted box (red, dashed) and predicted extreme points (red dots), in axial, coronal and
    sagittal slices through the true box's centre (boxes and points are projected onto them).
    predictions: method -> (6, 3) predicted points in the query's mm frame."""
    true_box = bounding_box(query.labels[organ])
    centre = (np.asarray(true_box[0]) + np.asarray(true_box[1])) / 2
    if half_mm is None:   # enough to see the organ and a typical miss
        half_mm = max(50.0, float(np.max((np.asarray(true_box[1]) - true_box[0] + 1) * query.spacing)))
    fig, axes = plt.subplots(len(predictions), 3, figsize=(10, 3.3 * len(predictions)), squeeze=False)
    for row, (method, points_mm) in zip(axes, predictions.items()):
        points_idx = query.mm_to_idx(points_mm)
        boxes = {"true box": (true_box, "lime", "-")}
        points = {}
        if np.all(np.isfinite(points_idx)):
            boxes["predicted box"] = (box_from_landmarks(points_idx, "extreme"), "red", "--")
            points["predicted extreme points"] = (points_idx, "red", "o")
        label = method
        if metrics and method in metrics:
            label += f": IoU {metrics[method]['iou_pct']:.0f} %, AWD {metrics[method]['awd_mm']:.1f} mm"
        boxes_in_views(row, query, boxes, centre, points=points, labels={organ: query.labels[organ]}, title=label)
        for ax, view in zip(row, VIEWS):
            _zoom(ax, view, centre, query.spacing, half_mm)
            ax.title.set_fontsize(7.5)
    handles = [plt.Line2D([], [], color="lime", label=f"true {organ} box"),
               plt.Line2D([], [], color="red", ls="--", label="predicted box"),
               plt.Line2D([], [], color="red", marker="o", ls="", label="predicted extreme points"),
               plt.Line2D([], [], color=ORGAN_COLOURS.get(organ, "yellow"), label=f"{organ} contour")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"{organ} in query {query.case_id}: one row per method "
                 f"(slices through the true box's centre; boxes and points projected)", fontsize=9)
    fig.tight_layout(rect=(0, 0.02, 1, 0.99))
    return fig


# ------------------------------------------------------------------------------- drawing panels

def method_panel(support, query, support_point_idx, trajectory_mm, true_point_idx, coarse_patch_mm,
                  fine_patch_mm, view="sagittal", n_runs=5, landmark_name=""):
    """The RPR-Loc method on real slices: the support patch around a landmark; in the query, a few
    random starts with their coarse patches, the coarse move, the fine move and the prediction.
    `trajectory_mm` is (stages, K, 3) for one landmark: start, coarse step, fine step."""
    axis, _ = VIEW_AXES[view]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.8))
    show_slice(axes[0], support.hu, support.spacing, view, support_point_idx[axis],
               title=f"support {support.case_id}: {landmark_name}")
    patch_rectangle(axes[0], support_point_idx, coarse_patch_mm, support.spacing, view, "tab:orange")
    patch_rectangle(axes[0], support_point_idx, fine_patch_mm, support.spacing, view, "tab:green", "--")
    draw_points(axes[0], support_point_idx, support.spacing, view, "yellow", marker="*", size=90)
    stage_idx = [query.mm_to_idx(t) for t in trajectory_mm]
    _, (row_axis, col_axis) = VIEW_AXES[view]
    titles = ("query: random starts and coarse move (Mc)", "query: fine move (Mf) and prediction")
    for ax, title in zip(axes[1:], titles):
        show_slice(ax, query.hu, query.spacing, view, true_point_idx[axis], title=f"{query.case_id} · {title}")
    runs = range(min(n_runs, stage_idx[0].shape[0]))
    for r in runs:
        start, coarse, fine = (s[r] for s in stage_idx[:3])
        patch_rectangle(axes[1], start, coarse_patch_mm, query.spacing, view, "tab:orange", linewidth=0.8)
        for ax, a, b, colour in ((axes[1], start, coarse, "tab:orange"), (axes[2], coarse, fine, "tab:green")):
            pa, pb = a * query.spacing, b * query.spacing
            ax.annotate("", xy=(pb[col_axis], pb[row_axis]), xytext=(pa[col_axis], pa[row_axis]),
                        arrowprops=dict(arrowstyle="->", color=colour, lw=1.2))
        draw_points(axes[1], start, query.spacing, view, "tab:orange", size=14)
        draw_points(axes[2], fine, query.spacing, view, "tab:green", size=14)
    for r in runs:
        patch_rectangle(axes[2], stage_idx[1][r], fine_patch_mm, query.spacing, view, "tab:green", "--", 0.6)
    prediction = stage_idx[2].mean(axis=0)
    draw_points(axes[2], prediction, query.spacing, view, "red", marker="X", size=80, label="prediction (mean of K)")
    for ax in axes[1:]:
        draw_points(ax, true_point_idx, query.spacing, view, "yellow", marker="*", size=90, label="true point")
    axes[2].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"RPR-Loc, one landmark ({view} view through the true point; runs are 3-D, shown projected)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def figure4(settings, protocol, organ: str = "Brainstem", with_rprloc: bool = True):
    """The paper's Figure 4 for the first support and the first query with `organ`: every
    baseline's box and points (and RPR-Loc's, Mc + Mf with the profile's K) from the cache."""
    support_id = protocol.supports[0]
    query_id = next(q for q in protocol.queries if organ in dataset.load_case(settings, q).labels)
    query = dataset.load_case(settings, query_id)
    run = template_predictions.read(settings, support_id, query_id)
    predictions = {label: run.organ_points(template_predictions.method_points(run, m), organ)
                   for m, label in TEMPLATE_LABELS.items()}
    if with_rprloc:
        rprloc = rprloc_predictions.read(settings, support_id, query_id)
        fine = rprloc_predictions.stage_points(rprloc, "fine", settings.rprloc.inference.k)
        predictions[RPRLOC_LABEL] = rprloc.organ_points(fine, organ)
    metrics = {m: score_prediction(query, organ, p, "extreme") for m, p in predictions.items()}
    return figure4_panel(query, organ, predictions, metrics)


# ---------------------------------------------------------------------------------- notebook 08

def detector_training(history: pd.DataFrame):
    """The detector's training: its losses (training steps and validation patients), and the
    validation IoU of both box rules (on the coarse grid), against the step; the chosen checkpoint
    (lowest validation loss) marked."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    left.plot(history.step, history.seg_loss, color="tab:blue", label="training: segmentation (Dice + BCE)")
    left.plot(history.step, history.box_loss, color="tab:orange", label="training: face distances (smooth L1)")
    if "val_loss" in history:
        left.plot(history.step, history.val_loss, color="black", marker="o", ms=3, label="validation: total")
        best = history.loc[history.val_loss.idxmin()]
        for ax in (left, right):
            ax.axvline(best.step, color="gray", ls=":", lw=1)
        left.set_title(f"Losses (checkpoint kept: step {int(best.step)}, lowest validation loss)", fontsize=9)
        for rule, colour in (("mask", "tab:green"), ("votes", "tab:red")):
            column = f"val_iou_{rule}_pct"
            if column in history:
                right.plot(history.step, history[column], color=colour, marker="o", ms=3,
                           label=detector_predictions.RULE_LABELS[rule])
        right.set_ylabel("mean box IoU, % (6 x 4 x 4 mm grid)")
        right.set_title("Validation patients", fontsize=9)
        right.legend(fontsize=8)
    left.set_yscale("log")
    left.set_xlabel("training step")
    right.set_xlabel("training step")
    left.legend(fontsize=7)
    fig.tight_layout()
    return fig


def detector_example(settings, query_id: str, rule: str, organs=HAN_ORGANS):
    """The detector's boxes (solid) and the true boxes (dashed) of every organ on one query, in
    three views through the first organ's true centre."""
    query = dataset.load_case(settings, query_id)
    run = detector_predictions.cache(settings, rule).read(detector_predictions.NO_SUPPORT, query_id)
    boxes = {}
    organs = [o for o in organs if o in query.labels and o in run.organs]
    for organ in organs:
        colour = ORGAN_COLOURS.get(organ, "white")
        points_mm = run.organ_points(run["points_mm"], organ)
        predicted = box_from_landmarks(query.mm_to_idx(points_mm), "extreme")
        score = score_prediction(query, organ, points_mm, "extreme")
        boxes[f"{organ}: {score['iou_pct']:.0f} % IoU"] = (predicted, colour, "-")
        boxes[f"{organ} (true)"] = (bounding_box(query.labels[organ]), colour, "--")
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    centre = bounding_box(query.labels[organs[0]]).centre if organs else np.asarray(query.hu.shape) / 2
    boxes_in_views(axes, query, boxes, centre)
    fig.suptitle(f"Supervised detector on patient {query_id}: predicted (solid) and true (dashed) boxes", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles[::2], labels[::2], loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


# ---------------------------------------------------------------------------------- notebook 07

# ---------------------------------------------------------------------------------- notebook 06

def cc2d_training(history: pd.DataFrame):
    """CC2D's two stages against the step: stage 1's self-supervised loss (training, and on fixed
    crops of validation patients), the error of finding a validation crop's point in its whole
    volume (pooled voxels), and stage 2's loss and its error against stage 1's answers on the
    validation patients (pooled voxels)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ssl, tpl = history[history.stage == "ssl"], history[history.stage == "tpl"]
    for ax, part, title in ((axes[0], ssl, "Stage 1 (self-supervised): loss"), (axes[2], tpl, "Stage 2 (TPL): loss")):
        ax.plot(part.step, part.loss, color="tab:blue", label="training (mean since the last check)")
        if "val_loss" in part:
            ax.plot(part.step, part.val_loss, "o-", ms=3, color="tab:orange", label="validation patients")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
        ax.legend(fontsize=7)
    for part, colour, label in ((ssl, "tab:green", "stage 1: a crop's point found in its volume"),
                                (tpl, "tab:purple", "stage 2: against stage 1's answers")):
        if "val_error_vox" in part and part.val_error_vox.notna().any():
            axes[1].plot(part.step, part.val_error_vox, "o-", ms=3, color=colour, label=label)
    axes[1].set_title("Validation patients: mean error, pooled voxels", fontsize=9)
    axes[1].set_xlabel("training step")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def cc2d_similarity_maps(settings, protocol, landmarks=("Mandible y_min", "Brainstem z_max")):
    """One row per landmark of the first support, searched in the first test query that has every
    landmark's organ: the support's axial slice through its landmark, then the query's axial slice
    (through the prediction) under each scale's cosine map, coarsest first, and under their product;
    truth (cyan x, drawn on the slice whatever its z) and prediction (red +). Panels are cut to the
    body (voxels above air)."""
    organs = {name.split()[0] for name in landmarks}
    query_id = next(q for q in protocol.queries if organs <= set(dataset.load_case(settings, q).labels))
    examples = [cc2d_predictions.similarity_example(settings, protocol.supports[0], query_id, name)
                for name in landmarks]
    n_scales = len(examples[0]["maps"])
    fig, axes = plt.subplots(len(examples), n_scales + 2, figsize=(2.1 * (n_scales + 2), 2.5 * len(examples)),
                             squeeze=False)
    for row, ex in zip(axes, examples):
        z_support, z_query = int(round(ex["support_idx"][0])), int(ex["found_idx"][0])
        aspect = ex["spacing"][1] / ex["spacing"][2]
        support_view = _body_window(ex["support_image"][z_support])
        row[0].imshow(ex["support_image"][z_support][support_view], cmap="gray", aspect=aspect)
        row[0].plot(ex["support_idx"][2] - support_view[1].start, ex["support_idx"][1] - support_view[0].start, "+",
                    color="lime", ms=10, mew=2)
        row[0].set_title(f"support {ex['support']}\n{ex['landmark']}", fontsize=8)
        view = _body_window(ex["query_image"][z_query])
        panels = [(ex["maps"][s], f"scale {s + 1} (stride {2 ** s})") for s in reversed(range(n_scales))]
        error = "" if ex["error_mm"] is None else f"\nerror {ex['error_mm']:.1f} mm"
        panels.append((ex["maps"].prod(0), f"product, query {ex['query']}{error}"))
        for ax, (volume, title) in zip(row[1:], panels):
            ax.imshow(ex["query_image"][z_query][view], cmap="gray", aspect=aspect)
            ax.imshow(volume[z_query][view], cmap="magma", alpha=0.6, aspect=aspect,
                      vmin=0, vmax=max(float(volume[z_query][view].max()), 1e-6))
            if ex["true_idx"] is not None:
                ax.plot(ex["true_idx"][2] - view[1].start, ex["true_idx"][1] - view[0].start, "x", color="cyan",
                        ms=8, mew=2)
            ax.plot(ex["found_idx"][2] - view[1].start, ex["found_idx"][1] - view[0].start, "+", color="red",
                    ms=10, mew=2)
            ax.set_title(title, fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("CC2D-SSL, coarse to fine: each scale's cosine map on the query's axial slice through the "
                 "prediction (6 x 4 x 4 mm grid)", fontsize=9)
    fig.tight_layout()
    return fig


def _body_window(image2d, margin: int = 3) -> tuple[slice, slice]:
    """Rows and columns of a 2D slice that hold its non-air voxels (intensity > 0.05), plus a margin."""
    rows, cols = np.nonzero(image2d > 0.05)
    if not len(rows):
        return slice(None), slice(None)
    return (slice(max(rows.min() - margin, 0), rows.max() + margin + 1),
            slice(max(cols.min() - margin, 0), cols.max() + margin + 1))


def cc2d_scale_ablation(table: pd.DataFrame, radius_mm: float):
    """The scale ablation: box IoU and the landmark detection rate within `radius_mm` per subset."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.35 * len(table) + 1.6), sharey=True)
    y = np.arange(len(table))
    left.barh(y, table.iou_pct, color="tab:blue")
    right.barh(y, table[cc2d_predictions.sdr_column(radius_mm)], color="tab:green")
    left.set_yticks(y, table.scales, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("mean box IoU (%)")
    right.set_xlabel(f"landmarks within {radius_mm:g} mm (%)")
    fig.suptitle("CC2D-SSL: which scales matter (one-shot, the test queries, every support)", fontsize=9)
    fig.tight_layout()
    return fig


def pin_training(history: pd.DataFrame):
    """PIN's training: the training loss of every network, and the validation error after one
    regression move (mm), against the step. PIN-Single's 24 landmark networks in thin lines, the
    variants' loss-C and loss-R networks and PIN-Multiple highlighted (a loss-C network's regression
    head is not trained, so its validation error says nothing)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    special = {"multiple": ("tab:red", "PIN-Multiple (C+R)")}
    for name in history.network.unique():
        if name.endswith("-loss-C"):
            special[name] = ("tab:green", f"{name.removeprefix('single-')} (loss C)")
        elif name.endswith("-loss-R"):
            special[name] = ("tab:orange", f"{name.removeprefix('single-')} (loss R)")
    single_drawn = False
    for name, part in history.groupby("network", sort=False):
        colour, label = special.get(name, ("tab:blue", None))
        if label is None:
            label, single_drawn = (None if single_drawn else "PIN-Single, one per landmark (C+R)"), True
        width = 2.0 if name in special else 0.6
        left.plot(part.step, part.loss, color=colour, lw=width, label=label)
        if "val_error_mm" in part and not name.endswith("-loss-C"):
            right.plot(part.step, part.val_error_mm, color=colour, lw=width, label=label)
    left.set_yscale("log")
    left.set_title("Training loss", fontsize=9)
    right.set_title("Validation patients: landmark error after one move (rule B), mm\n"
                    "(starts within each network's training range: Single and Multiple not comparable)", fontsize=8)
    for ax in (left, right):
        ax.set_xlabel("training step")
    right.set_ylabel("mm")
    left.legend(fontsize=7)
    fig.tight_layout()
    return fig


def pin_convergence(settings, queries, landmark: str | None = None, rule: str = "C"):
    """PIN-Single's starts (hollow) and their paths under an update rule to the final positions
    (filled), their mean (the prediction, star) and the truth (cross), on three orthogonal slices
    through the true landmark of the first of `queries` that has the landmark's organ."""
    landmark = landmark or settings.pin.variants_landmark
    query_id = next(q for q in queries if landmark in true_landmarks(settings, q))
    query = dataset.load_case(settings, query_id)
    truth_mm = true_landmarks(settings, query_id)[landmark]
    model = pin_predictions.released_shape_model(settings)
    train_landmarks = pin_predictions.training_landmarks(settings)
    predicted, path = pin_predictions.run_network(settings, query.volume, pin_predictions.network_file_name(landmark),
                                                  rule, model, train_landmarks, query_id, return_path=True)
    path = path + query.volume.centre_mm()      # PIN's centred frame -> the case's
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    organ = landmark.split()[0]
    orthogonal_views(axes, query.hu, query.spacing, query.mm_to_idx(truth_mm),
                     {organ: query.labels[organ]} if organ in query.labels else None)
    for ax, view in zip(axes, VIEWS):
        _, (row_axis, col_axis) = VIEW_AXES[view]
        for n in range(path.shape[1]):
            ax.plot(path[:, n, col_axis], path[:, n, row_axis], color="gold", lw=0.7, alpha=0.8)
        ax.scatter(path[0, :, col_axis], path[0, :, row_axis], s=16, facecolors="none", edgecolors="gold",
                   label="starts (training patients' landmark)")
        ax.scatter(path[-1, :, col_axis], path[-1, :, row_axis], s=10, c="gold", label="final positions")
        ax.scatter(predicted[0, col_axis], predicted[0, row_axis], s=90, c="red", marker="*", edgecolors="white",
                   linewidths=0.5, label="prediction (mean)", zorder=6)
        ax.scatter(truth_mm[col_axis], truth_mm[row_axis], s=60, c="cyan", marker="x", label="truth", zorder=6)
    error = float(np.linalg.norm(predicted[0] - truth_mm))
    fig.suptitle(f"PIN-Single, {landmark}, rule {rule}, {path.shape[0] - 1} iterations from {path.shape[1]} starts, "
                 f"patient {query_id}: error {error:.1f} mm", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def pin_landmark_errors(table: pd.DataFrame):
    """PIN-Single against PIN-Multiple per landmark (mean error over the queries, mm, with the SD)."""
    rows = table[table.landmark != "Overall"]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(rows) + 1.2))
    for offset, model, colour in ((-0.18, "PIN-Single", "tab:blue"), (0.18, "PIN-Multiple", "tab:red")):
        ax.barh(y + offset, rows[f"{model} error_mean_mm"], height=0.36, xerr=rows[f"{model} error_sd_mm"],
                color=colour, alpha=0.8, error_kw={"lw": 0.6}, label=model)
    ax.set_yticks(y, rows.landmark, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("landmark error, mm (mean and SD over the test queries)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- notebook 09

def _unoverlap_labels(fig, labels) -> None:
    """Move a label below its point when, drawn above it, it would overlap a label already placed
    (highest points first): the summary's close methods printed on top of each other."""
    renderer = fig.canvas.get_renderer()
    placed = []
    for label in sorted(labels, key=lambda a: -a.xy[1]):
        if any(label.get_window_extent(renderer).overlaps(box) for box in placed):
            label.set_position((4, -9))
        placed.append(label.get_window_extent(renderer))


def accuracy_against_time(methods):
    """Mean IoU against seconds per organ (log scale) for every method with a measured time (filled)
    and the paper's number for the same method (hollow, joined by a dotted line), by family."""
    fig, ax = plt.subplots(figsize=(9, 5))
    families = list(dict.fromkeys(methods.family))
    colours = dict(zip(families, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    drawn = set()
    labels = []
    for row in methods.to_dict("records"):
        colour = colours[row["family"]]
        here = np.isfinite(row["s/organ"]) and np.isfinite(row["IoU %"])
        paper = np.isfinite(row["paper s/organ"]) and np.isfinite(row["paper IoU %"])
        if here:
            ax.scatter(row["s/organ"], row["IoU %"], color=colour, s=40, zorder=3)
            labels.append(ax.annotate(row["method"], (row["s/organ"], row["IoU %"]), fontsize=7, xytext=(4, 3),
                                      textcoords="offset points"))
        if paper:
            ax.scatter(row["paper s/organ"], row["paper IoU %"], facecolors="none", edgecolors=colour, s=40,
                       zorder=3)
            if not here:
                ax.annotate(f"{row['method']} (paper only)", (row["paper s/organ"], row["paper IoU %"]), fontsize=7,
                            xytext=(4, 3), textcoords="offset points")
        if here and paper:
            ax.plot([row["s/organ"], row["paper s/organ"]], [row["IoU %"], row["paper IoU %"]], ls=":",
                    color=colour, lw=0.8)
        drawn.update({row["family"]} if here or paper else set())
    for family in [f for f in families if f in drawn]:
        ax.scatter([], [], color=colours[family], label=family)
    ax.scatter([], [], facecolors="none", edgecolors="gray", label="the paper's number (its data, a GPU)")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per organ (log scale; here: one CPU thread)")
    ax.set_ylabel("mean IoU over organs (%)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Accuracy against time: every method measured here, and the paper's numbers", fontsize=9)
    fig.tight_layout()
    _unoverlap_labels(fig, labels)
    return fig
