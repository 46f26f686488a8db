"""Get a profile's data ready: fetch or generate, convert to the standard layout, preprocess.

Notebook 01 calls `prepare`; every later notebook only reads what it left behind through
`rprloc_core.dataset`.
"""

from __future__ import annotations

import time

from rprloc_core.data import dataset
from rprloc_core.data.phantom import write_phantom_dataset
from rprloc_core.data.preprocess import preprocess_all

from . import openkbp


def prepare(settings, source=None, progress: bool = True, limit: int | None = None) -> dict:
    """Returns timings and the conversion/preprocessing summaries."""
    data = settings.data
    cases_root = dataset.cases_root(settings)
    report = {"dataset": data.dataset, "cases_root": str(cases_root)}
    start = time.perf_counter()
    if data.dataset == "phantom":
        write_phantom_dataset(cases_root, data.n_train, data.n_validation, data.n_test, seed=settings.seed)
        report["source"] = "generated phantom"
    elif data.dataset == "openkbp":
        upstream = openkbp.resolve_source(source, data.source)
        if upstream is None:
            from .download import download_openkbp

            upstream = dataset.dataset_root(settings) / "upstream"
            download_openkbp(upstream, progress=progress)
        report["source"] = str(upstream)
        summary = openkbp.convert_openkbp(upstream, cases_root, progress=progress, limit=limit)
        report["conversion"] = summary
    report["convert_s"] = time.perf_counter() - start
    start = time.perf_counter()
    table = dataset.case_table(settings)
    result = preprocess_all(cases_root, table["case_id"].tolist(), dataset.preprocess_params(settings),
                            dataset.cache_root(settings), workers=settings.preprocess.workers,
                            progress=progress)
    report["preprocess_s"] = time.perf_counter() - start
    report["preprocess_failed"] = result["failed"]
    report["n_cases"] = len(table)
    return report


def main(argv=None) -> int:
    """python -m data_prep.prepare --profile demo [--source DIR] [--limit N]"""
    import argparse
    import sys

    from rprloc_core.errors import RprlocError
    from rprloc_core.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m data_prep.prepare",
                                     description="Fetch, convert and preprocess a profile's data.")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--source", default=None, help="an OpenKBP upstream copy (default: as notebook 01)")
    parser.add_argument("--limit", type=int, default=None, help="first N patients per split only")
    args = parser.parse_args(argv)
    try:
        report = prepare(load_settings(args.profile), source=args.source, limit=args.limit)
    except RprlocError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{report['n_cases']} cases ready ({report['source'] if 'source' in report else report['dataset']}); "
          f"{len(report['preprocess_failed'])} failed preprocessing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
