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
VIEW_AXES = {"axial": (0, (1, 2)), "coronal": (1, (0, 2)), "sagittal": (2, (0, 1))}


def _slice(array, view, index):
    axis, _ = VIEW_AXES[view]
    return np.take(array, int(round(index)), axis=axis)


def _extent(shape, spacing, view):
    _, (row_axis, col_axis) = VIEW_AXES[view]
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
            _, (row_axis, col_axis) = VIEW_AXES[view]
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
    _, (row_axis, col_axis) = VIEW_AXES[view]
    ax.add_patch(Rectangle((lo[col_axis], lo[row_axis]), hi[col_axis] - lo[col_axis], hi[row_axis] - lo[row_axis],
                           fill=False, edgecolor=colour, linewidth=1.3, linestyle=linestyle, label=label))


def draw_points(ax, points_idx, spacing, view, colour, marker="o", size=18, label=None):
    pts = np.asarray(points_idx, float).reshape(-1, 3) * np.asarray(spacing, float)
    _, (row_axis, col_axis) = VIEW_AXES[view]
    ax.scatter(pts[:, col_axis], pts[:, row_axis], s=size, c=colour, marker=marker, label=label,
               edgecolors="white", linewidths=0.5, zorder=5)


def orthogonal_views(axes, hu, spacing, centre_idx, labels=None, title=None, **kwargs):
    """Axial, coronal and sagittal slices through `centre_idx` on three axes."""
    for ax, view in zip(axes, VIEWS):
        axis, _ = VIEW_AXES[view]
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
    _, (row_axis, col_axis) = VIEW_AXES[view]
    centre_mm = np.asarray(centre_idx, float) * np.asarray(spacing, float)
    half = np.asarray(patch_mm, float) / 2
    ax.add_patch(Rectangle((centre_mm[col_axis] - half[col_axis], centre_mm[row_axis] - half[row_axis]),
                           2 * half[col_axis], 2 * half[row_axis], fill=False, edgecolor=colour,
                           linestyle=linestyle, linewidth=linewidth))
