"""Retrain a profile's models (every Pnet, the patch auto-encoder and the supervised references, the
detector and PIN) into the data folder, and optionally publish them as the profile's releases (the
supervised ones have their own, `detector.release` and `pin.release`: they learn from labels).

    python -m rprloc_core.experiments.retrain --profile demo [--set rprloc.coarse.steps=4000]
    python -m rprloc_core.experiments.retrain --profile demo --publish [--overwrite]

Training is resumable: every model checkpoints as it goes, so rerunning the same command after an
interruption (or a time limit) continues; a finished model is only read back. Training always
writes to data/<dataset>/models/<profile>/, never to the release; `--publish` copies the trained
models into the release folder (weights.release), and over an existing release only with
`--overwrite`. Needs the converted dataset (`python -m data_prep.prepare --profile demo`).
"""

from __future__ import annotations

import argparse
import sys

from rprloc_core.errors import RprlocError
from rprloc_core.experiments import detector_predictions, models, pin_predictions, template_predictions
from rprloc_core.settings import load_settings, parse_assignments


def retrain(settings, parallel: bool = True, progress: bool = True) -> list[dict]:
    """Train (or resume) every model of the profile in the data folder; returns their summaries."""
    summaries = models.train_all(settings, parallel=parallel, progress=progress)
    encoder = template_predictions.train_encoder(settings, progress=progress)
    summaries.append({"name": models.AUTOENCODER, "steps": encoder.step, "stopped": encoder.stopped})
    detector = detector_predictions.train(settings, progress=progress)
    summaries.append({"name": detector_predictions.NAME, **detector})
    summaries += pin_predictions.train(settings, parallel=parallel, progress=progress)
    return summaries


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rprloc_core.experiments.retrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--set", nargs="*", dest="overrides", metavar="KEY=VALUE", help="profile settings to change")
    parser.add_argument("--publish", action="store_true", help="copy the trained models into the release folder")
    parser.add_argument("--overwrite", action="store_true", help="with --publish: replace an existing release")
    parser.add_argument("--serial", action="store_true", help="one model at a time (default: two processes)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.profile, {**parse_assignments(args.overrides), "weights.source": "train"})
        for summary in retrain(settings, parallel=not args.serial):
            print(", ".join(f"{k} {v}" for k, v in summary.items() if k in ("name", "steps", "best_val_loss_mm2", "stopped")))
        if args.publish:
            manifest = models.publish_release(settings, overwrite=args.overwrite)
            print(f"published {len(manifest['models'])} models to {models.release_dir(settings)}")
            if settings.detector.release:
                detector_predictions.publish(settings, overwrite=args.overwrite)
                print(f"published the detector to {detector_predictions.release_dir(settings)}")
            if settings.pin.release:
                pin_predictions.publish(settings, overwrite=args.overwrite)
                print(f"published PIN to {pin_predictions.release_dir(settings)}")
    except RprlocError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
