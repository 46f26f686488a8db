"""CC2D in its paper's own setting: one-shot landmark detection on the ISBI 2015 cephalograms.

How to run the paper's own setting
----------------------------------
Bring your copy of the ISBI 2015 challenge release (it cannot be downloaded by this project:
RawImage/{TrainingData,Test1Data,Test2Data}/*.bmp and AnnotationsByMD/400_{senior,junior}/*.txt),
convert it to the landmark case layout, then train and evaluate:

    python -m data_prep.isbi2015 --source /path/to/ISBI2015 --out data/isbi2015
    python -m rprloc_core.cc2d.cephalometric --cases data/isbi2015 --out runs/cc2d-isbi [--tpl]

Stage 1 learns from the 150 training images without reading their landmarks; the landmarks of one
template (case 001 by default, `--template`) are then searched in every test1 (and test2) image.
With `--tpl`, stage 2 trains a detector on stage 1's answers for the training images. Training
resumes where it stopped (rerun the same command; a larger `--steps` continues the same run).
The command writes predictions.csv (every query landmark in mm at the original 0.1 mm resolution)
and metrics.csv (per landmark and overall: the mean radial error (MRE, mm) and the successful
detection rate (SDR, %) within 2, 2.5, 3 and 4 mm against the mean of the two doctors), and
prints the overall MRE and SDR per method and test set.

Grid and intensities
--------------------
- The 1935 x 2400 images of 0.1 mm are average-pooled by an integer factor (default 6: 323 x 400
  pixels of 0.6 mm, about the pixel count of the paper's 384 x 384 resize, but with square pixels
  so the in-plane rotations of training stay rigid, and an exact map between the grids). Reduced
  pixel k covers original pixels f k ... f k + f - 1 and its centre is f k + (f - 1) / 2; the last
  block of an axis whose length is not a multiple of f averages the pixels it has.
- Landmarks go to the reduced grid as fractional indices (the template's embeddings are read
  between cell centres) and predictions come back to original-resolution mm through the block
  centre, clipped to the image's pixel extent: errors are always measured in original mm.
- Intensities: each reduced image is mapped linearly so its 1st percentile becomes 0 and its 99th
  1, then clipped to [0, 1]. Per image, because exposure differs between cephalograms; robust
  percentiles, because burnt-in labels and rulers would set a plain min-max; the dark end at 0
  because the network pads with 0 and training crops read 0 beyond the image.

Files in --out: ssl/ (stage 1: last.pt, best.pt, cephalometric.json with the grid it was trained
on), tpl-<key>/ (stage 2; the key names stage 1's weights, the template and the grid, so a
retrained stage 1 starts a new folder rather than resuming one with other targets),
predictions.csv, metrics.csv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch

from rprloc_core.cc2d.config import CC2DTrainConfig, TPLTrainConfig
from rprloc_core.cc2d.inference import localize_with_vectors, template_vectors
from rprloc_core.cc2d.tpl import load_detector, predict_tpl, pseudo_labels, train_tpl
from rprloc_core.cc2d.training import load_encoder, train_ssl
from rprloc_core.data.landmark_cases import CASES_FILE, LANDMARKS_FILE, read_case_table, read_landmarks
from rprloc_core.errors import DataError
from rprloc_core.metrics import detection_rate
from rprloc_core.reporting import write_json, write_text
from rprloc_core.training_loop import resolve_device

DEFAULT_DOWNSAMPLE = 6
PERCENTILES = (1.0, 99.0)
RADII_MM = (2.0, 2.5, 3.0, 4.0)
TEST_SPLITS = ("test1", "test2")
SETTING_FILE = "cephalometric.json"
SSL_METHOD, TPL_METHOD = "CC2D-SSL", "CC2D-TPL"
NORMALISATION = f"per image: percentiles {PERCENTILES[0]:g} / {PERCENTILES[1]:g} -> 0 / 1, clipped"


# ----------------------------------------------------------------------------------------- grid

@dataclass(frozen=True)
class ReducedGrid:
    """How one image's reduced grid sits in its original pixels: `factor` pooling of an image of
    `shape` (height, width) pixels of `spacing` mm (y, x)."""
    factor: int
    shape: tuple
    spacing: tuple

    def to_reduced(self, points_mm) -> np.ndarray:
        """mm (P, 2) (y, x) -> fractional reduced indices, clipped into the reduced image (a point on
        the last original pixel may lie beyond the last reduced centre)."""
        idx = np.asarray(points_mm, dtype=float) / np.asarray(self.spacing)
        reduced = (idx - (self.factor - 1) / 2.0) / self.factor
        return np.clip(reduced, 0, np.asarray(reduced_shape(self.shape, self.factor)) - 1)

    def to_mm(self, reduced_idx) -> np.ndarray:
        """Reduced indices (P, 2) -> mm (y, x) of the block centres at the original resolution,
        clipped to the image's pixel extent (a partial last block's centre can lie beyond it)."""
        idx = np.asarray(reduced_idx, dtype=float) * self.factor + (self.factor - 1) / 2.0
        return np.clip(idx, 0, np.asarray(self.shape) - 1) * np.asarray(self.spacing)


def reduced_shape(shape, factor: int) -> tuple:
    return tuple(-(-int(s) // int(factor)) for s in shape)


def pool(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each factor x factor block (a partial block at the high end: of the pixels it has)."""
    factor = int(factor)
    if factor == 1:
        return np.asarray(image, dtype=np.float32)
    (h, w), (rh, rw) = image.shape, reduced_shape(image.shape, factor)
    padded = np.full((rh * factor, rw * factor), np.nan, dtype=np.float32)
    padded[:h, :w] = image
    return np.nanmean(padded.reshape(rh, factor, rw, factor), axis=(1, 3)).astype(np.float32)


