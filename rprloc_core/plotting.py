"""Figures shared by the notebooks: orthogonal slices in millimetres with organ contours and boxes.

Display conventions (radiological): axial views show the patient's right on the image's left and
anterior at the top; coronal and sagittal views show superior at the top. Arrays are (z, y, x)
on an LPS grid with identity direction, so x grows to the patient's left, y posteriorly and z
superiorly.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

ORGAN_COLOURS = {
    "Brainstem": "tab:orange", "Mandible": "tab:cyan", "LeftParotid": "tab:green",
    "RightParotid": "tab:red", "SpinalCord": "tab:purple", "Esophagus": "tab:brown",
    "Larynx": "tab:pink", "Pancreas": "tab:olive",
}
VIEWS = ("axial", "coronal", "sagittal")
# For each view: the array axis that is sliced, and the (row axis, column axis) shown.
_VIEW_AXES = {"axial": (0, (1, 2)), "coronal": (1, (0, 2)), "sagittal": (2, (0, 1))}
_AXIS_NAMES = ("z (mm, superior up)", "y (mm, posterior down)", "x (mm, patient left →)")


def _slice(array, view, index):
    axis, _ = _VIEW_AXES[view]
    return np.take(array, int(round(index)), axis=axis)


def _extent(shape, spacing, view):
    _, (row_axis, col_axis) = _VIEW_AXES[view]
    rows, cols = shape[row_axis], shape[col_axis]
    sr, sc = spacing[row_axis], spacing[col_axis]
    # imshow extent = (left, right, bottom, top) in mm around voxel centres
    if view == "axial":  # anterior (small y) at the top
        return (-0.5 * sc, (cols - 0.5) * sc, (rows - 0.5) * sr, -0.5 * sr)
    return (-0.5 * sc, (cols - 0.5) * sc, -0.5 * sr, (rows - 0.5) * sr)  # superior (large z) up


def show_slice(ax, hu, spacing, view, index, labels=None, window=(-160, 240), title=None):
    """One slice of a HU volume with organ contours, axes in mm with the true aspect ratio."""
    spacing = np.asarray(spacing, float)
    image = _slice(hu, view, index)
    origin = "upper" if view == "axial" else "lower"
    extent = _extent(hu.shape, spacing, view)
    ax.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], origin=origin, extent=extent,
              interpolation="nearest")
    ax.set_autoscale_on(False)  # boxes and patches drawn later must not widen the view
    for organ, mask in (labels or {}).items():
        plane = _slice(mask, view, index)
        if plane.any():
            _, (row_axis, col_axis) = _VIEW_AXES[view]
            ys = np.arange(plane.shape[0]) * spacing[row_axis]
            xs = np.arange(plane.shape[1]) * spacing[col_axis]
            ax.contour(xs, ys, plane.astype(float), levels=[0.5], colors=ORGAN_COLOURS.get(organ, "yellow"),
                       linewidths=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def draw_box(ax, box, spacing, view, colour, label=None, linestyle="-"):
    """Project an inclusive voxel box (lo, hi) onto a view, in mm."""
    lo, hi = (np.asarray(b, float) * np.asarray(spacing, float) for b in box)
    _, (row_axis, col_axis) = _VIEW_AXES[view]
    ax.add_patch(Rectangle((lo[col_axis], lo[row_axis]), hi[col_axis] - lo[col_axis], hi[row_axis] - lo[row_axis],
                           fill=False, edgecolor=colour, linewidth=1.3, linestyle=linestyle, label=label))


def draw_points(ax, points_idx, spacing, view, colour, marker="o", size=18, label=None):
    pts = np.asarray(points_idx, float).reshape(-1, 3) * np.asarray(spacing, float)
    _, (row_axis, col_axis) = _VIEW_AXES[view]
    ax.scatter(pts[:, col_axis], pts[:, row_axis], s=size, c=colour, marker=marker, label=label,
               edgecolors="white", linewidths=0.5, zorder=5)


def orthogonal_views(axes, hu, spacing, centre_idx, labels=None, title=None, **kwargs):
    """Axial, coronal and sagittal slices through `centre_idx` on three axes."""
    for ax, view in zip(axes, VIEWS):
        axis, _ = _VIEW_AXES[view]
        show_slice(ax, hu, spacing, view, centre_idx[axis], labels,
                   title=f"{title} · {view}" if title else view, **kwargs)


def organ_legend(fig, organs, **kwargs):
    handles = [plt.Line2D([], [], color=ORGAN_COLOURS.get(o, "yellow"), label=o) for o in organs]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False, **kwargs)


def boxes_in_views(axes, case, boxes: dict, centre_idx, points: dict | None = None, labels=None, title=None):
    """Axial, coronal, sagittal slices of a preprocessed case through `centre_idx`, with boxes
    {label: ((lo, hi), colour, linestyle)} and optional points {label: (points_idx, colour, marker)}."""
    orthogonal_views(axes, case.hu, case.spacing, centre_idx, labels, title=title)
    for ax, view in zip(axes, VIEWS):
        for name, (box, colour, style) in boxes.items():
            draw_box(ax, box, case.spacing, view, colour, label=name, linestyle=style)
        for name, (pts, colour, marker) in (points or {}).items():
            draw_points(ax, pts, case.spacing, view, colour, marker=marker, label=name)


def patch_rectangle(ax, centre_idx, patch_mm, spacing, view, colour, linestyle="-", linewidth=1.2):
    """The outline of a patch of physical size patch_mm (z, y, x) centred at centre_idx, on a view."""
    _, (row_axis, col_axis) = _VIEW_AXES[view]
    centre_mm = np.asarray(centre_idx, float) * np.asarray(spacing, float)
    half = np.asarray(patch_mm, float) / 2
    ax.add_patch(Rectangle((centre_mm[col_axis] - half[col_axis], centre_mm[row_axis] - half[row_axis]),
                           2 * half[col_axis], 2 * half[row_axis], fill=False, edgecolor=colour,
                           linestyle=linestyle, linewidth=linewidth))


def method_figure(support, query, support_point_idx, trajectory_mm, true_point_idx, coarse_patch_mm,
                  fine_patch_mm, view="sagittal", n_runs=5, landmark_name=""):
    """The RPR-Loc method on real slices: the support patch around a landmark; in the query, a few
    random starts with their coarse patches, the coarse move, the fine move and the prediction.
    `trajectory_mm` is (stages, K, 3) for one landmark: start, coarse step, fine step."""
    axis, _ = _VIEW_AXES[view]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.8))
    show_slice(axes[0], support.hu, support.spacing, view, support_point_idx[axis],
               title=f"support {support.case_id}: {landmark_name}")
    patch_rectangle(axes[0], support_point_idx, coarse_patch_mm, support.spacing, view, "tab:orange")
    patch_rectangle(axes[0], support_point_idx, fine_patch_mm, support.spacing, view, "tab:green", "--")
    draw_points(axes[0], support_point_idx, support.spacing, view, "yellow", marker="*", size=90)
    stage_idx = [np.asarray(t) / query.spacing for t in trajectory_mm]   # mm -> query voxel index
    _, (row_axis, col_axis) = _VIEW_AXES[view]
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
