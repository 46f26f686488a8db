"""Argument types and output checks shared by the commands: a bad argument or an output that cannot
be written is found before any computation, and results are written atomically."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from rprloc_core.errors import DataError
from rprloc_core.rprloc.config import MOVES, STEPS


def positive_int(limit: int | None = None):
    """argparse type: an integer >= 1 (and <= limit)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
        if limit is not None and value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit}, got {value}")
        return value
    return parse


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def unit_interval(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, got {value:g}")
    return value


def step_list(text: str) -> tuple:
    """argparse type: comma-separated schedule steps (coarse, fine, average, scatter), starting with a move."""
    steps = tuple(step.strip() for step in text.split(",") if step.strip())
    unknown = [step for step in steps if step not in STEPS]
    if not steps or unknown:
        raise argparse.ArgumentTypeError(f"steps are a comma-separated list of {', '.join(STEPS)}, got {text!r}")
    if steps[0] not in MOVES:
        raise argparse.ArgumentTypeError(f"the first step must move the runs (coarse or fine), not {steps[0]}")
    return steps


def check_writable(path, what: str) -> Path:
    """Fail now, not after the computation, if `path` cannot be written: its folder must exist and
    take a file, and the path must not be a folder."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, f"{what} is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DataError(path, f"cannot write the {what}: folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rprloc-write-test-"):
            pass
    except OSError as error:
        raise DataError(path, f"cannot write the {what} in {folder} ({error.strerror or error})") from None
    return path


def write_atomically(path: Path, write) -> None:
    """`write(temporary path)`, then rename onto `path`: a failure never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
