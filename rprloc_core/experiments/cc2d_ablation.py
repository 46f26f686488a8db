"""CC2D's training ablation (the paper's Table 2: the embedding length L and the local window):
stage 1 retrained with one setting changed, each variant scored on validation patients with the
same one-shot search as the release. It trains, so `make reproduce` never runs it: its table goes
into the release's manifest (`cc2d_predictions.publish`), and notebook 06 shows it from there.

    python -m rprloc_core.experiments.cc2d_ablation --profile demo      # resumable, two workers
    python -m rprloc_core.experiments.cc2d_ablation --profile demo --publish --overwrite   # into the release

Every variant, the release's own settings included, is trained for `cc2d.ablation_steps` (shorter
than the release, for CPU time) from the same seed on the same patients, so the variants differ in
the one setting only. Scored on the validation protocol's first support and every validation
query (never the test queries): box IoU, AWD and landmark MRE / SDR. The validation loss is not a
fair comparison here (its window and length are the settings being changed).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.evaluation.jobs import run_jobs
from rprloc_core.evaluation.protocol import validation_protocol
from rprloc_core.evaluation.scoring import summarize
from rprloc_core.experiments import cc2d_predictions as cc2d
from rprloc_core.experiments import training_cli
from rprloc_core.reporting import write_text

BASE_LABEL = "the release's settings"


def variants(settings) -> dict[str, object]:
    """label -> stage-1 config: the release's settings, then each other L, then each other window,
    all with `cc2d.ablation_steps` steps."""
    base = replace(settings.cc2d.train, steps=settings.cc2d.ablation_steps)
    out = {f"L {base.embedding_length}, window {base.local_window} ({BASE_LABEL})": base}
    for length in settings.cc2d.ablation_lengths:
        if length != base.embedding_length:
            out[f"L {length}"] = replace(base, embedding_length=int(length))
    for window in settings.cc2d.ablation_windows:
        if window != base.local_window:
            out[f"window {window}"] = replace(base, local_window=int(window))
    return out


def variant_dir(settings, config) -> Path:
    return cc2d.trained_dir(settings) / "ablation" / f"L{config.embedding_length}-w{config.local_window}-{config.steps}"


def train_variant(settings, label: str) -> dict:
    """Train (or resume) one variant; a worker's job (one thread)."""
    from rprloc_core.cc2d.training import train_ssl

    config = variants(settings)[label]
    folder = variant_dir(settings, config)
    if cc2d.finished(folder, config):
        return {"variant": label, "stopped": "finished earlier"}
    validation = cc2d.arrays(cc2d.material(settings, "validation")) or None
    summary = train_ssl(cc2d.arrays(cc2d.material(settings, "train")), config, folder, progress=False,
                        validation=validation)
    return {"variant": label, **summary}


def variant_runs(settings, label: str, protocol):
    """`cc2d_predictions.stage_runs`-like answers of one variant on the protocol's first support."""
    from rprloc_core.cc2d.inference import localize_with_vectors, template_vectors
    from rprloc_core.cc2d.training import load_encoder

    encoder, _ = load_encoder(variant_dir(settings, variants(settings)[label]) / "best.pt")
    support_id = protocol.supports[0]
    vectors = template_vectors(encoder, *cc2d.template(settings, support_id))
    for query_id in protocol.queries:
        volume = dataset.load_case(settings, query_id).volume
        grid = cc2d.pooled(settings, volume)
        points = cc2d.to_case_mm(grid, volume, localize_with_vectors(encoder, grid.array, vectors))
        yield label, support_id, query_id, np.asarray(cc2d.organ_of_point()), points, np.nan


def score_variants(settings, protocol=None) -> pd.DataFrame:
    """One row per variant: L, window, steps, training minutes, and on the validation pairs the
    mean box IoU, AWD and the landmark MRE / SDR."""
    protocol = protocol or validation_protocol(settings)
    rows = []
    for label, config in variants(settings).items():
        runs = list(variant_runs(settings, label, protocol))
        means = summarize(cc2d.score(settings, runs=runs), keys=("method",), organs=HAN_ORGANS)
        mean = means[means.organ == "Mean"].iloc[0]            # as the methods table's "Mean" rows
        landmarks = cc2d.landmark_table(cc2d.landmark_errors(settings, runs=runs), settings.cc2d.sdr_radii_mm)
        saved = cc2d.saved_checkpoint(variant_dir(settings, config) / "last.pt")
        rows.append({"variant": label, "embedding_length": config.embedding_length,
                     "local_window": config.local_window, "steps": saved["step"],
                     "train_minutes": saved["train_time_s"] / 60, "iou_pct": mean.iou_pct,
                     "awd_mm": mean.awd_mm, **landmarks.drop(columns="method").iloc[0].to_dict()})
    return pd.DataFrame(rows)


def run(settings, parallel: bool = True, progress: bool = True) -> pd.DataFrame:
    """Train every variant (two single-thread workers when `parallel`), score them, save the table."""
    jobs = [(settings, label) for label in variants(settings)]
    for summary in run_jobs(train_variant, jobs, "CC2D ablation variants", parallel=parallel, progress=progress):
        print(", ".join(f"{k} {v}" for k, v in summary.items() if k in ("variant", "steps", "stopped")))
    table = score_variants(settings)
    write_text(table.to_csv(index=False), cc2d.ablation_table_path(settings))
    return table


def main(argv=None) -> int:
    def train(settings, parallel):
        table = run(settings, parallel=parallel)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        return [{"name": variant, "steps": steps} for variant, steps in zip(table.variant, table.steps)]

    def published(settings, overwrite):
        cc2d.publish(settings, overwrite=overwrite)
        return [f"published CC2D with the ablation's table to {cc2d.release_dir(settings)}"]

    return training_cli.run(argv, "python -m rprloc_core.experiments.cc2d_ablation", __doc__, train, published)


if __name__ == "__main__":
    sys.exit(main())
