"""OpenKBP downloader against a local file:// mirror and a small fake HTTP server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from pathlib import Path

import pytest

from data_prep import download

# A tiny mirror: train pt_1 complete but for most organs (404s), train pt_2 without ct.csv (skipped),
# validation pt_201 with one organ. Sparse CSVs in the upstream format: header ",data".
MIRROR = {
    "train-pats/pt_1/ct.csv": ",data\n0,1024\n5,1100\n" + "".join(f"{i},{900 + i}\n" for i in range(10, 3000)),
    "train-pats/pt_1/voxel_dimensions.csv": "3.906\n3.906\n2.5\n",
    "train-pats/pt_1/Brainstem.csv": ",data\n17,\n18,\n",
    "train-pats/pt_1/Mandible.csv": ",data\n40,\n41,\n42,\n",
    "train-pats/pt_2/voxel_dimensions.csv": "3.906\n3.906\n2.5\n",
    "train-pats/pt_2/Brainstem.csv": ",data\n7,\n",
    "validation-pats/pt_201/ct.csv": ",data\n3,1000\n",
    "validation-pats/pt_201/voxel_dimensions.csv": "4.0\n4.0\n3.0\n",
    "validation-pats/pt_201/LeftParotid.csv": ",data\n9,\n",
}
PATIENTS = [1, 2, 201]
SPLITS = ("train-pats", "validation-pats")


def make_mirror(root: Path) -> Path:
    for relative, text in MIRROR.items():
        path = root / "provided-data" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "provided-data"


def assert_mirrored(dest: Path) -> None:
    for relative, text in MIRROR.items():
        if relative.startswith("train-pats/pt_2/"):
            continue  # no ct.csv: the whole patient is skipped
        assert (dest / "provided-data" / relative).read_text(encoding="utf-8") == text
    assert not (dest / "provided-data" / "train-pats" / "pt_2").exists()
    assert not list(dest.rglob("*.part-*"))
    files = sorted(p.relative_to(dest / "provided-data").as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == sorted(r for r in MIRROR if not r.startswith("train-pats/pt_2/"))


def test_patient_list_uses_the_upstream_ranges():
    everything = download.patient_list()
    assert len(everything) == 340 and everything[0] == ("train-pats", 1) and everything[-1] == ("test-pats", 340)
    assert download.patient_list(("validation-pats",), patients=[3, 201, 240, 241]) == [
        ("validation-pats", 201), ("validation-pats", 240)]
    assert download.parse_patients("1-3,201") == [1, 2, 3, 201]
    with pytest.raises(ValueError):
        download.patient_list(("train",))


def test_file_mirror_download_and_resume(tmp_path):
    base = make_mirror(tmp_path / "mirror").as_uri()
    dest = tmp_path / "dest"
    summary = download.download_openkbp(dest, base, SPLITS, PATIENTS, progress=False, retry_wait=0)
    assert summary.ok and len(summary.downloaded) == 7
    assert summary.skipped_patients == [("train-pats/pt_2", "no ct.csv upstream")]
    assert ("train-pats/pt_1", "Larynx.csv") in summary.absent and len(summary.absent) == 5 + 6
    assert_mirrored(dest)

    again = download.download_openkbp(dest, base, SPLITS, PATIENTS, progress=False, retry_wait=0)
    assert again.downloaded == [] and again.present == 7 and again.ok


class MirrorHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the mirror folder; the server's fault table breaks chosen files on purpose."""

    def do_GET(self):
        faults = self.server.faults
        self.server.requests.append(self.path)
        name = self.path.split("/provided-data/", 1)[-1]
        if faults.get(name) == "truncate-once":
            faults[name] = "done"
            body = (Path(self.directory) / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])  # then the connection closes: a broken transfer
            self.close_connection = True
            return
        if faults.get(name) == "error":
            self.send_error(503, "unavailable")
            return
        super().do_GET()

    def translate_path(self, path):
        return str(Path(self.directory) / path.split("/provided-data/", 1)[-1].split("?")[0])

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory: Path, faults: dict):
    handler = functools.partial(MirrorHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.faults, server.requests = faults, []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/provided-data"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_download_with_404s_broken_transfer_stale_part_and_resume(tmp_path):
    mirror = make_mirror(tmp_path / "mirror")
    dest = tmp_path / "dest"
    patient_dir = dest / "provided-data" / "train-pats" / "pt_1"
    patient_dir.mkdir(parents=True)
    (patient_dir / "ct.csv.part-deadbeef").write_text(",data\n0,10", encoding="utf-8")  # left by an interrupted run
    (patient_dir / "voxel_dimensions.csv").write_text(MIRROR["train-pats/pt_1/voxel_dimensions.csv"], encoding="utf-8")

    with serve(mirror, {"train-pats/pt_1/ct.csv": "truncate-once"}) as (server, base):
        summary = download.download_openkbp(dest, base, SPLITS, PATIENTS, progress=False, timeout=5,
                                            retries=2, retry_wait=0)
        requests = list(server.requests)
    assert summary.ok, summary
    assert summary.present == 1 and len(summary.downloaded) == 6
    assert requests.count("/provided-data/train-pats/pt_1/ct.csv") == 2  # broken once, then whole
    assert "/provided-data/train-pats/pt_1/voxel_dimensions.csv" not in requests  # already there
    assert not any(r.startswith("/provided-data/train-pats/pt_2/") and not r.endswith("ct.csv") for r in requests)
    assert summary.skipped_patients == [("train-pats/pt_2", "no ct.csv upstream")]
    assert_mirrored(dest)


def test_http_server_errors_are_retried_then_reported(tmp_path):
    mirror = make_mirror(tmp_path / "mirror")
    dest = tmp_path / "dest"
    with serve(mirror, {"validation-pats/pt_201/LeftParotid.csv": "error"}) as (server, base):
        summary = download.download_openkbp(dest, base, ("validation-pats",), [201], progress=False,
                                            timeout=5, retries=1, retry_wait=0)
        requests = list(server.requests)
    assert requests.count("/provided-data/validation-pats/pt_201/LeftParotid.csv") == 2
    assert [url for url, _ in summary.failed] == [f"{base}/validation-pats/pt_201/LeftParotid.csv"]
    assert "503" in summary.failed[0][1] and "FAILED" in str(summary)
    assert not (dest / "provided-data" / "validation-pats" / "pt_201" / "LeftParotid.csv").exists()
    assert (dest / "provided-data" / "validation-pats" / "pt_201" / "ct.csv").is_file()
    assert not list(dest.rglob("*.part-*"))
