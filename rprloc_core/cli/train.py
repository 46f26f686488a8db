"""`rprloc train`: Mc and Mf trained on a folder of the user's CT images (no labels needed)."""

from __future__ import annotations

from pathlib import Path

from rprloc_core.cli.checks import check_writable
from rprloc_core.cli.inputs import preprocess, read_ct
from rprloc_core.data.images import strip_image_suffix
from rprloc_core.errors import DataError

MODEL_ROLES = ("coarse", "fine")


def images_in(folder) -> list[Path]:
    """The images of a folder (files of a known format, or DICOM series folders), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "images folder not found")
    items = [p for p in sorted(folder.iterdir()) if strip_image_suffix(p.name) or p.is_dir()]
    if not items:
        raise DataError(folder, "no images (.nii, .nii.gz, .nrrd, .mha or DICOM series folders)")
    return items


def train_command(args) -> int:
    """Train Mc and Mf with the profile's settings (resumable: train_pnet checkpoints)."""
    import dataclasses

    from tqdm.auto import tqdm

    from rprloc_core.rprloc.training import train_pnet
    from rprloc_core.settings import load_settings

    settings = load_settings(args.profile)
    spacing = settings.preprocess.spacing_zyx
    images = images_in(args.images)
    val_images = images_in(args.validation) if args.validation else []
    if not val_images:  # hold out a few images for the fixed validation pairs
        n_val = max(1, len(images) // 7)
        images, val_images = images[:-n_val], images[-n_val:]
    if not images:
        raise DataError(args.images, "need at least two images (one for training, one for validation)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataError(out, "--out must be a folder for the models, not a file")
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out / "best.pt", "models")

    def volumes(paths, what):
        return [preprocess(read_ct(p, what), {}, spacing, p.name, str(p)).volume
                for p in tqdm(paths, desc=f"preprocessing {what} images")]

    train, val = volumes(images, "training"), volumes(val_images, "validation")
    for name in MODEL_ROLES:
        config = getattr(settings.rprloc, name)
        if args.steps:
            config = dataclasses.replace(config, steps=args.steps)
        summary = train_pnet(config, train, val, out / name)
        print(f"{name}: {summary['steps']} steps, best validation MSE {summary['best_val_loss_mm2']:.0f} mm^2")
    return 0