def normalise(image: np.ndarray, path) -> np.ndarray:
    """Percentiles PERCENTILES -> 0 and 1, clipped (see the module docstring for why)."""
    low, high = np.percentile(image, PERCENTILES)
    if not high > low:
        raise DataError(path, "the image is (nearly) constant; nothing to learn or find in it")
    return np.clip((image - low) / (high - low), 0, 1).astype(np.float32)


def check_factor(downsample) -> int:
    factor = int(downsample)
    if factor != downsample or factor < 1:
        raise ValueError(f"downsample must be a positive integer, not {downsample!r}")
    return factor


# ---------------------------------------------------------------------------------------- cases

def case_root(root) -> Path:
    """The landmark case folder, or a DataError naming it when it is not one."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "no such landmark case folder; run python -m data_prep.isbi2015 first")
    read_case_table(root)
    return root


def read_2d_image(path: Path) -> tuple[np.ndarray, tuple]:
    """(grey values (height, width) float32, spacing (y, x) mm) of a case image."""
    if not path.is_file():
        raise DataError(path, "image file missing")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise DataError(path, f"unreadable image ({str(error).strip().splitlines()[-1]})") from None
    if image.GetDimension() != 2 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(path, "expected a 2D grey image (the landmark case layout)")
    return sitk.GetArrayFromImage(image).astype(np.float32), tuple(float(s) for s in image.GetSpacing()[::-1])


def load_reduced(root: Path, table: pd.DataFrame, case_id: str, factor: int) -> tuple[np.ndarray, ReducedGrid]:
    """A case's image pooled and normalised, and its grid (no landmark is read)."""
    row = table[table.case_id == case_id]
    if len(row) != 1:
        raise DataError(root / CASES_FILE, f"case {case_id!r} is not in the table")
    path = root / row.iloc[0].image
    image, spacing = read_2d_image(path)
    return normalise(pool(image, factor), path), ReducedGrid(factor, image.shape, spacing)


