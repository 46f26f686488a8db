"""Interactive widgets for the notebooks (a notebook creates each in one line).

    k_r_widget(settings, protocol) -> (widget, figure of the default view)

The K / r widget shows RPR-Loc (the profile's default schedule) on one of the first queries with the
first support, for a chosen K (runs per landmark) and the models trained with other offset ranges r
(notebook 02's r sweep). It answers at once because nothing is computed twice: the support
embeddings are computed once per model, the K_max starts once per query (K starts are the first K
of them), and each result is kept. With the mean of positions the runs are independent until an
"average" or "scatter" step, so the steps before it run once for K_max runs per (query, r pair) and
a K takes their first K: with no such step a new K needs no network call at all; with one it costs
the steps after it (one patch per landmark after an average, K after a scatter). With the
embedding mean every step couples the runs, so a new K reruns the schedule.
"""

from __future__ import annotations

import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from rprloc_core.data import dataset
from rprloc_core.evaluation.protocol import case_rng, organ_landmarks_mm
from rprloc_core.evaluation.scoring import score_prediction
from rprloc_core.experiments import models
from rprloc_core.geometry.boxes import bounding_box, box_from_points, mask_centroid
from rprloc_core.geometry.landmarks import size_prior_box_points
from rprloc_core.plotting import ORGAN_COLOURS, boxes_in_views
from rprloc_core.rprloc.config import REGROUP_STEPS
from rprloc_core.rprloc.inference import draw_starts, encode_supports, localize, stack_organ_landmarks


class KrRuns:
    """RPR-Loc results for the widget, computed on first use and kept."""

    def __init__(self, settings, support, query_ids, organs):
        self.settings, self.support, self.query_ids = settings, support, list(query_ids)
        self.organs = [o for o in organs if o in support.labels]
        self.points, self.organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(support, self.organs))
        self.models = models.load_models(settings)
        inference = settings.rprloc.inference
        self.k_max, self.ensemble = max(inference.k_max, WIDGET_K_MAX), inference.ensemble
        self.starts, self.pool_factor, self.scatter_mm = inference.starts, inference.pool_factor, inference.scatter_mm
        steps = tuple(inference.steps)
        first_regroup = min((steps.index(s) for s in REGROUP_STEPS if s in steps), default=len(steps))
        # the steps whose K_max runs serve every K (runs independent until they are regrouped)
        split = first_regroup if self.ensemble == "mean_position" else 0
        self.shared_steps, self.per_k_steps = steps[:split], steps[split:]
        self._embeddings, self._starts, self._shared, self._results, self._queries = {}, {}, {}, {}, {}

    def query(self, query_id: str):
        """The query case, loaded on first use."""
        if query_id not in self._queries:
            self._queries[query_id] = dataset.load_case(self.settings, query_id)
        return self._queries[query_id]

    def _model_names(self, r_coarse, r_fine):
        s = self.settings
        return models.model_name(s, "coarse", r_coarse), models.model_name(s, "fine", r_fine)

    def _support_embeddings(self, names):
        if names not in self._embeddings:
            self._embeddings[names] = encode_supports((self.support.volume, self.points),
                                                      {"coarse": self.models[names[0]], "fine": self.models[names[1]]})
        return self._embeddings[names]

    def _start_positions(self, query_id):
        """K_max start positions (K_max, P, 3) of this query, drawn once (seeded by the pair)."""
        if query_id not in self._starts:
            self._starts[query_id] = draw_starts(self.query(query_id).volume, self.k_max, len(self.points),
                                                 case_rng(self.settings.seed, query_id, self.support.case_id),
                                                 self.starts, self.pool_factor)
        return self._starts[query_id]

    def _key(self, query_id: str, k: int, r_coarse: float, r_fine: float) -> tuple:
        return query_id, self._model_names(r_coarse, r_fine), int(k) if self.per_k_steps else None

    def kept(self, query_id: str, k: int, r_coarse: float, r_fine: float) -> bool:
        """Whether this view's localisation is already computed (a redraw needs no network call)."""
        return self._key(query_id, k, r_coarse, r_fine) in self._results

    def _run(self, query_id: str, names: tuple, steps: tuple, start_mm: np.ndarray) -> np.ndarray:
        """Positions (K, P, 3) after `steps` from `start_mm` (K, P, 3)."""
        result = localize(self.query(query_id).volume, (self.support.volume, self.points),
                          self.models[names[0]], self.models[names[1]], schedule=steps, k=len(start_mm),
                          ensemble=self.ensemble, start_mm=start_mm, scatter_mm=self.scatter_mm,
                          support_embeddings=self._support_embeddings(names), rng=np.random.default_rng(0))
        return result.trajectories_mm[-1]

    def predict(self, query_id: str, k: int, r_coarse: float, r_fine: float):
        """(predicted points (P, 3), seconds this view took to compute: 0 when it was kept)."""
        names = self._model_names(r_coarse, r_fine)
        key = self._key(query_id, k, r_coarse, r_fine)
        if key in self._results:                   # K_max runs, or K runs when steps depend on K
            return self._results[key][: int(k)].mean(axis=0), 0.0
        t0 = time.perf_counter()
        shared_key = (query_id, names)
        if shared_key not in self._shared:
            starts = self._start_positions(query_id)
            self._shared[shared_key] = (self._run(query_id, names, self.shared_steps, starts) if self.shared_steps
                                        else starts)
        runs = self._shared[shared_key]
        if self.per_k_steps:
            runs = self._run(query_id, names, self.per_k_steps, runs[: int(k)])
        self._results[key] = runs
        return runs[: int(k)].mean(axis=0), time.perf_counter() - t0


