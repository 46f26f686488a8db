"""`rprloc localize` on a series of queries: one command for N scans against N commands, same run.

    python benchmarks/localize_series.py --profile demo [--queries 5] [--repeats 2]

A researcher with one labelled support and many scans runs the command once with every query
(`--query a.nii.gz b.nii.gz ...`): the interpreter, the models and the support are loaded once and
the support's embeddings computed once, so each further query costs its own localization only. This
script writes the first support of notebook 03 (CT + 4 masks) and the first N test queries as NIfTI,
then times, side by side: N single-query commands, one command with the N queries, and one command
with the first query alone. Each figure is the median wall time of `--repeats` runs of the whole
process (after one run that warms the file cache), and the script checks that the series gives
every query the same boxes as its single-query command. Needs the prepared dataset; writes
results/<profile>/benchmarks/localize_series.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent
ORGANS = ("Brainstem", "Mandible", "LeftParotid", "RightParotid")


def write_inputs(settings, folder: Path, n_queries: int) -> tuple[list[str], list[Path]]:
    """The support and N queries as files; returns (support arguments, query paths)."""
    from rprloc_core.data import dataset
    from rprloc_core.evaluation.protocol import one_shot_protocol

    protocol = one_shot_protocol(settings)
    table = dataset.case_table(settings).set_index("case_id")
    support = dataset.load_case(settings, protocol.supports[0])
    (folder / "labels").mkdir()
    sitk.WriteImage(support.to_sitk(support.hu), str(folder / "support.nii.gz"))
    for organ in ORGANS:
        sitk.WriteImage(support.to_sitk(support.labels[organ].astype(np.uint8)), str(folder / "labels" / f"{organ}.nii.gz"))
    queries = []
    for query_id in [q for q in protocol.queries if all(o in table.loc[q, "organs"] for o in ORGANS)][:n_queries]:
        case = dataset.load_case(settings, query_id)
        path = folder / f"{query_id}.nii.gz"
        sitk.WriteImage(case.to_sitk(case.hu), str(path))
        queries.append(path)
    return ["--support", str(folder / "support.nii.gz"), "--support-labels", str(folder / "labels")], queries


def timed(command: list[str], repeats: int) -> float:
    walls = []
    for _ in range(repeats + 1):                          # the first run warms the file cache
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls[1:])


def markdown(report: dict) -> str:
    n, organs = report["queries"], report["organs"]
    rows = [("one query alone", report["one_query_s"], 1),
            (f"{n} commands, one query each", report["separate_s"], n),
            (f"one command, {n} queries", report["series_s"], n)]
    head = (f"`rprloc localize`, {n} queries x {organs} organs, release weights, default schedule; wall time of "
            f"the whole process, median of {report['repeats']} runs ({report['cpu_model']}, {report['cpu_count']} cores, "
            f"{report['time']}).")
    tail = (f"One command for the series is {report['speedup']:.1f}x faster than {n} commands; each query after "
            f"the first adds {report['marginal_s_per_query']:.2f} s ({report['marginal_s_per_query'] / organs:.3f} s "
            f"per organ, reading and resampling the scan included). Boxes of the series equal those of single "
            f"commands: {report['same_boxes']}.")
    table = ["| how | total s | s per query | s per organ |", "|---|---|---|---|"]
    table += [f"| {how} | {total:.2f} | {total / count:.2f} | {total / count / organs:.3f} |" for how, total, count in rows]
    return "\n".join([head, "", *table, "", tail, ""])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if args.queries < 2:
        parser.error("--queries must be 2 or more")

    from rprloc_core.data.images import strip_image_suffix
    from rprloc_core.paths import results_dir
    from rprloc_core.reporting import cpu_model, write_json, write_text
    from rprloc_core.settings import load_settings

    settings = load_settings(args.profile)
    cli = [sys.executable, "-m", "rprloc_core.cli", "localize"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        support, queries = write_inputs(settings, tmp, args.queries)
        n = len(queries)
        if n < 2:
            raise SystemExit(f"only {n} test query holds all four organs: nothing to compare")
        one = timed([*cli, *support, "--query", str(queries[0]), "--out", str(tmp / "one.json")], args.repeats)
        separate = 0.0
        for i, query in enumerate(queries):
            separate += timed([*cli, *support, "--query", str(query), "--out", str(tmp / f"single{i}.json")],
                              args.repeats)
        series = timed([*cli, *support, "--query", *map(str, queries), "--out", str(tmp / "series")], args.repeats)
        same = all(json.loads((tmp / "series" / f"{strip_image_suffix(q.name)}.json").read_text())["organs"]
                   == json.loads((tmp / f"single{i}.json").read_text())["organs"] for i, q in enumerate(queries))
    report = {"benchmark": "localize_series", "profile": args.profile, "queries": n, "organs": len(ORGANS),
              "repeats": args.repeats, "one_query_s": one, "separate_s": separate, "series_s": series,
              "speedup": separate / series, "marginal_s_per_query": (series - one) / (n - 1), "same_boxes": same,
              "torch": __import__("torch").__version__, "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
              "load_average_1_5_15min": list(os.getloadavg()), "python": platform.python_version(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out = results_dir(args.profile) / "benchmarks" / "localize_series.json"
    write_json(report, out)
    write_text(markdown(report), out.with_suffix(".md"))
    print(markdown(report))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return report


if __name__ == "__main__":
    main()