def split_ids(root: Path, table: pd.DataFrame, split: str) -> list[str]:
    ids = table.case_id[table.split == split].tolist()
    if not ids:
        raise DataError(root / CASES_FILE, f"no {split!r} cases (splits present: {sorted(table.split.unique())})")
    return ids


def case_landmarks(root: Path, landmarks: pd.DataFrame, case_id: str) -> pd.DataFrame:
    """A case's rows of landmarks.csv in landmark order."""
    rows = landmarks[landmarks.case_id == case_id].sort_values("index")
    if rows.empty:
        raise DataError(root / LANDMARKS_FILE, f"case {case_id!r} has no landmarks")
    return rows


# -------------------------------------------------------------------------------------- stage 1

def _check_setting(folder: Path, setting: dict) -> None:
    """Write `setting` next to the checkpoints, or refuse a folder trained on another grid: the
    pooling and the image list are not part of the training config, so a resumed run with other
    ones would silently mix two runs."""
    path = folder / SETTING_FILE
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        differs = sorted(k for k in setting if saved.get(k) != setting[k])
        if differs:
            raise DataError(path, f"was trained with other settings ({', '.join(differs)}); use another folder "
                                  "or delete it to restart")
    else:
        write_json(setting, path)


def _stage1_setting(folder: Path) -> dict:
    path = Path(folder) / SETTING_FILE
    if not path.is_file():
        raise DataError(path, "missing: this folder was not trained by rprloc_core.cc2d.cephalometric")
    return json.loads(path.read_text(encoding="utf-8"))


