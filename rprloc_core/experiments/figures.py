"""Figures of notebook 05 (template-matching baselines, Table 3): the auto-encoder's training
curve and reconstructions, the methods against the paper, and the qualitative Figure 4."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from rprloc_core.geometry.boxes import bounding_box, box_from_landmarks
from rprloc_core.plotting import ORGAN_COLOURS, VIEWS, boxes_in_views

# (row axis, column axis) of the (z, y, x) array shown in each view, as in plotting.py
_SHOWN_AXES = {"axial": (1, 2), "coronal": (0, 2), "sagittal": (0, 1)}


def training_curve(history, steps_planned: int | None = None):
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


def reconstructions(pairs, patch_mm=None):
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


def methods_chart(table, order, mean_organ: str = "Mean"):
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
    rows, cols = _SHOWN_AXES[view]
    c = np.asarray(centre_idx, float) * np.asarray(spacing, float)
    ax.set_xlim(c[cols] - half_mm, c[cols] + half_mm)
    if view == "axial":   # anterior up: the y axis runs downwards there
        ax.set_ylim(c[rows] + half_mm, c[rows] - half_mm)
    else:
        ax.set_ylim(c[rows] - half_mm, c[rows] + half_mm)


def figure4(query, organ: str, predictions: dict, metrics: dict | None = None, half_mm: float | None = None):
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
        points_idx = np.asarray(points_mm, float) / query.spacing
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
