"""How long the K / r widget of notebook 03 takes to redraw after each kind of change.

    python benchmarks/widget_redraw.py --profile demo

The widget (`gui.KrRuns`, `gui.k_r_view`) keeps the support embeddings per model pair, the K_max
starts per query and every result it computed. This script replays what a student does: open the
widget, move K, switch r (coarse, then fine), switch the query, go back to the first view. Each
redraw is timed end to end (localisation if needed, scoring, drawing the three views), for one organ
and for the four organs the notebook shows. Target (issue 9): under a second for one organ.
Writes results/<profile>/benchmarks/widget_redraw.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from rprloc_core import gui  # noqa: E402
from rprloc_core.data import dataset  # noqa: E402
from rprloc_core.evaluation.protocol import one_shot_protocol  # noqa: E402
from rprloc_core.experiments import models  # noqa: E402
from rprloc_core.paths import results_dir  # noqa: E402
from rprloc_core.reporting import cpu_model, markdown_table, write_json, write_text  # noqa: E402
from rprloc_core.settings import load_settings  # noqa: E402

TARGET_S = 1.0


def changes(settings, queries):
    """(what changed, query, K, r_coarse, r_fine) in the order a student makes them."""
    k = settings.rprloc.inference.k
    r_c, r_f = models.sweep_r_values(settings, "coarse"), models.sweep_r_values(settings, "fine")
    return [("open the widget", queries[0], k, r_c[0], r_f[0]),
            ("K down", queries[0], max(1, k - 5), r_c[0], r_f[0]),
            ("K up", queries[0], k + 5, r_c[0], r_f[0]),
            ("other coarse r", queries[0], k, r_c[-1], r_f[0]),
            ("other fine r", queries[0], k, r_c[-1], r_f[-1]),
            ("other query", queries[1], k, r_c[0], r_f[0]),
            ("back to the first view", queries[0], k, r_c[0], r_f[0])]


def replay(settings, support, queries, organs) -> list[dict]:
    start = time.perf_counter()
    runs = gui.KrRuns(settings, support, queries, organs)
    rows = [{"change": "create (load models)", "network_call": False, "redraw_s": time.perf_counter() - start}]
    for what, query, k, r_c, r_f in changes(settings, queries):
        kept = runs.kept(query, k, r_c, r_f)
        start = time.perf_counter()
        fig = gui.k_r_view(runs, query, k, r_c, r_f)
        fig.canvas.draw()                                   # the drawing is part of the redraw
        redraw = time.perf_counter() - start
        plt.close(fig)
        rows.append({"change": what, "query": query, "K": k, "r_coarse_mm": r_c, "r_fine_mm": r_f,
                     "network_call": not kept, "redraw_s": redraw})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    args = parser.parse_args(argv)
    settings = load_settings(args.profile)
    protocol = one_shot_protocol(settings)
    support = dataset.load_case(settings, protocol.supports[0])
    queries = list(protocol.queries[:2])
    for q in queries:
        dataset.load_case(settings, q)                      # reading a case from disk is not the widget's work
    table = []
    for organs in ([protocol.organs[0]], list(protocol.organs)):
        for row in replay(settings, support, queries, organs):
            table.append({"organs": len(organs), **row})
    out = {"profile": args.profile, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
           "cpu_model": cpu_model(),
           "machine": platform.platform(), "ensemble": settings.rprloc.inference.ensemble,
           "target_s_one_organ": TARGET_S, "redraws": table}
    folder = results_dir(args.profile) / "benchmarks"
    write_json(out, folder / "widget_redraw.json")
    import pandas as pd

    frame = pd.DataFrame(table)[["organs", "change", "network_call", "redraw_s"]]
    write_text(markdown_table(frame, floatfmt=".2f") + "\n", folder / "widget_redraw.md")
    print(markdown_table(frame, floatfmt=".2f"))
    worst = frame[(frame.organs == 1) & (frame.change != "create (load models)")].redraw_s.max()
    print(f"slowest redraw for one organ: {worst:.2f} s (target {TARGET_S:g} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