def train_on_landmark_cases(root, out_dir, config: CC2DTrainConfig, split: str = "train",
                            downsample: int = DEFAULT_DOWNSAMPLE, progress: bool = True, device=None) -> dict:
    """Stage 1 (self-supervised, resumable) on the images of `split` in the landmark case folder
    `root`, pooled by `downsample` and normalised; checkpoints in `out_dir`. Returns train_ssl's
    summary. No landmark is read: stage 1 needs none."""
    if config.dims != 2:
        raise ValueError(f"cephalograms are 2D: the config must have dims=2, not {config.dims}")
    root, factor = case_root(root), check_factor(downsample)
    table = read_case_table(root)
    ids = split_ids(root, table, split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_setting(out_dir, {"downsample": factor, "normalisation": NORMALISATION, "split": split,
                             "case_ids": ids})
    images = [load_reduced(root, table, case_id, factor)[0] for case_id in ids]
    return train_ssl(images, config, out_dir, device=device, progress=progress)


def cephalometric_config(steps: int = 4000, **changes) -> CC2DTrainConfig:
    """Stage 1's settings for the reduced cephalograms (~323 x 400 pixels of 0.6 mm): 96 x 96 pixel
    crops (58 mm, a landmark's surroundings; 6 cells at the coarsest of five scales), four images
    per step, no validation images (the paper has none; best.pt holds the final weights)."""
    settings = {"dims": 2, "crop_size": (96, 96), "batch_size": 4, "steps": steps, "checkpoint_every": 100,
                "val_every": 200, **changes}
    return CC2DTrainConfig(**settings)


# ------------------------------------------------------------------------------------ predicting

def template_points(root: Path, table: pd.DataFrame, landmarks: pd.DataFrame, template_id: str, factor: int):
    """(reduced image, landmark indices on it (P, 2) fractional, the template's landmark rows)."""
    if not (table.case_id == template_id).any():
        raise DataError(root / CASES_FILE, f"template {template_id!r} is not in the table "
                                           f"(cases: {', '.join(table.case_id.head(5))}, ...)")
    image, grid = load_reduced(root, table, template_id, factor)
    rows = case_landmarks(root, landmarks, template_id)
    return image, grid.to_reduced(rows[["y_mm", "x_mm"]].to_numpy(dtype=float)), rows


def _rows(method: str, template_id: str, case_id: str, split: str, named: pd.DataFrame, points_mm) -> list[dict]:
    return [{"method": method, "template_id": template_id, "case_id": case_id, "split": split,
             "index": int(index), "name": name, "y_mm": float(y), "x_mm": float(x)}
            for index, name, (y, x) in zip(named["index"], named["name"], points_mm)]


def _predict(root, query_ids, factor: int, find, method: str, template_id: str, named: pd.DataFrame,
             progress: bool) -> pd.DataFrame:
    """`find(reduced image) -> reduced indices (P, 2)` on every query, mapped to original mm."""
    table = read_case_table(root)
    rows = []
    for case_id in query_ids:
        image, grid = load_reduced(root, table, case_id, factor)
        split = table.split[table.case_id == case_id].iloc[0]
        rows += _rows(method, template_id, case_id, split, named, grid.to_mm(find(image)))
        if progress:
            print(f"{method}: {case_id}", flush=True)
    return pd.DataFrame(rows)


def predict_cases(encoder: torch.nn.Module, root, template_id: str, query_ids, downsample: int = DEFAULT_DOWNSAMPLE,
                  landmarks_per_batch: int = 8, progress: bool = False) -> pd.DataFrame:
    """Stage 1's one-shot answer: the template's landmarks (landmarks.csv) searched in every query
    on the reduced grid (the template is embedded once; inference.localize_landmarks' rule), one
    row per query and landmark: method, template_id, case_id, split, index, name, y_mm, x_mm
    (original-resolution mm)."""
    root, factor = case_root(root), check_factor(downsample)
    image, points, named = template_points(root, read_case_table(root), read_landmarks(root), template_id, factor)
    vectors = template_vectors(encoder, image, points)
    return _predict(root, query_ids, factor, lambda query: localize_with_vectors(encoder, query, vectors,
                                                                                  landmarks_per_batch),
                    SSL_METHOD, template_id, named, progress)


# -------------------------------------------------------------------------------------- stage 2

def weights_digest(model: torch.nn.Module) -> str:
    """A hash of the weights themselves (not of the file, whose bytes a rewrite may change)."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def tpl_folder(out, encoder: torch.nn.Module, template_id: str, downsample: int) -> Path:
    """out/tpl-<key>: the key names what the pseudo-labels come from (stage 1's weights, the
    template, the grid), so other targets never resume this folder's run."""
    key = hashlib.sha256(f"{weights_digest(encoder)}|{template_id}|{int(downsample)}".encode()).hexdigest()[:10]
    return Path(out) / f"tpl-{key}"


def train_tpl_on_landmark_cases(encoder: torch.nn.Module, root, template_id: str, out_dir, config: TPLTrainConfig,
                                split: str = "train", downsample: int = DEFAULT_DOWNSAMPLE, progress: bool = True,
                                device=None) -> dict:
    """Stage 2 (resumable): stage 1's predictions for the images of `split` (the template keeps
    its own landmarks, the one labelled image) train the detector in `out_dir`. Returns
    train_tpl's summary; the pseudo-labels are kept in out_dir/pseudo_labels.csv (mm)."""
    root, factor = case_root(root), check_factor(downsample)
    table, landmarks = read_case_table(root), read_landmarks(root)
    template, points, named = template_points(root, table, landmarks, template_id, factor)
    if config.n_landmarks != len(points):
        raise ValueError(f"the template has {len(points)} landmarks, the config {config.n_landmarks}")
    ids = split_ids(root, table, split)
    loaded = [load_reduced(root, table, case_id, factor) for case_id in ids]
    images = [image for image, _ in loaded]
    labels = pseudo_labels(encoder, images, template, points)
    labels = [points if case_id == template_id else found for case_id, found in zip(ids, labels)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_setting(out_dir, {"downsample": factor, "normalisation": NORMALISATION, "split": split,
                             "case_ids": ids, "template_id": template_id})
    table_rows = [row for case_id, (_, grid), found in zip(ids, loaded, labels)
                  for row in _rows("pseudo-label", template_id, case_id, split, named, grid.to_mm(found))]
    write_text(pd.DataFrame(table_rows).to_csv(index=False), out_dir / "pseudo_labels.csv")
    return train_tpl(images, labels, config, out_dir, device=device, progress=progress)


def predict_cases_tpl(detector: torch.nn.Module, root, template_id: str, query_ids,
                      downsample: int = DEFAULT_DOWNSAMPLE, top_k: int = 16, progress: bool = False) -> pd.DataFrame:
    """Stage 2's answer for every query (tpl.predict_tpl's vote on the reduced grid), as
    `predict_cases`' rows; `template_id` names the template its pseudo-labels came from (its
    landmark names and order label the rows)."""
    root, factor = case_root(root), check_factor(downsample)
    named = case_landmarks(root, read_landmarks(root), template_id)
    return _predict(root, query_ids, factor, lambda query: predict_tpl(detector, query, top_k), TPL_METHOD,
                    template_id, named, progress)


# -------------------------------------------------------------------------------------- metrics

def sdr_column(radius_mm: float) -> str:
    """'sdr_2mm_pct', 'sdr_2_5mm_pct' (the project's table naming)."""
    return f"sdr_{f'{float(radius_mm):g}'.replace('.', '_')}mm_pct"


def prediction_errors(predictions: pd.DataFrame, root) -> pd.DataFrame:
    """`predictions` with the ground truth (landmarks.csv: the doctors' mean) and error_mm added."""
    root = case_root(root)
    truth = read_landmarks(root)[["case_id", "index", "y_mm", "x_mm"]]
    merged = predictions.merge(truth, on=["case_id", "index"], how="left", suffixes=("", "_true"))
    missing = merged[merged.y_mm_true.isna()]
    if len(missing):
        first = missing.iloc[0]
        raise DataError(root / LANDMARKS_FILE, f"no ground truth for case {first.case_id!r} landmark "
                                               f"{first['index']} ({len(missing)} predictions lack one)")
    diff = merged[["y_mm", "x_mm"]].to_numpy(float) - merged[["y_mm_true", "x_mm_true"]].to_numpy(float)
    return merged.assign(error_mm=np.linalg.norm(diff, axis=1))


def _summary(errors: pd.Series, radii_mm) -> dict:
    rates = detection_rate(errors.to_numpy(), radii_mm)
    return {"n": len(errors), "mre_mm": float(errors.mean()), "mre_sd_mm": float(errors.std(ddof=0)),
            **{sdr_column(r): 100.0 * rates[float(r)] for r in radii_mm}}


def landmark_metrics(predictions: pd.DataFrame, root, radii_mm=RADII_MM) -> pd.DataFrame:
    """Per method and split: one row per landmark and an overall row (landmark "all", index
    empty): n, MRE (mm) and its SD, and the SDR (% of predictions within each radius), all on
    original-resolution mm against landmarks.csv."""
    errors = prediction_errors(predictions, root)
    rows = []
    for (method, split), group in errors.groupby(["method", "split"], sort=False):
        for (index, name), landmark in group.groupby(["index", "name"], sort=True):
            rows.append({"method": method, "split": split, "index": index, "landmark": name,
                         **_summary(landmark.error_mm, radii_mm)})
        rows.append({"method": method, "split": split, "index": pd.NA, "landmark": "all",
                     **_summary(group.error_mm, radii_mm)})
    table = pd.DataFrame(rows)
    table["index"] = table["index"].astype("Int64")
    return table


def overall_lines(metrics: pd.DataFrame, radii_mm=RADII_MM) -> list[str]:
    """One printable line per method and split: its overall MRE and SDR."""
    lines = []
    for row in metrics[metrics.landmark == "all"].itertuples(index=False):
        rates = ", ".join(f"{r:g} mm {getattr(row, sdr_column(r)):.1f} %" for r in radii_mm)
        lines.append(f"{row.method} {row.split} ({row.n} landmarks): MRE {row.mre_mm:.2f} mm "
                     f"(SD {row.mre_sd_mm:.2f}); SDR {rates}")
    return lines


# ------------------------------------------------------------------------------------------ CLI

def run(cases, out, template_id: str = "001", steps: int = 4000, tpl: bool = False, tpl_steps: int = 2000,
        downsample: int = DEFAULT_DOWNSAMPLE, device=None, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train (or resume) stage 1 (and stage 2 with `tpl`), predict the test splits present, write
    out/predictions.csv and out/metrics.csv atomically; returns (predictions, metrics)."""
    root, out = case_root(cases), Path(out)
    table = read_case_table(root)
    if not (table.case_id == template_id).any():
        raise DataError(root / CASES_FILE, f"template {template_id!r} is not in the table")
    queries = [c for split in TEST_SPLITS for c in table.case_id[table.split == split]]
    if not queries:
        raise DataError(root / CASES_FILE, f"no {' or '.join(TEST_SPLITS)} cases to evaluate")
    device = resolve_device(device)
    summary = train_on_landmark_cases(root, out / "ssl", cephalometric_config(steps), downsample=downsample,
                                      progress=progress, device=device)
    if summary["steps"] < steps:
        raise DataError(out / "ssl", f"stage 1 stopped at step {summary['steps']} of {steps}; rerun to continue")
    encoder, _ = load_encoder(out / "ssl" / "best.pt", device)
    factor = _stage1_setting(out / "ssl")["downsample"]
    predictions = [predict_cases(encoder, root, template_id, queries, factor)]
    if tpl:
        folder = tpl_folder(out, encoder, template_id, factor)
        n_landmarks = len(case_landmarks(root, read_landmarks(root), template_id))
        config = TPLTrainConfig(dims=2, n_landmarks=n_landmarks, crop_size=(96, 96), steps=tpl_steps,
                                checkpoint_every=100, val_every=200)
        train_tpl_on_landmark_cases(encoder, root, template_id, folder, config, downsample=factor,
                                    progress=progress, device=device)
        detector, _ = load_detector(folder / "best.pt", device)
        predictions.append(predict_cases_tpl(detector, root, template_id, queries, factor))
    predictions = pd.concat(predictions, ignore_index=True)
    metrics = landmark_metrics(predictions, root)
    write_text(predictions.to_csv(index=False), out / "predictions.csv")
    write_text(metrics.to_csv(index=False), out / "metrics.csv")
    return predictions, metrics


def _positive(text: str) -> int:
    """argparse type: a positive integer (so a bad number is a usage message, not a traceback)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv=None) -> int:
    """A bad case folder or template is one line `error: <file>: <problem>` and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m rprloc_core.cc2d.cephalometric", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", required=True, help="landmark case folder (python -m data_prep.isbi2015 --out)")
    parser.add_argument("--out", required=True, help="folder for the checkpoints, predictions.csv and metrics.csv")
    parser.add_argument("--template", default="001", help="the one labelled case (default 001)")
    parser.add_argument("--steps", type=_positive, default=4000, help="stage 1 steps (default 4000)")
    parser.add_argument("--tpl", action="store_true", help="also train and evaluate stage 2 (TPL)")
    parser.add_argument("--tpl-steps", type=_positive, default=2000, help="stage 2 steps (default 2000)")
    parser.add_argument("--downsample", type=_positive, default=DEFAULT_DOWNSAMPLE,
                        help=f"integer pooling factor of the 0.1 mm images (default {DEFAULT_DOWNSAMPLE})")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when there is one)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    try:
        _, metrics = run(args.cases, args.out, args.template, args.steps, args.tpl, args.tpl_steps, args.downsample,
                         args.device, progress=not args.quiet)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(overall_lines(metrics)))
    print(f"written: {Path(args.out) / 'predictions.csv'}, {Path(args.out) / 'metrics.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