WIDGET_K_MAX = 40
WIDGET_QUERIES = 5


def k_r_view(runs: KrRuns, query_id: str, k: int, r_coarse: float, r_fine: float, size_prior: float = 0.0):
    """The query's true and predicted boxes for one query, K, pair of r values and size-prior weight
    (0: the box of the predicted points, the paper's; notebook 04), with the metrics. A new weight
    only redraws: the points are those already kept."""
    points, seconds = runs.predict(query_id, k, r_coarse, r_fine)
    query = runs.query(query_id)
    boxes, lines = {}, []
    organ_of_point = np.asarray(runs.organ_of_point)
    organs = [o for o in runs.organs if o in query.labels]
    for organ in organs:
        pts = size_prior_box_points(points[organ_of_point == organ], runs.points[organ_of_point == organ],
                                    size_prior)
        m = score_prediction(query, organ, pts, "extreme")
        boxes[f"{organ} true"] = (bounding_box(query.labels[organ]), ORGAN_COLOURS[organ], "-")
        boxes[f"{organ} predicted"] = (box_from_points(query.mm_to_idx(pts)), ORGAN_COLOURS[organ], "--")
        lines.append(f"{organ}: IoU {m['iou_pct']:.0f} %, AWD {m['awd_mm']:.1f} mm")
    centre = mask_centroid(query.labels[organs[0]])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    boxes_in_views(axes, query, boxes, centre, title=f"{query.case_id}, K = {k}, r_c = {r_coarse:g} mm, "
                                                     f"r_f = {r_fine:g} mm, size prior w = {size_prior:g}")
    how = "kept from before" if seconds == 0 else f"computed in {seconds:.2f} s for {len(organs)} organs"
    fig.suptitle(" · ".join(lines) + f"  ({how})", fontsize=8)
    fig.tight_layout()
    return fig


def k_r_widget(settings, protocol):
    """Displays the query / K / r / size-prior controls with their output, and returns (widget,
    default figure: the profile's K, first r values and size-prior weight)."""
    queries = list(protocol.queries[:WIDGET_QUERIES])
    runs = KrRuns(settings, dataset.load_case(settings, protocol.supports[0]), queries, protocol.organs)
    r_coarse = models.sweep_r_values(settings, "coarse")
    r_fine = models.sweep_r_values(settings, "fine")
    k = settings.rprloc.inference.k
    weight = settings.rprloc.inference.size_prior_weight
    output = widgets.Output()

    def on_change(query, k, r_coarse, r_fine, size_prior):
        with output:
            output.clear_output(wait=True)
            plt.show(k_r_view(runs, query, k, r_coarse, r_fine, size_prior))

    controls = widgets.interactive(on_change, query=widgets.Dropdown(options=queries, description="query"),
                                   k=widgets.IntSlider(value=k, min=1, max=runs.k_max, description="K"),
                                   r_coarse=widgets.Dropdown(options=r_coarse, description="r_c (mm)"),
                                   r_fine=widgets.Dropdown(options=r_fine, description="r_f (mm)"),
                                   size_prior=widgets.FloatSlider(value=weight, min=0.0, max=1.0, step=0.25,
                                                                  description="size prior w"))
    box = widgets.VBox([*controls.children[:5], output])
    display(box)
    return box, k_r_view(runs, queries[0], k, r_coarse[0], r_fine[0], weight)
