"""Tests of the PHOENIX downloader against a local HTTP server on 127.0.0.1.

The server serves small files in exactly the Göttingen HiResFITS layout and can
drop connections mid-file, ignore Range requests or lack a grid point.  No test
touches the real network.
"""

import http.server
import threading
import urllib.parse

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

import remap
from remap.cli.app import cli
from remap.libraries import fetch as fetchmod
from remap.libraries.fetch import FetchError, download_file, fetch_phoenix
from remap.libraries.phoenix import GRID_NAME, WAVE_FILE_NAME, grid_relative_path

WAVE = np.linspace(4700.0, 5900.0, 3001)
PREFIX = "/data/HiResFITS/"

# the box fetched by most tests: 2 teff x 2 logg x 2 feh = 8 points
BOX = dict(teff=(5700, 5800), logg=(4.0, 4.5), feh=(-0.5, 0.0))
POINTS = [(t, g, f, 0.0) for t in (5700.0, 5800.0) for g in (4.0, 4.5) for f in (-0.5, 0.0)]
MISSING = (5800.0, 4.0, -0.5, 0.0)  # not on the server in the "holey" tree


def write_point(path, teff, logg, feh, alpha):
    line = 1 - 0.3 * np.exp(-0.5 * ((WAVE - 5200 - 10 * logg) / 2.0) ** 2)
    flux = (teff ** 4 * 1e-2 * (1 + feh / 4) * line).astype(">f4")
    hdu = fits.PrimaryHDU(flux)
    hdu.header.update(PHXTEFF=teff, PHXLOGG=logg, PHXM_H=feh, PHXALPHA=alpha,
                      BUNIT="erg/s/cm^2/cm")
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu.writeto(path)


@pytest.fixture(scope="module")
def server_tree(tmp_path_factory):
    """The server's files: WAVE plus every point of POINTS except MISSING."""
    root = tmp_path_factory.mktemp("server") / "data" / "HiResFITS"
    root.mkdir(parents=True)
    fits.PrimaryHDU(WAVE.astype(">f8")).writeto(root / WAVE_FILE_NAME)
    for p in POINTS:
        if p != MISSING:
            write_point(root / GRID_NAME / grid_relative_path(*p), *p)
    return root


