"""Run the numbered notebooks of a profile with papermill and record what was run.

    python -m rprloc_core.reproduce --profile demo [--only 01 03] [--set rprloc.inference.k=10]
                                    [--param parallel=False]

`--set KEY=VALUE` overrides a setting of the profile (a dotted key of its TOML file; an unknown key
is an error before anything runs); every notebook gets the overrides as its `overrides` parameter
and passes them to `load_settings`, so they reach every computation, worker processes included.
`--param NAME=VALUE` sets one of the notebooks' own parameters (e.g. `parallel`, `limit`).

Notebook sources are the py:percent files `notebooks/NN_*.py` (the paired .ipynb are kept in step
by jupytext). Executed copies go to `results/<profile>/executed/`, and `manifest.json` records the
settings, overrides, parameters, seed, git commit, package versions and wall time of every
notebook. The notebooks run with torch's and oneDNN's instruction set capped at AVX2 (`KERNEL_ISA`),
so that every x86-64 machine gives the same numbers. A notebook that fails stops the run; the ones
before it keep their results. A demo run into the committed results/ also rewrites README.md's
results section from the summary notebook.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from rprloc_core.experiments.summary import update_readme
from rprloc_core.paths import PROJECT_ROOT, results_dir
from rprloc_core.reporting import portable_paths, write_json
from rprloc_core.settings import SettingsError, load_settings, parse_assignments

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
README_PROFILE = "demo"      # the profile whose summary is README.md's results section
PACKAGES = ("torch", "numpy", "SimpleITK", "pandas", "matplotlib", "papermill", "jupytext", "ipywidgets")


# The same numbers on every x86-64 machine. torch's own kernels and oneDNN use the widest vector
# instructions the CPU has, and AVX-512 rounds differently from AVX2. Most tables do not notice, but
# PIN's repeated moves and CC2D's arg-max carry the last bits into the boxes: on an AVX-512 EPYC
# (2026-11-28) five committed tables drifted past `compare_results`' tolerance, and with both capped
# at AVX2 none did. The notebooks' kernels (and their worker processes) inherit the cap; a value the
# user has set is kept.
KERNEL_ISA = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def cap_kernel_isa(machine: str | None = None) -> dict:
    """Cap torch's and oneDNN's instruction set at AVX2 for the processes started from here (on
    x86-64 only); returns the settings in force."""
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return {}
    for name, value in KERNEL_ISA.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in KERNEL_ISA}


def notebook_sources(only=None) -> list[Path]:
    sources = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    if only:
        sources = [s for s in sources if any(s.name.startswith(str(o).zfill(2)) for o in only)]
        if not sources:
            raise SystemExit(f"no notebook matches --only {' '.join(map(str, only))}")
    return sources


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def notebook_parameters(source: Path) -> set[str]:
    """Names assigned in the notebook's `parameters` cell."""
    import jupytext

    cells = [c for c in jupytext.read(source).cells if "parameters" in c.metadata.get("tags", [])]
    names = set()
    for cell in cells:
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def execute(source: Path, parameters: dict, out_dir: Path, progress: bool = True) -> float:
    """Execute one notebook source with papermill; returns the wall time in seconds."""
    import jupytext
    import papermill

    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    output = out_dir / f"{source.stem}.ipynb"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        input_path = Path(tmp) / f"{source.stem}.ipynb"
        jupytext.write(notebook, input_path)
        papermill.execute_notebook(str(input_path), str(output), parameters=parameters,
                                   kernel_name="python3", cwd=str(PROJECT_ROOT), progress_bar=progress,
                                   log_output=False)
        wall = time.perf_counter() - start
        # papermill records the temporary input; name the source instead (no machine path committed)
        output.write_text(output.read_text(encoding="utf-8").replace(str(input_path), f"notebooks/{source.name}"),
                          encoding="utf-8")
    return wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo", help="smoke, demo or paper (default demo)")
    parser.add_argument("--only", nargs="*", help="notebook numbers to run, e.g. 01 03")
    parser.add_argument("--set", nargs="*", dest="overrides", metavar="KEY=VALUE",
                        help="profile settings to override, e.g. rprloc.inference.k=10")
    parser.add_argument("--param", nargs="*", dest="parameters", metavar="NAME=VALUE",
                        help="notebook parameters, e.g. parallel=False")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    overrides = parse_assignments(args.overrides)
    try:
        settings = load_settings(args.profile, overrides)   # fail early: bad profile name or key
    except SettingsError as error:
        raise SystemExit(f"error: {error}") from error
    sources = notebook_sources(args.only)
    parameters = parse_assignments(args.parameters)
    declared_by = {s: notebook_parameters(s) for s in sources}
    declared = set().union(*declared_by.values())
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise SystemExit(f"error: no notebook of this run has the parameter(s) {', '.join(unknown)}; "
                         f"they have: {', '.join(sorted(declared))}")
    results = results_dir(args.profile)
    manifest_path = results / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    kernel_isa = cap_kernel_isa()          # before any notebook starts: its kernel inherits the cap
    manifest.update({"profile": args.profile, "settings": settings.to_dict(), "overrides": overrides,
                     "seed": settings.seed,
                     "git_commit": git_commit(), "packages": package_versions(),
                     "machine": {"platform": platform.platform(), "processor": platform.machine(),
                                 "cpus": os.cpu_count(), "kernel_isa": kernel_isa}})
    manifest.setdefault("notebooks", {})
    manifest.pop("profile_settings", None)   # the untyped copy older runs wrote
    for source in sources:
        print(f"== {source.name} (profile {args.profile})", flush=True)
        given = {"profile": args.profile, "overrides": overrides,
                 **{k: v for k, v in parameters.items() if k in declared_by[source]}}
        wall = execute(source, given, results / "executed", progress=not args.quiet)
        executed = results / "executed" / f"{source.stem}.ipynb"
        executed.write_text(portable_paths(executed.read_text(encoding="utf-8")), encoding="utf-8")
        manifest["notebooks"][source.stem] = {
            "wall_time_s": round(wall, 1), "parameters": given,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git_commit": manifest["git_commit"]}
        write_json(manifest, manifest_path)
        print(f"   done in {wall:.0f} s", flush=True)
    if refresh_readme(args.profile, results, overrides):
        print(f"README.md: results section rewritten from {results.name}/summary.md", flush=True)
    return 0


def refresh_readme(profile: str, results: Path, overrides) -> bool:
    """README.md's results section is the summary notebook's summary.md of the README's profile,
    when that run wrote the committed results (not a scratch folder, no overrides)."""
    summary = results / "summary.md"
    committed = (PROJECT_ROOT / "results" / README_PROFILE).resolve()
    if profile != README_PROFILE or results.resolve() != committed or overrides or not summary.is_file():
        return False
    return update_readme(PROJECT_ROOT / "README.md", summary.read_text(encoding="utf-8"))


if __name__ == "__main__":
    sys.exit(main())
