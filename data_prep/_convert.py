"""The conversion loop every dataset adapter shares, and the small helpers they all need.

API (everything an adapter needs):

    run_conversion(items, convert_one, out_root, *, source=None, progress=True, overwrite=False,
                   notes=()) -> ConversionSummary
        items:       iterable of (case_id, split, arg); split in rprloc_core.data.cases.SPLITS.
        convert_one: convert_one(arg) -> (image, labels) or LoadedCase(image, labels, notes, extra);
                     labels maps organ names (aliases allowed) to sitk masks on the image grid.
                     Raise DataError(path, problem) for a bad case; it is recorded, the loop goes on.
        source:      name recorded in case.json (default: convert_one's module name, "openkbp").
        notes:       (case_id, message) pairs found before the loop (e.g. patients left out).
        Calls clean_partial first, skips cases already in out_root (resumable), writes each case
        with rprloc_core.data.cases.write_case, rebuilds cases.csv at the end (also when interrupted).
        Caught per case: CASE_ERRORS (DataError, SimpleITK's RuntimeError, OSError, corrupt
        gz/xz, pandas parse errors); any other exception is a bug and stops the run.
    ConversionSummary: .converted, .skipped (lists of case ids), .failed, .notes (lists of
        (case_id, message)), .ok, str(summary), .to_frame()
    LoadedCase(image, labels, notes=[], extra={})
    read_image(path, what="image") -> sitk.Image   # missing/corrupt file -> DataError naming it
    checked_mask(image, mask, path) -> sitk.Image  # wrong grid or empty mask -> DataError naming it
    masks_from_label_map(image, label, label_path, {organ: values}) -> ({organ: mask}, notes)
    assign_splits(case_ids, splits_csv=None, fractions=DEFAULT_FRACTIONS, seed=0)
        -> (dict case_id -> split, notes)
    split_items({case_id: arg}, splits_csv=None, fractions=..., seed=0) -> (items, notes)
    strip_image_suffix(name) -> case stem or None, for .nii / .nii.gz / .nrrd / .mha
    add_common_cli_arguments(parser), finish_cli(summary) -> exit status, @adapter_main: the adapters' shared CLI
    ConversionInterrupted: raised on Ctrl-C, carries the summary so far (the case table is rebuilt first)
"""

from __future__ import annotations

import lzma
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tqdm.auto import tqdm

from rprloc_core.data.cases import (
    SPLITS,
    case_exists,
    check_same_grid,
    checked_mask,  # noqa: F401 (part of this module's API)
    clean_partial,
    rebuild_case_table,
    write_case,
)
from rprloc_core.data.images import IMAGE_SUFFIXES, read_image, short_itk_message, strip_image_suffix  # noqa: F401 (part of this module's API)
from rprloc_core.errors import DataError

# Errors that mean "this case's files are bad", not "the program is wrong". Anything else (a
# TypeError, a KeyError in our own code) still stops the run, so bugs are not hidden as bad cases.
CASE_ERRORS = (DataError, RuntimeError, OSError, EOFError, lzma.LZMAError, zlib.error,
               pd.errors.ParserError, pd.errors.EmptyDataError)

# Train / validation / test fractions for the seeded split when no splits.csv is given. Close to
# the paper's splits (HaN 109/19/38, pancreas 50/11/21 volumes).
DEFAULT_FRACTIONS = (0.65, 0.12, 0.23)

_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "validation", "valid": "validation",
                  "validation": "validation", "test": "test", "testing": "test"}


@dataclass
class LoadedCase:
    """What an adapter's convert_one returns when it has notes or extra case.json fields."""
    image: sitk.Image
    labels: dict
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class ConversionSummary:
    out_root: Path
    converted: list = field(default_factory=list)   # case ids written by this run
    skipped: list = field(default_factory=list)     # case ids already converted before this run
    failed: list = field(default_factory=list)      # (case_id, message naming the file)
    notes: list = field(default_factory=list)       # (case_id, message): skipped structures etc.
    interrupted: bool = False                       # stopped by Ctrl-C; a rerun continues

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_frame(self) -> pd.DataFrame:
        rows = [(c, "converted", "") for c in self.converted]
        rows += [(c, "skipped", "already converted") for c in self.skipped]
        rows += [(c, "failed", m) for c, m in self.failed]
        rows += [(c, "note", m) for c, m in self.notes]
        return pd.DataFrame(rows, columns=["case_id", "status", "message"])

    def __str__(self) -> str:
        lines = [f"{self.out_root}: {len(self.converted)} converted, {len(self.skipped)} already there, "
                 f"{len(self.failed)} failed" + (" (interrupted: run again to continue)" if self.interrupted else "")]
        lines += [f"  FAILED {c}: {m}" for c, m in self.failed]
        lines += [f"  note {c}: {m}" for c, m in self.notes]
        return "\n".join(lines)