class GridServer:
    """A threaded HTTP server of ``root`` under ``/data/HiResFITS/``.

    Parameters
    ----------
    root : Path
        Folder served.
    ignore_range : bool
        Answer every request with 200 and the whole file.
    drop_first : set of str
        Served paths (relative to ``root``) whose first request is cut after half
        the body, with the connection closed.
    stall_at : dict
        ``path -> byte``: the server never sends bytes beyond that offset.
    """

    def __init__(self, root, ignore_range=False, drop_first=(), stall_at=None):
        self.root = root
        self.ignore_range = ignore_range
        self.drop_first = set(drop_first)
        self.stall_at = dict(stall_at or {})
        self.log = []  # (relative path, Range header or None, status)
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server._serve(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{PREFIX}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def requests_for(self, rel):
        return [entry for entry in self.log if entry[0] == rel]

    def _serve(self, h):
        path = urllib.parse.unquote(urllib.parse.urlsplit(h.path).path)
        rel = path[len(PREFIX):] if path.startswith(PREFIX) else None
        file = self.root / rel if rel else None
        range_header = h.headers.get("Range")
        if file is None or ".." in rel or not file.is_file():
            self._record(rel, range_header, 404)
            h.send_error(404)
            return
        data = file.read_bytes()
        total = len(data)
        start = 0
        if range_header and not self.ignore_range:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            if start >= total:
                self._record(rel, range_header, 416)
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{total}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            status = 206
        else:
            status = 200
        with self._lock:
            first = not self.requests_for(rel)
        self._record(rel, range_header, status)
        h.send_response(status)
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        h.send_header("Content-Length", str(total - start))
        h.send_header("Content-Type", "application/fits")
        h.end_headers()
        body = data[start:]
        if rel in self.drop_first and first:
            body = body[:len(body) // 2]
        if rel in self.stall_at:
            body = body[:max(0, self.stall_at[rel] - start)]
        h.wfile.write(body)
        h.wfile.flush()
        h.close_connection = True

    def _record(self, rel, range_header, status):
        with self._lock:
            self.log.append((rel, range_header, status))


def server_rel(p):
    return f"{GRID_NAME}/{grid_relative_path(*p)}"


def write_part(dest, p, data):
    """An interrupted earlier download of grid point ``p``: its ``.part`` file under ``dest``."""
    part = dest / (grid_relative_path(*p) + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data)
    return part


def assert_same_files(server_root, dest, points):
    assert (dest / WAVE_FILE_NAME).read_bytes() == (server_root / WAVE_FILE_NAME).read_bytes()
    for p in points:
        got = (dest / grid_relative_path(*p)).read_bytes()
        assert got == (server_root / server_rel(p)).read_bytes()
    assert not list(dest.rglob("*.part"))


# ----------------------------------------------------------------------------- grid values

def test_grid_values_follow_husser2013():
    t = fetchmod.TEFF_VALUES
    assert t[0] == 2300 and t[-1] == 12000
    assert set(np.diff(t[t <= 7000])) == {100} and set(np.diff(t[t >= 7000])) == {200}
    assert list(fetchmod.FEH_VALUES) == [-4, -3, -2, -1.5, -1, -0.5, 0, 0.5, 1]
    assert list(fetchmod.LOGG_VALUES) == [0.5 * i for i in range(13)]
    # the paper's subset (Gilda 2025): 41 teff x 10 logg x 7 feh
    pts = fetchmod.phoenix_points(teff=(3000, 7000), logg=(1.0, 5.5), feh=(-2, 1))
    assert len(pts) == 41 * 10 * 7


def test_selection_errors_and_alpha_limits():
    with pytest.raises(ValueError, match="selects no value .* grid values: 2300"):
        fetchmod.select_values(fetchmod.TEFF_VALUES, (12100, 13000), "teff")
    with pytest.raises(ValueError, match="low > high"):
        fetchmod.select_values(fetchmod.LOGG_VALUES, (5, 4), "logg")
    with pytest.raises(ValueError, match="number or a"):
        fetchmod.select_values(fetchmod.LOGG_VALUES, "abc", "logg")
    # alpha-enhanced models exist only for [Fe/H] <= 0 and 3500-8000 K
    pts = fetchmod.phoenix_points(teff=(3400, 3600), logg=4.5, feh=(0, 0.5), alpha=0.4)
    assert pts == [(3500.0, 4.5, 0.0, 0.4), (3600.0, 4.5, 0.0, 0.4)]
    with pytest.raises(ValueError, match="alpha-enhanced models exist only"):
        fetchmod.phoenix_points(teff=5800, logg=4.5, feh=1.0, alpha=0.2)


def test_base_url_resolution(monkeypatch):
    monkeypatch.delenv(fetchmod.BASE_URL_ENV, raising=False)
    assert fetchmod.resolve_base_url() == fetchmod.DEFAULT_BASE_URL
    monkeypatch.setenv(fetchmod.BASE_URL_ENV, "http://mirror.example/HiResFITS")
    assert fetchmod.resolve_base_url() == "http://mirror.example/HiResFITS/"
    assert fetchmod.resolve_base_url("https://x.org/a/") == "https://x.org/a/"
    with pytest.raises(ValueError, match="http\\(s\\) URL"):
        fetchmod.resolve_base_url("ftp://phoenix.astro.physik.uni-goettingen.de/HiResFITS/")


def test_default_cache_dir_is_platformdirs():
    import platformdirs
    assert fetchmod.default_cache_dir() == \
        fetchmod.Path(platformdirs.user_cache_dir("remap")) / "phoenix"


# ----------------------------------------------------------------------------- downloads

def test_fetch_reads_back(server_tree, tmp_path):
    dest = tmp_path / "grid"
    present = [p for p in POINTS if p != MISSING]
    with GridServer(server_tree) as srv:
        report = fetch_phoenix(**{**BOX, "teff": 5700}, dest=dest, base_url=srv.url,
                               workers=3, progress=False, backoff=0)
    assert report.ok
    assert sorted(report.downloaded) == sorted(
        [WAVE_FILE_NAME] + [grid_relative_path(*p) for p in present if p[0] == 5700])
    assert report.bytes_downloaded == sum((dest / r).stat().st_size for r in report.downloaded)
    assert_same_files(server_tree, dest, [p for p in present if p[0] == 5700])
    lib = remap.get_library("phoenix", directory=dest, wave_range=(4850, 5750))
    assert len(lib.grid) == 4
    spec = lib.spectrum(5700, 4.5, -0.5)
    assert spec.meta["feh"] == -0.5


def test_dropped_connection_resumes_with_range(server_tree, tmp_path):
    dest = tmp_path / "grid"
    p = (5700.0, 4.5, 0.0, 0.0)
    with GridServer(server_tree, drop_first={server_rel(p), WAVE_FILE_NAME}) as srv:
        report = fetch_phoenix(teff=5700, logg=4.5, feh=0.0, dest=dest, base_url=srv.url,
                               workers=2, progress=False, backoff=0)
        log = srv.requests_for(server_rel(p))
        wave_log = srv.requests_for(WAVE_FILE_NAME)
    assert report.ok and len(report.downloaded) == 2
    size = (server_tree / server_rel(p)).stat().st_size
    # first request: whole file, cut at half; second: a Range request from the cut
    assert log == [(server_rel(p), None, 200), (server_rel(p), f"bytes={size // 2}-", 206)]
    assert [entry[2] for entry in wave_log] == [200, 206]
    assert_same_files(server_tree, dest, [p])


def test_server_ignoring_range_restarts_file(server_tree, tmp_path):
    dest = tmp_path / "grid"
    p = (5800.0, 4.5, 0.0, 0.0)
    full = (server_tree / server_rel(p)).read_bytes()
    write_part(dest, p, full[:1000])
    with GridServer(server_tree, ignore_range=True, drop_first={server_rel(p)}) as srv:
        report = fetch_phoenix(teff=5800, logg=4.5, feh=0.0, dest=dest, base_url=srv.url,
                               workers=1, progress=False, backoff=0)
        log = srv.requests_for(server_rel(p))
    assert report.ok
    # Range asked twice (from the old .part, then from the cut), answered 200 each time
    assert log == [(server_rel(p), "bytes=1000-", 200),
                   (server_rel(p), f"bytes={len(full) // 2}-", 200)]
    assert_same_files(server_tree, dest, [p])


def test_resume_from_existing_part_and_skip_complete(server_tree, tmp_path):
    dest = tmp_path / "grid"
    p1, p2 = (5700.0, 4.0, 0.0, 0.0), (5700.0, 4.0, -0.5, 0.0)
    write_part(dest, p1, (server_tree / server_rel(p1)).read_bytes()[:4000])
    done = dest / grid_relative_path(*p2)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_bytes((server_tree / server_rel(p2)).read_bytes())
    with GridServer(server_tree) as srv:
        report = fetch_phoenix(teff=5700, logg=4.0, feh=(-0.5, 0), dest=dest,
                               base_url=srv.url, workers=2, progress=False, backoff=0)
        assert srv.requests_for(server_rel(p1)) == [(server_rel(p1), "bytes=4000-", 206)]
        assert srv.requests_for(server_rel(p2)) == []
    assert report.skipped == [grid_relative_path(*p2)]
    assert sorted(report.downloaded) == sorted([WAVE_FILE_NAME, grid_relative_path(*p1)])
    assert_same_files(server_tree, dest, [p1, p2])
    # a second run finds everything complete and makes no request
    with GridServer(server_tree) as srv:
        again = fetch_phoenix(teff=5700, logg=4.0, feh=(-0.5, 0), dest=dest,
                              base_url=srv.url, progress=False)
        assert srv.log == []
    assert again.downloaded == [] and len(again.skipped) == 3


def test_oversized_part_restarts(server_tree, tmp_path):
    dest = tmp_path / "grid"
    p = (5700.0, 4.0, 0.0, 0.0)
    full = (server_tree / server_rel(p)).read_bytes()
    write_part(dest, p, full + b"junk")  # longer than the server's file: HTTP 416
    path = dest / grid_relative_path(*p)
    with GridServer(server_tree) as srv:
        assert download_file(srv.url + server_rel(p), path, backoff=0)[0] == "downloaded"
        assert [e[2] for e in srv.log] == [416, 200]
    assert path.read_bytes() == full


def test_404_reported_and_others_continue(server_tree, tmp_path):
    dest = tmp_path / "grid"
    with GridServer(server_tree) as srv:
        report = fetch_phoenix(**BOX, dest=dest, base_url=srv.url, workers=4,
                               progress=False, backoff=0)
        # a 404 is not retried
        assert len(srv.requests_for(server_rel(MISSING))) == 1
    assert not report.ok
    assert list(report.failed) == [grid_relative_path(*MISSING)]
    assert "HTTP 404" in report.failed[grid_relative_path(*MISSING)]
    assert len(report.downloaded) == 1 + len(POINTS) - 1
    assert not (dest / grid_relative_path(*MISSING)).exists()
    assert "8 downloaded" in report.summary() and "1 failed" in report.summary()
    lib = remap.get_library("phoenix", directory=dest)
    assert len(lib.grid) == 7
    assert len(lib.holes()) == 1


def test_size_mismatch_retried_then_error(server_tree, tmp_path):
    p = (5700.0, 4.0, 0.0, 0.0)
    path = tmp_path / "grid" / grid_relative_path(*p)
    with GridServer(server_tree, stall_at={server_rel(p): 5000}) as srv:
        with pytest.raises(FetchError, match=r"failed after 3 attempt\(s\): connection closed "
                                             r"after 5000 of \d+ bytes"):
            download_file(srv.url + server_rel(p), path, retries=2, backoff=0)
        assert len(srv.log) == 3
    assert not path.exists()
    # the partial file stays for a later resume
    assert path.with_name(path.name + ".part").stat().st_size == 5000


def test_connection_refused_is_retried_then_reported(tmp_path):
    with GridServer(tmp_path) as srv:
        url = srv.url
    # the server is shut down: nothing listens on the port any more
    with pytest.raises(FetchError, match="failed after 2 attempt"):
        download_file(url + WAVE_FILE_NAME, tmp_path / "w.fits", retries=1, backoff=0,
                      timeout=5)


def test_fetch_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        fetch_phoenix(teff=5700, logg=4.5, feh=0, dest=tmp_path, workers=0)
    with pytest.raises(ValueError, match="teff"):
        fetch_phoenix(teff=(100, 200), logg=4.5, feh=0, dest=tmp_path,
                      base_url="http://127.0.0.1:9/")


# ----------------------------------------------------------------------------- CLI

def test_cli_fetch(server_tree, tmp_path):
    dest = tmp_path / "grid"
    runner = CliRunner()
    with GridServer(server_tree) as srv:
        args = ["library", "fetch", "phoenix", "--teff", "5700:5800", "--logg", "4.5",
                "--feh", "-0.5:0", "--dest", str(dest), "--workers", "2"]
        result = runner.invoke(cli, args + ["--base-url", srv.url, "--no-progress"])
        assert result.exit_code == 0, result.output
        assert "5 downloaded" in result.output and "0 failed" in result.output
        assert f'directory="{dest}"' in result.output
        # the base URL from the environment; the progress bar on; all files skipped
        again = runner.invoke(cli, args, env={"REMAP_PHOENIX_URL": srv.url})
        assert again.exit_code == 0, again.output
        assert "0 downloaded" in again.output and "5 skipped" in again.output
    lib = remap.get_library("phoenix", directory=dest)
    assert sorted(set(lib.grid["feh"])) == [-0.5, 0.0]


def test_cli_fetch_failure_exit_code(server_tree, tmp_path):
    runner = CliRunner()
    with GridServer(server_tree) as srv:
        result = runner.invoke(cli, ["library", "fetch", "phoenix", "--teff", "5800",
                                     "--logg", "4.0", "--feh", "-0.5", "--dest",
                                     str(tmp_path), "--base-url", srv.url, "--no-progress"])
    assert result.exit_code == 1
    assert "1 failed" in result.output
    assert "HTTP 404" in result.output


def test_cli_bad_ranges(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["library", "fetch", "phoenix", "--teff", "7000:3000",
                                 "--dest", str(tmp_path)])
    assert result.exit_code == 2
    assert "--teff must be a number or LOW:HIGH" in result.output
    result = runner.invoke(cli, ["library", "fetch", "phoenix", "--teff", "20000:30000",
                                 "--dest", str(tmp_path), "--base-url", "http://127.0.0.1:9/"])
    assert result.exit_code == 2
    assert "selects no value" in result.output
    result = runner.invoke(cli, ["library", "fetch", "kurucz"])
    assert result.exit_code == 2
