"""Interactive widgets for the notebooks (a notebook creates each in one line).

    k_r_widget(settings, protocol) -> (widget, figure of the default view)

The K / r widget shows RPR-Loc (Mc + Mf) on the first query with the first support for a chosen K
(runs per landmark) and the models trained with other offset ranges r (notebook 02's r sweep).
The runs are independent, so K runs are the first K of K_max: each pair of r values is computed
once with K_max runs (a few seconds) and kept, and moving the K slider only averages and redraws.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from rprloc_core.data import dataset
from rprloc_core.evaluation.protocol import case_rng, organ_landmarks_mm
from rprloc_core.evaluation.scoring import score_prediction
from rprloc_core.experiments import models
from rprloc_core.geometry.boxes import bounding_box, box_from_points
from rprloc_core.plotting import ORGAN_COLOURS, boxes_in_views
from rprloc_core.rprloc.inference import localize, stack_organ_landmarks


class KrRuns:
    """K_max runs of Mc + Mf per pair of r values, computed on first use and kept."""

    def __init__(self, settings, support, query, organs):
        self.settings, self.support, self.query = settings, support, query
        self.organs = [o for o in organs if o in query.labels and o in support.labels]
        self.points, self.organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(support, self.organs))
        self.models = models.load_models(settings)
        self.k_max = max(settings.rprloc.inference.k_max, WIDGET_K_MAX)
        self._runs = {}

    def final_positions(self, r_coarse: float, r_fine: float):
        """(positions (K_max, P, 3) after Mc + Mf, seconds per organ of that computation)."""
        key = (float(r_coarse), float(r_fine))
        if key not in self._runs:
            s = self.settings
            result = localize(self.query.volume, (self.support.volume, self.points),
                              self.models[models.model_name(s, "coarse", r_coarse)],
                              self.models[models.model_name(s, "fine", r_fine)], schedule=("coarse", "fine"),
                              k=self.k_max, ensemble="mean_position",
                              rng=case_rng(s.seed, self.query.case_id, self.support.case_id),
                              organ_of_point=self.organ_of_point)
            self._runs[key] = (result.trajectories_mm[-1], result.wall_s_per_organ)
        return self._runs[key]


WIDGET_K_MAX = 40


def k_r_view(runs: KrRuns, k: int, r_coarse: float, r_fine: float):
    """The query's true and predicted boxes for one K and pair of r values, with the metrics."""
    positions, seconds = runs.final_positions(r_coarse, r_fine)
    points = positions[: int(k)].mean(axis=0)
    query = runs.query
    boxes, lines = {}, []
    organ_of_point = np.asarray(runs.organ_of_point)
    for organ in runs.organs:
        pts = points[organ_of_point == organ]
        m = score_prediction(query, organ, pts, "extreme")
        boxes[f"{organ} true"] = (bounding_box(query.labels[organ]), ORGAN_COLOURS[organ], "-")
        boxes[f"{organ} predicted"] = (box_from_points(query.mm_to_idx(pts)), ORGAN_COLOURS[organ], "--")
        lines.append(f"{organ}: IoU {m['iou_pct']:.0f} %, AWD {m['awd_mm']:.1f} mm")
    centre = np.argwhere(query.labels[runs.organs[0]]).mean(axis=0)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    boxes_in_views(axes, query, boxes, centre,
                   title=f"{query.case_id}, K = {k}, r_c = {r_coarse:g} mm, r_f = {r_fine:g} mm")
    fig.suptitle(" · ".join(lines) + f"  (these r: {runs.k_max} runs computed once, {seconds:.2f} s per organ)",
                 fontsize=8)
    fig.tight_layout()
    return fig


def k_r_widget(settings, protocol):
    """Displays the K / r controls with their output, and returns (widget, default figure)."""
    runs = KrRuns(settings, dataset.load_case(settings, protocol.supports[0]),
                  dataset.load_case(settings, protocol.queries[0]), protocol.organs)
    r_coarse = models.sweep_r_values(settings, "coarse")
    r_fine = models.sweep_r_values(settings, "fine")
    k = settings.rprloc.inference.k
    output = widgets.Output()

    def on_change(k, r_coarse, r_fine):
        with output:
            output.clear_output(wait=True)
            plt.show(k_r_view(runs, k, r_coarse, r_fine))

    controls = widgets.interactive(on_change, k=widgets.IntSlider(value=k, min=1, max=runs.k_max, description="K"),
                                   r_coarse=widgets.Dropdown(options=r_coarse, description="r_c (mm)"),
                                   r_fine=widgets.Dropdown(options=r_fine, description="r_f (mm)"))
    box = widgets.VBox([*controls.children[:3], output])
    display(box)
    return box, k_r_view(runs, k, r_coarse[0], r_fine[0])
