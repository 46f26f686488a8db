"""The command line the project's trainers share (`retrain`, `detector_predictions`,
`pin_predictions`): train or resume a profile's models in the data folder, always with
`weights.source = "train"` (a release is never trained over), and with `--publish` copy them into
the release folder, over an existing release only with `--overwrite`."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from rprloc_core.errors import RprlocError
from rprloc_core.settings import load_settings, parse_assignments

SHOWN = ("name", "steps", "best_val_loss_mm2", "stopped", "last_loss")


def summary_line(summary: dict) -> str:
    """One trained model's summary as a line: the keys a reader checks first."""
    return ", ".join(f"{k} {v}" for k, v in summary.items() if k in SHOWN)


def run(argv, prog: str, description: str, train: Callable, publish: Callable, parallel_option: bool = True,
        only_option: bool = False) -> int:
    """Parse `argv`, then `train(settings, parallel)` -> summaries (dicts) and, with --publish,
    `publish(settings, overwrite)` -> lines saying what was published. With `only_option` the
    command takes `--only NAME ...` and passes `only` (None or the names) to both. Returns the exit
    status (2 with a one-line error for a project error: bad data, a release already there)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--set", nargs="*", dest="overrides", metavar="KEY=VALUE", help="profile settings to change")
    parser.add_argument("--publish", action="store_true", help="copy the trained models into the release folder")
    parser.add_argument("--overwrite", action="store_true", help="with --publish: replace an existing release")
    if parallel_option:
        parser.add_argument("--serial", action="store_true", help="one model at a time (default: two processes)")
    if only_option:
        parser.add_argument("--only", nargs="+", metavar="NAME",
                            help="train (and publish) only these models, keeping the release's others")
    args = parser.parse_args(argv)
    only = {"only": args.only} if only_option else {}
    try:
        settings = load_settings(args.profile, {**parse_assignments(args.overrides), "weights.source": "train"})
        for summary in train(settings, parallel=not getattr(args, "serial", False), **only):
            print(summary_line(summary))
        if args.publish:
            for line in publish(settings, overwrite=args.overwrite, **only):
                print(line)
    except RprlocError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
