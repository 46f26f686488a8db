"""What the commands write: the result JSON, a box in physical and image coordinates, and an
overlay figure of the boxes on the query."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from rprloc_core.cli.checks import write_atomically


def write_result(path, report: dict) -> None:
    """A command's result JSON, written atomically. Paths stay as the user gave them (not made
    relative to the project, as the project's own results are): --resume compares them."""
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(report, indent=1), encoding="utf-8"))


def box_report(grid: sitk.Image, image: sitk.Image, points_idx) -> dict:
    """The box around points (voxel indices of `grid`, the preprocessed case as an image) in
    physical LPS mm and in continuous voxel indices of the image as read."""
    from rprloc_core.geometry.space import index_to_lps, lps_to_index

    points_lps = index_to_lps(grid, points_idx)
    points_original = lps_to_index(image, points_lps)
    return {"box_lps_mm": {"min": points_lps.min(axis=0).tolist(), "max": points_lps.max(axis=0).tolist()},
            "box_index_zyx": {"min": points_original.min(axis=0).tolist(),
                              "max": points_original.max(axis=0).tolist()}}


def write_overlay(path, query, points_by_organ: dict, title: str) -> None:
    """A PNG of the boxes around each organ's points (mm in `query`'s frame) in three views through
    their centre, written atomically; the figure is closed, so a long series does not pile them up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rprloc_core.geometry.boxes import box_from_points
    from rprloc_core.plotting import ORGAN_COLOURS, boxes_in_views

    boxes = {o: (box_from_points(query.mm_to_idx(p)), ORGAN_COLOURS.get(o, "yellow"), "--")
             for o, p in points_by_organ.items()}
    centre = np.mean([np.mean(b[0], axis=0) for b in boxes.values()], axis=0)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    try:
        boxes_in_views(axes, query, boxes, centre, title=title)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110))
    finally:
        plt.close(fig)
