"""Wall time to convert and preprocess every available patient, from an empty data directory.

    python benchmarks/data_pipeline.py --profile demo [--limit N]

Target (issue 2): all OpenKBP patients in under 5 minutes on 2 cores. Writes
results/<profile>/benchmarks/data_pipeline.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from rprloc_core.paths import results_dir
from rprloc_core.reporting import cpu_model, write_json
from rprloc_core.settings import load_settings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--limit", type=int, default=None, help="first N patients per split only")
    args = parser.parse_args(argv)
    settings = load_settings(args.profile)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RPRLOC_DATA_DIR"] = tmp  # empty: measure the whole pipeline, no cache
        from data_prep.prepare import prepare

        start = time.perf_counter()
        report = prepare(settings, limit=args.limit, progress=True)
        wall = time.perf_counter() - start
    figures = {
        "profile": args.profile, "n_cases": report["n_cases"], "source": report["source"],
        "convert_s": round(report["convert_s"], 1), "preprocess_s": round(report["preprocess_s"], 1),
        "total_s": round(wall, 1), "seconds_per_case": round(wall / max(report["n_cases"], 1), 3),
        "preprocess_workers": settings.preprocess.workers, "cpus": os.cpu_count(),
        "machine": platform.platform(), "cpu_model": cpu_model(), "target_total_s": 300,
    }
    print(f"{figures['n_cases']} cases: convert {figures['convert_s']} s + preprocess {figures['preprocess_s']} s "
          f"= {figures['total_s']} s ({figures['seconds_per_case']} s/case; target 300 s)")
    write_json(figures, results_dir(args.profile) / "benchmarks" / "data_pipeline.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
