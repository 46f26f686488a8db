"""Interactive widgets for the notebooks (a notebook creates each in one line).

    k_r_widget(settings, protocol) -> (widget, figure of the default view)

The K / r widget reruns RPR-Loc (Mc + Mf) on the first query with the first support for a chosen
K (runs per landmark) and the models trained with other offset ranges r (notebook 02's r sweep).
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


def k_r_view(settings, support, query, available, k: int, r_coarse: float, r_fine: float, organs):
    """The query's true and predicted boxes for one K and pair of r values, with the metrics."""
    organs = [o for o in organs if o in query.labels]
    points, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(support, organs, "extreme"))
    coarse = available[models.model_name(settings, "coarse", r_coarse)]
    fine = available[models.model_name(settings, "fine", r_fine)]
    result = localize(query.volume, (support.volume, points), coarse, fine, schedule=("coarse", "fine"), k=int(k),
                      ensemble=settings.rprloc.inference.ensemble,
                      rng=case_rng(settings.seed, query.case_id, support.case_id), organ_of_point=organ_of_point)
    boxes, lines = {}, []
    for organ, pts in result.points_by_organ().items():
        m = score_prediction(query, organ, pts, "extreme")
        boxes[f"{organ} true"] = (bounding_box(query.labels[organ]), ORGAN_COLOURS[organ], "-")
        boxes[f"{organ} predicted"] = (box_from_points(query.mm_to_idx(pts)), ORGAN_COLOURS[organ], "--")
        lines.append(f"{organ}: IoU {m['iou_pct']:.0f} %, AWD {m['awd_mm']:.1f} mm")
    centre = np.argwhere(query.labels[organ_of_point[0]]).mean(axis=0)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    boxes_in_views(axes, query, boxes, centre,
                   title=f"{query.case_id}, K = {k}, r_c = {r_coarse:g} mm, r_f = {r_fine:g} mm")
    fig.suptitle(" · ".join(lines) + f"  ({result.wall_s_per_organ:.2f} s per organ)", fontsize=8)
    fig.tight_layout()
    return fig


def k_r_widget(settings, protocol):
    """Displays the K / r controls with their output, and returns (widget, default figure)."""
    support = dataset.load_case(settings, protocol.supports[0])
    query = dataset.load_case(settings, protocol.queries[0])
    available = models.load_models(settings)
    r_coarse = models.sweep_r_values(settings, "coarse")
    r_fine = models.sweep_r_values(settings, "fine")
    k = settings.rprloc.inference.k
    output = widgets.Output()

    def on_change(k, r_coarse, r_fine):
        with output:
            output.clear_output(wait=True)
            plt.show(k_r_view(settings, support, query, available, k, r_coarse, r_fine, protocol.organs))

    controls = widgets.interactive(on_change, k=widgets.IntSlider(value=k, min=1, max=40, description="K"),
                                   r_coarse=widgets.Dropdown(options=r_coarse, description="r_c (mm)"),
                                   r_fine=widgets.Dropdown(options=r_fine, description="r_f (mm)"))
    box = widgets.VBox([*controls.children[:3], output])
    display(box)
    return box, k_r_view(settings, support, query, available, k, r_coarse[0], r_fine[0], protocol.organs)
