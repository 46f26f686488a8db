"""Download the OpenKBP files this project needs from the public upstream repository.

    download_openkbp(dest, base_url=OPENKBP_BASE_URL, splits=SPLITS, patients=None, progress=True,
                     timeout=60, retries=3, retry_wait=2.0) -> DownloadSummary

mirrors, under dest, the upstream layout (github.com/ababier/open-kbp, MIT licence):

    <dest>/provided-data/<split>/pt_<N>/{ct.csv, voxel_dimensions.csv, <Organ>.csv}

Only the CT, the voxel size and the seven organ masks are fetched (no dose files). Upstream,
an organ file exists only if the organ was contoured, so an HTTP 404 for it is normal; a patient
whose ct.csv is missing is skipped with a note (its other files are not requested).

Safe to interrupt and re-run: each file is downloaded to "<name>.part-<random>" in its folder and
renamed into place only when complete (and, when the server sent a Content-Length, of that length),
so a file that exists is complete and is not fetched again. Failed transfers (timeouts, broken
connections, HTTP 5xx) are retried `retries` times with a growing pause. urllib only; works with
https://, http:// and file:// base URLs (a missing file:// file counts as a 404).

CLI: python -m data_prep.download --dest DIR [--splits train-pats ...] [--patients 1-5,201]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

OPENKBP_BASE_URL = "https://raw.githubusercontent.com/ababier/open-kbp/master/provided-data"
SPLITS = ("train-pats", "validation-pats", "test-pats")
PATIENT_RANGES = {"train-pats": range(1, 201), "validation-pats": range(201, 241), "test-pats": range(241, 341)}
ORGAN_FILES = ("Brainstem", "SpinalCord", "RightParotid", "LeftParotid", "Esophagus", "Larynx", "Mandible")
PATIENT_FILES = ("ct.csv", "voxel_dimensions.csv") + tuple(f"{organ}.csv" for organ in ORGAN_FILES)
USER_AGENT = "rprloc-data-prep (urllib)"


class NotFound(Exception):
    """The server says the file does not exist (HTTP 404, or a missing file:// file)."""


@dataclass
class DownloadSummary:
    dest: Path
    downloaded: list = field(default_factory=list)   # paths written by this run
    present: int = 0                                   # files already there, not fetched again
    absent: list = field(default_factory=list)       # (patient, file) answered 404: organ not contoured
    skipped_patients: list = field(default_factory=list)  # (patient, reason)
    failed: list = field(default_factory=list)       # (url, message) after all retries

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        lines = [f"{self.dest}: {len(self.downloaded)} files downloaded, {self.present} already there, "
                 f"{len(self.absent)} organ files absent upstream (not contoured), "
                 f"{len(self.skipped_patients)} patients skipped, {len(self.failed)} failed"]
        lines += [f"  skipped {p}: {reason}" for p, reason in self.skipped_patients]
        lines += [f"  FAILED {url}: {message}" for url, message in self.failed]
        return "\n".join(lines)


def patient_list(splits=SPLITS, patients=None) -> list[tuple[str, int]]:
    """[(split, patient number)] for the chosen splits, optionally only the given patient numbers."""
    unknown = set(splits) - set(PATIENT_RANGES)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; choose from {SPLITS}")
    wanted = None if patients is None else {int(p) for p in patients}
    return [(split, n) for split in splits for n in PATIENT_RANGES[split] if wanted is None or n in wanted]


def fetch(url: str, target: Path, timeout: float, retries: int, retry_wait: float) -> None:
    """Download url to target atomically; raises NotFound, or OSError after the last retry."""
    target.parent.mkdir(parents=True, exist_ok=True)
    last_error = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(retry_wait * attempt)
        partial = target.with_name(f"{target.name}.part-{uuid.uuid4().hex[:8]}")
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
                expected = response.headers.get("Content-Length")  # file:// responses send one too
            if expected is not None and partial.stat().st_size != int(expected):
                raise http.client.IncompleteRead(b"", int(expected) - partial.stat().st_size)
            os.replace(partial, target)
            return
        except urllib.error.HTTPError as error:
            if error.code == 404:
                raise NotFound(url) from None
            if error.code < 500 and error.code != 429:  # other client errors will not heal by retrying
                raise OSError(f"HTTP {error.code} {error.reason}") from None
            last_error = f"HTTP {error.code} {error.reason}"
        except urllib.error.URLError as error:
            if isinstance(error.reason, FileNotFoundError):  # file:// mirror without this file
                raise NotFound(url) from None
            last_error = f"{type(error.reason).__name__}: {error.reason}"
        except (http.client.HTTPException, OSError) as error:  # timeouts, resets, short reads
            last_error = f"{type(error).__name__}: {error}"
        finally:
            partial.unlink(missing_ok=True)
    raise OSError(f"gave up after {retries + 1} attempts; last error: {last_error}")


def remove_stale_parts(folder: Path) -> None:
    """Partial files left by an interrupted run (they never count as downloaded)."""
    if folder.is_dir():
        for stale in folder.glob("*.part-*"):
            stale.unlink(missing_ok=True)


def download_openkbp(dest, base_url: str = OPENKBP_BASE_URL, splits=SPLITS, patients=None, progress: bool = True,
                     timeout: float = 60, retries: int = 3, retry_wait: float = 2.0) -> DownloadSummary:
    """Mirror provided-data/<split>/pt_<N>/ files into <dest>/provided-data; see the module docstring."""
    dest = Path(dest)
    base_url = base_url.rstrip("/")
    summary = DownloadSummary(dest)
    todo = patient_list(splits, patients)
    bar = tqdm(todo, desc="OpenKBP download", unit="patient", disable=not progress)
    for split, number in bar:
        patient = f"pt_{number}"
        folder = dest / "provided-data" / split / patient
        bar.set_postfix_str(f"{split}/{patient}")
        remove_stale_parts(folder)
        for name in PATIENT_FILES:
            target = folder / name
            if target.is_file():
                summary.present += 1
                continue
            url = f"{base_url}/{split}/{patient}/{name}"
            try:
                fetch(url, target, timeout, retries, retry_wait)
            except NotFound:
                if name == "ct.csv":
                    summary.skipped_patients.append((f"{split}/{patient}", "no ct.csv upstream"))
                    break  # nothing else of this patient is useful
                summary.absent.append((f"{split}/{patient}", name))
                continue
            except OSError as error:
                summary.failed.append((url, str(error)))
                if progress:
                    tqdm.write(f"FAILED {url}: {error}")
                if name == "ct.csv":
                    break
                continue
            summary.downloaded.append(target)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # a skipped patient leaves no empty folder behind
    bar.close()
    return summary


def parse_patients(text: str | None):
    """'1-5,201' -> [1, 2, 3, 4, 5, 201]; None -> None (all patients)."""
    if not text:
        return None
    numbers = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        numbers += range(int(lo), int(hi or lo) + 1)
    return numbers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.download", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", required=True, type=Path, help="folder that will hold provided-data/")
    parser.add_argument("--base-url", default=OPENKBP_BASE_URL, help=f"default {OPENKBP_BASE_URL}")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--patients", default=None, help="patient numbers, e.g. 1-5,201 (default: all)")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    summary = download_openkbp(args.dest, args.base_url, args.splits, parse_patients(args.patients),
                               progress=not args.quiet, timeout=args.timeout, retries=args.retries)
    print(summary)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