def run_conversion(items: Iterable, convert_one: Callable, out_root, *, source: str | None = None,
                   progress: bool = True, overwrite: bool = False, notes: Iterable = ()) -> ConversionSummary:
    """Convert every (case_id, split, arg) item into out_root; one bad case never stops the others."""
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    if source is None:  # e.g. "data_prep.structseg" -> "structseg"
        source = getattr(convert_one, "__module__", "dataset").rsplit(".", 1)[-1]
    items = list(items)
    summary = ConversionSummary(out_root, notes=list(notes))
    clean_partial(out_root)
    bar = tqdm(items, desc=f"converting {source}", unit="case", disable=not progress)
    try:
        for case_id, split, arg in bar:
            bar.set_postfix_str(str(case_id))
            if not overwrite and case_exists(out_root, case_id):
                summary.skipped.append(case_id)
                continue
            try:
                loaded = convert_one(arg)
                if not isinstance(loaded, LoadedCase):
                    loaded = LoadedCase(*loaded)
                write_case(out_root, case_id, loaded.image, loaded.labels, split, source, extra=loaded.extra)
            except CASE_ERRORS as error:
                summary.failed.append((case_id, describe_error(error)))
                if progress:
                    tqdm.write(f"FAILED {case_id}: {summary.failed[-1][1]}")
                continue
            summary.converted.append(case_id)
            summary.notes += [(case_id, note) for note in loaded.notes]
    except KeyboardInterrupt:
        summary.interrupted = True     # the case being written was left as a temporary folder
        clean_partial(out_root)
        raise ConversionInterrupted(summary) from None
    finally:
        bar.close()
        rebuild_case_table(out_root)
    return summary


class ConversionInterrupted(KeyboardInterrupt):
    """Ctrl-C during a conversion; carries the summary of what was done before it."""

    def __init__(self, summary: ConversionSummary):
        super().__init__(str(summary))
        self.summary = summary


def describe_error(error: BaseException) -> str:
    """One line: DataError already reads 'path: problem'; ITK's multi-line errors are shortened."""
    if isinstance(error, DataError):
        return str(error)
    return f"{type(error).__name__}: {short_itk_message(str(error))}"


def masks_from_label_map(image: sitk.Image, label: sitk.Image, label_path, organ_values: dict,
                         map_name: str = "the label map", known_values=()) -> tuple[dict, list]:
    """Binary masks {organ: sitk mask} from a multi-label map, and notes.

    organ_values maps each organ to the label values that make it up (several values are united,
    e.g. StructSeg's left and right mandible halves). The map must lie on the image grid. An organ
    whose values do not occur is left out with a note (not every patient has every organ); a map
    holding none of the organs' values at all is a DataError. Values in the map that no organ uses
    are noted, since they may hint at a wrong label table, unless listed in known_values (values
    the dataset defines for structures this project does not use).
    """
    check_same_grid(image, label, str(label_path))
    values = np.rint(sitk.GetArrayViewFromImage(label)).astype(np.int64)
    present = set(np.unique(values).tolist()) - {0}
    masks, notes = {}, []
    for organ, organ_label_values in organ_values.items():
        organ_label_values = sorted(organ_label_values)
        if not present.intersection(organ_label_values):
            notes.append(f"{organ}: no voxel with label value {'/'.join(map(str, organ_label_values))} "
                         f"in {label_path}; organ left out")
            continue
        mask = sitk.GetImageFromArray(np.isin(values, organ_label_values).astype(np.uint8))
        mask.CopyInformation(label)
        masks[organ] = mask
    if not masks:
        raise DataError(label_path, f"label map holds none of the label values listed in {map_name} "
                                    f"(values present: {sorted(present) or 'none, all zero'})")
    unused = sorted(present - {v for vs in organ_values.values() for v in vs} - set(known_values))
    if unused:
        notes.append(f"label values {unused} in {label_path} are not mapped to an organ; ignored")
    return masks, notes


