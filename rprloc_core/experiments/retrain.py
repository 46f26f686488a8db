"""Retrain a profile's models (every Pnet, the patch auto-encoder, CC2D's two stages and the
supervised references, the detector and PIN) into the data folder, and optionally publish them as
the profile's releases (CC2D and the supervised ones have their own, `cc2d.release`,
`detector.release` and `pin.release`). CC2D's training ablation is a study, not a model: it runs
on its own (`python -m rprloc_core.experiments.cc2d_ablation`).

    python -m rprloc_core.experiments.retrain --profile demo [--set rprloc.coarse.steps=4000]
    python -m rprloc_core.experiments.retrain --profile demo --publish [--overwrite]
    python -m rprloc_core.experiments.retrain --profile demo --only fine --publish --overwrite

Training is resumable: every model checkpoints as it goes, so rerunning the same command after an
interruption (or a time limit) continues; a finished model is only read back. Training always
writes to data/<dataset>/models/<profile>/, never to the release; `--publish` copies the trained
models into the release folder (weights.release), and over an existing release only with
`--overwrite`. `--only` names some of the RPR-Loc release's models (coarse, fine, a fine_teacher
where the profile has one, the r-sweep models, autoencoder): only they are trained and published,
and the release keeps its other models byte for byte. A model trains after the models it starts
from or learns from when they are trained in the same call. Needs the converted dataset
(`python -m data_prep.prepare --profile demo`).
"""

from __future__ import annotations

import sys

from rprloc_core.experiments import (
    cc2d_predictions,
    detector_predictions,
    models,
    pin_predictions,
    template_predictions,
    training_cli,
)


def retrain(settings, parallel: bool = True, progress: bool = True, only=None) -> list[dict]:
    """Train (or resume) every model of the profile in the data folder; returns their summaries.
    `only`: just these models of the RPR-Loc release (Pnet names, `models.AUTOENCODER`)."""
    if only is not None:
        models.check_release_names(settings, only)
        pnets = [name for name in only if name != models.AUTOENCODER]
        summaries = models.train_all(settings, names=pnets, parallel=parallel, progress=progress) if pnets else []
        if models.AUTOENCODER in only:
            encoder = template_predictions.train_encoder(settings, progress=progress)
            summaries.append({"name": models.AUTOENCODER, "steps": encoder.step, "stopped": encoder.stopped})
        return summaries
    summaries = models.train_all(settings, parallel=parallel, progress=progress)
    encoder = template_predictions.train_encoder(settings, progress=progress)
    summaries.append({"name": models.AUTOENCODER, "steps": encoder.step, "stopped": encoder.stopped})
    detector = detector_predictions.train(settings, progress=progress)
    summaries.append({"name": detector_predictions.NAME, **detector})
    summaries += pin_predictions.train(settings, parallel=parallel, progress=progress)
    summaries += [{**s, "name": f"cc2d-{s['name']}"} for s in cc2d_predictions.train(settings, progress=progress)]
    return summaries


def main(argv=None) -> int:
    def published(settings, overwrite, only=None):
        if only is not None:
            models.publish_release(settings, overwrite=overwrite, names=only)
            return [f"published {', '.join(only)} to {models.release_dir(settings)}, keeping its other models"]
        manifest = models.publish_release(settings, overwrite=overwrite)
        lines = [f"published {len(manifest['models'])} models to {models.release_dir(settings)}"]
        if settings.detector.release:
            detector_predictions.publish(settings, overwrite=overwrite)
            lines.append(f"published the detector to {detector_predictions.release_dir(settings)}")
        if settings.pin.release:
            pin_predictions.publish(settings, overwrite=overwrite)
            lines.append(f"published PIN to {pin_predictions.release_dir(settings)}")
        if settings.cc2d.release:
            cc2d_predictions.publish(settings, overwrite=overwrite)
            lines.append(f"published CC2D to {cc2d_predictions.release_dir(settings)}")
        return lines

    return training_cli.run(argv, "python -m rprloc_core.experiments.retrain", __doc__, retrain, published,
                            only_option=True)


if __name__ == "__main__":
    sys.exit(main())