def assign_splits(case_ids, splits_csv=None, fractions=DEFAULT_FRACTIONS, seed: int = 0):
    """Split for every case: from splits_csv (columns case_id,split) if given, else a seeded shuffle.

    Returns (dict case_id -> split, notes). With a splits.csv, cases it does not list are left out
    (a note each), so a user can exclude cases; rows naming unknown cases are noted too. The
    seeded split depends only on the sorted case ids, the fractions and the seed: the same source
    folder always gets the same split, which keeps resumed conversions consistent. Adding cases to
    the folder reshuffles it; use a splits.csv if the split must stay fixed as data grows.
    """
    case_ids = sorted(case_ids)
    notes = []
    if splits_csv is not None:
        wanted = read_splits_csv(splits_csv)
        for case_id in sorted(set(wanted) - set(case_ids)):
            notes.append((case_id, f"listed in {splits_csv} but not found in the source folder"))
        for case_id in case_ids:
            if case_id not in wanted:
                notes.append((case_id, f"not listed in {splits_csv}; left out"))
        return {c: wanted[c] for c in case_ids if c in wanted}, notes
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or np.any(fractions < 0) or fractions.sum() <= 0:
        raise ValueError(f"fractions must be three non-negative numbers (train, validation, test), not {fractions}")
    fractions = fractions / fractions.sum()
    n = len(case_ids)
    n_val, n_test = (int(round(f * n)) for f in fractions[1:])
    n_test = min(n_test, n)
    n_val = min(n_val, n - n_test)
    order = np.random.default_rng(seed).permutation(n)
    splits = {}
    for rank, i in enumerate(order):
        splits[case_ids[i]] = "test" if rank < n_test else "validation" if rank < n_test + n_val else "train"
    return splits, notes


def read_splits_csv(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "splits file missing")
    try:
        table = pd.read_csv(path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot read splits CSV ({error})") from None
    if not {"case_id", "split"} <= set(table.columns):
        raise DataError(path, f"needs columns case_id,split; has {', '.join(table.columns)}")
    splits = {}
    for row, (case_id, split) in enumerate(zip(table["case_id"], table["split"]), start=2):
        key = str(split).strip().lower()
        if key not in _SPLIT_ALIASES:
            raise DataError(path, f"line {row}: split {split!r} is not one of {', '.join(SPLITS)}")
        case_id = str(case_id).strip()
        if case_id in splits:
            raise DataError(path, f"line {row}: case {case_id!r} listed twice")
        splits[case_id] = _SPLIT_ALIASES[key]
    return splits


def split_items(case_args: dict, splits_csv=None, fractions=DEFAULT_FRACTIONS, seed: int = 0):
    """(items for run_conversion, notes) from {case_id: arg}, using assign_splits."""
    splits, notes = assign_splits(case_args, splits_csv, fractions, seed)
    items = [(case_id, splits[case_id], case_args[case_id]) for case_id in sorted(case_args) if case_id in splits]
    return items, notes


def add_common_cli_arguments(parser) -> None:
    """--source, --out, --splits, --seed, --overwrite, --quiet: the same flags for every adapter."""
    parser.add_argument("--source", required=True, type=Path, help="the dataset folder as downloaded")
    parser.add_argument("--out", required=True, type=Path, help="cases root to write (standard case layout)")
    parser.add_argument("--splits", type=Path, default=None,
                        help="CSV with columns case_id,split (train/validation/test); default: seeded split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fraction split (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="re-convert cases already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def finish_cli(summary: ConversionSummary) -> int:
    """Print the summary; exit status 1 when some case failed, so scripts notice."""
    print(summary)
    return 0 if summary.ok else 1


def adapter_main(main: Callable) -> Callable:
    """Wrap an adapter's `main`: a bad source is one line `error: <path>: <problem>` and exit 2;
    Ctrl-C prints what was converted so far and exits 130 (a rerun continues), no traceback."""
    import functools
    import sys

    @functools.wraps(main)
    def wrapped(argv=None) -> int:
        try:
            return main(argv)
        except ConversionInterrupted as interrupted:
            print(interrupted.summary)
            print("interrupted: run the same command again to continue", file=sys.stderr)
            return 130
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    return wrapped
