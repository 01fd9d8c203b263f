"""Download a subset of the PHOENIX HiRes grid from the Göttingen Spectral Library.

:func:`fetch_phoenix` (and ``remap library fetch phoenix`` on the command line)
downloads the spectra of a box of labels plus the shared WAVE file into a
local folder that :class:`~remap.libraries.phoenix.PhoenixLibrary` reads as it
is::

    DEST/WAVE_PHOENIX-ACES-AGSS-COND-2011.fits
    DEST/Z-0.0/lte05800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits

Downloads run in a thread pool (standard-library `urllib`), each file through a
``.part`` file that is renamed into place (`os.replace`) only once its size
matches the server's ``Content-Length`` or ``Content-Range`` total.  An
interrupted download resumes from its ``.part`` file with an HTTP ``Range``
request (a server that ignores ``Range`` and answers 200 restarts the file);
complete files are skipped; dropped connections and server errors are retried
with exponential back-off; a file the server does not have (HTTP 404) is
reported and the others continue.

The grid values are those of Husser et al. (2013, A&A 553, A6, Table 2).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.client
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from .._util.validators import check_int
from .._version import __version__
from ..exceptions import RemapError
from .phoenix import GRID_NAME, WAVE_FILE_NAME, grid_relative_path

__all__ = ["DEFAULT_BASE_URL", "BASE_URL_ENV", "TEFF_VALUES", "LOGG_VALUES", "FEH_VALUES",
           "ALPHA_VALUES", "FetchError", "FetchReport", "default_cache_dir", "resolve_base_url",
           "select_values", "phoenix_points", "download_file", "fetch_phoenix"]

#: The Göttingen Spectral Library's HiRes FITS folder.
DEFAULT_BASE_URL = "https://phoenix.astro.physik.uni-goettingen.de/data/HiResFITS/"

#: Environment variable that overrides :data:`DEFAULT_BASE_URL` (e.g. a mirror).
BASE_URL_ENV = "REMAP_PHOENIX_URL"

# Grid values of PHOENIX-ACES-AGSS-COND-2011 (Husser et al. 2013, A&A 553, A6, Table 2):
#: T_eff (K): 2300-7000 in steps of 100, 7000-12000 in steps of 200.
TEFF_VALUES = np.concatenate([np.arange(2300, 7001, 100), np.arange(7200, 12001, 200)]
                             ).astype(float)
#: log g: 0.0-6.0 in steps of 0.5.
LOGG_VALUES = np.round(np.arange(0.0, 6.01, 0.5), 2)
#: [Fe/H]: -4.0 to -2.0 in steps of 1.0, -2.0 to +1.0 in steps of 0.5.
FEH_VALUES = np.array([-4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0])
#: [α/Fe]: -0.2 to +1.2 in steps of 0.2.
ALPHA_VALUES = np.round(np.arange(-0.2, 1.21, 0.2), 2) + 0.0
# alpha-enhanced models exist only for 3500 <= T_eff <= 8000 K and -3.0 <= [Fe/H] <= 0.0
# (Husser et al. 2013, Table 2, note)
_ALPHA_TEFF = (3500.0, 8000.0)
_ALPHA_FEH = (-3.0, 0.0)

_CHUNK = 1 << 16
_FITS_BLOCK = 2880
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)


class FetchError(RemapError):
    """A file could not be downloaded.

    Attributes
    ----------
    url : str
        The file's URL.
    status : int or None
        The HTTP status that ended the download, if any (404: not on the server).
    """

    def __init__(self, message, url="", status=None):
        super().__init__(message)
        self.url = url
        self.status = status


class _Retry(Exception):
    """A transient failure: the download is tried again."""


@dataclasses.dataclass
class FetchReport:
    """What :func:`fetch_phoenix` did.

    Attributes
    ----------
    dest : `pathlib.Path`
        The folder the grid was written to.
    downloaded : list of str
        Files downloaded in this run (paths relative to ``dest``).
    skipped : list of str
        Files already complete in ``dest``.
    failed : dict
        ``relative path -> reason`` of every file that could not be downloaded.
    bytes_downloaded : int
        Bytes received in this run.
    """

    dest: Path
    downloaded: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    failed: dict = dataclasses.field(default_factory=dict)
    bytes_downloaded: int = 0

    @property
    def ok(self):
        """True when no file failed."""
        return not self.failed

    def summary(self):
        """A short text: counts of downloaded / skipped / failed files and the failures.

        Returns
        -------
        text : str
        """
        lines = [f"PHOENIX fetch into {self.dest}: {len(self.downloaded)} downloaded "
                 f"({self.bytes_downloaded / 1e6:.1f} MB), {len(self.skipped)} skipped "
                 f"(already complete), {len(self.failed)} failed"]
        for rel, reason in sorted(self.failed.items()):
            lines.append(f"  FAILED {rel}: {reason}")
        return "\n".join(lines)


def default_cache_dir():
    """The default download folder, ``platformdirs.user_cache_dir("remap")/phoenix``.

    Returns
    -------
    path : `pathlib.Path`
    """
    import platformdirs
    return Path(platformdirs.user_cache_dir("remap")) / "phoenix"


def resolve_base_url(base_url=None):
    """The HiResFITS base URL: ``base_url``, else ``$REMAP_PHOENIX_URL``, else the Göttingen one.

    Parameters
    ----------
    base_url : str, optional

    Returns
    -------
    url : str
        An http(s) URL ending in ``/``.

    Raises
    ------
    ValueError
        The URL is not http(s) or has no host.
    """
    url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the PHOENIX base URL must be an http(s) URL of the HiResFITS folder "
                         f"(e.g. {DEFAULT_BASE_URL}); received: {url!r}")
    return url if url.endswith("/") else url + "/"


def select_values(values, wanted, what):
    """The grid values inside a requested range.

    Parameters
    ----------
    values : array-like
        The grid's values of one label.
    wanted : float or (float, float)
        One value or an inclusive ``(low, high)`` range.
    what : str
        The label's name, for error messages.

    Returns
    -------
    selected : list of float

    Raises
    ------
    ValueError
        ``wanted`` is malformed or selects no grid value.
    """
    try:
        arr = np.atleast_1d(np.asarray(wanted, dtype=float))
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number or a (low, high) pair; received: "
                         f"{wanted!r}") from None
    if arr.shape not in ((1,), (2,)) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be a number or a (low, high) pair; received: {wanted!r}")
    lo, hi = float(arr[0]), float(arr[-1])
    if lo > hi:
        raise ValueError(f"{what} range ({lo:g}, {hi:g}) has low > high")
    values = np.asarray(values, dtype=float)
    sel = values[(values >= lo - 1e-6) & (values <= hi + 1e-6)]
    if sel.size == 0:
        listed = ", ".join(f"{v:g}" for v in values)
        raise ValueError(f"{what}={lo:g}..{hi:g} selects no value of the PHOENIX grid "
                         f"(Husser et al. 2013); grid values: {listed}")
    return [float(v) + 0.0 for v in sel]


def phoenix_points(teff, logg, feh, alpha=0.0):
    """The grid points ``(teff, logg, feh, alpha)`` inside a box of labels.

    Alpha-enhanced combinations that the grid does not contain
    ([α/Fe] ≠ 0 outside 3500–8000 K or outside −3.0 ≤ [Fe/H] ≤ 0.0) are left out.

    Parameters
    ----------
    teff, logg, feh, alpha : float or (float, float)
        One value or an inclusive range of each label.

    Returns
    -------
    points : list of tuple

    Raises
    ------
    ValueError
        A range selects no grid value, or the box holds no grid point.
    """
    axes = [select_values(TEFF_VALUES, teff, "teff"), select_values(LOGG_VALUES, logg, "logg"),
            select_values(FEH_VALUES, feh, "feh"), select_values(ALPHA_VALUES, alpha, "alpha")]
    points = []
    for a in axes[3]:
        for f in axes[2]:
            for t in axes[0]:
                if a != 0 and not (_ALPHA_TEFF[0] <= t <= _ALPHA_TEFF[1]
                                   and _ALPHA_FEH[0] <= f <= _ALPHA_FEH[1]):
                    continue
                points.extend((t, g, f, a) for g in axes[1])
    if not points:
        raise ValueError("the requested labels hold no PHOENIX grid point: alpha-enhanced models "
                         f"exist only for {_ALPHA_TEFF[0]:g} <= teff <= {_ALPHA_TEFF[1]:g} K and "
                         f"{_ALPHA_FEH[0]:g} <= feh <= {_ALPHA_FEH[1]:g}")
    return points


def _is_complete_fits(path):
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    return size > 0 and size % _FITS_BLOCK == 0


def _parse_content_range(value):
    """``(start, total)`` from a Content-Range header (either may be None)."""
    m = _CONTENT_RANGE_RE.match(value or "")
    if m is None:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


def _attempt(url, path, part, timeout, on_bytes, stop, user_agent):
    """One request; returns the bytes received, raises `_Retry` or `FetchError`."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": user_agent})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            code = exc.code
            content_range = exc.headers.get("Content-Range") if exc.headers else None
        if code == 416 and offset:
            _, total = _parse_content_range(content_range)
            if total is not None and total == offset:
                return 0  # the .part file is already complete
            part.unlink(missing_ok=True)
            raise _Retry(f"the partial file ({offset} bytes) does not fit the server's file "
                         f"(HTTP 416); restarting") from None
        if code == 404:
            raise FetchError(f"not found on the server (HTTP 404): {url}", url, 404) from None
        if code in (408, 425, 429) or code >= 500:
            raise _Retry(f"HTTP {code} {exc.reason}") from None
        raise FetchError(f"HTTP {code} {exc.reason}: {url}", url, code) from None

    received = 0
    with response:
        status = response.status
        if status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Retry(f"the server resumed at byte {start}, not {offset}; restarting")
            mode = "ab"
        elif status == 200:
            # a full answer: either no Range was sent or the server ignored it
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.strip().isdigit() else None
            mode = "wb"
        else:
            raise FetchError(f"unexpected HTTP status {status}: {url}", url, status)
        with open(part, mode) as fh:
            while True:
                if stop.is_set():
                    raise FetchError(f"interrupted; the partial file {part.name} is kept and "
                                     "the next fetch resumes it", url)
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                fh.write(chunk)
                received += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())

    size = part.stat().st_size
    if total is None:
        if size == 0 or size % _FITS_BLOCK:
            part.unlink(missing_ok=True)
            raise _Retry(f"the server gave no size and the {size} bytes received are not a "
                         "whole FITS file; restarting")
    elif size < total:
        raise _Retry(f"connection closed after {size} of {total} bytes")
    elif size > total:
        part.unlink(missing_ok=True)
        raise _Retry(f"{size} bytes on disk but the server's file has {total}; restarting")
    return received


def download_file(url, path, *, timeout=60.0, retries=4, backoff=1.0, on_bytes=None,
                  stop=None, user_agent=None):
    """Download one file atomically and resumably.

    The bytes go to ``path + ".part"``, which is renamed to ``path`` once its
    size matches the size the server announced.  An existing ``.part`` file is
    resumed with a ``Range`` request.  A complete ``path`` (a non-empty whole
    number of 2880-byte FITS blocks) is not downloaded again.

    Parameters
    ----------
    url : str
        http(s) URL of the file.
    path : path-like
        Where the file goes; parent folders are created.
    timeout : float
        Socket timeout of each request, in seconds.
    retries : int
        How many times a dropped connection, a short file or a server error
        (HTTP 5xx, 408, 429) is retried.
    backoff : float
        Wait before the first retry, in seconds; doubled at each further retry.
    on_bytes : callable, optional
        Called with the size of every chunk received (for progress bars).
    stop : `threading.Event`, optional
        When set, the download stops (keeping the ``.part`` file).
    user_agent : str, optional
        The User-Agent header.

    Returns
    -------
    result : tuple (str, int)
        ``("downloaded", bytes_received)`` or ``("skipped", 0)``.

    Raises
    ------
    FetchError
        HTTP 404 or another client error (not retried), or the file is still
        incomplete after ``retries`` retries; ``status`` holds the HTTP code.
    """
    path = Path(path)
    if _is_complete_fits(path):
        return "skipped", 0
    retries = check_int("retries", retries, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    stop = threading.Event() if stop is None else stop
    user_agent = user_agent or f"remap/{__version__} (PHOENIX fetch)"
    received = 0
    reason = "no attempt made"
    for attempt in range(retries + 1):
        if attempt and backoff > 0:
            if stop.wait(backoff * 2 ** (attempt - 1)):
                break
        try:
            received += _attempt(url, path, part, timeout, on_bytes, stop, user_agent)
        except _Retry as exc:
            reason = str(exc)
            continue
        except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            # the destination is unusable: retrying cannot help
            raise FetchError(f"cannot write {part}: {exc}", url) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            # dropped connections, resets, timeouts, refused connections
            text = getattr(exc, "reason", None) or exc
            reason = f"{type(exc).__name__}: {text}"
            continue
        os.replace(part, path)
        return "downloaded", received
    raise FetchError(f"{url}: failed after {retries + 1} attempt(s): {reason}", url)


def fetch_phoenix(teff=(3000, 7000), logg=(1.0, 5.5), feh=(-2.0, 1.0), alpha=0.0, dest=None,
                  base_url=None, workers=4, progress=True, retries=4, backoff=1.0,
                  timeout=60.0):
    """Download a box of the PHOENIX HiRes grid and the WAVE file.

    The defaults are the subset used by deep-REMAP (Gilda 2025, MNRAS,
    Sect. 3.2): 3000 ≤ T_eff ≤ 7000 K, 1.0 ≤ log g ≤ 5.5, −2 ≤ [Fe/H] ≤ +1.

    Parameters
    ----------
    teff, logg, feh : float or (float, float)
        One value or an inclusive range of each label; every grid value of
        Husser et al. (2013, Table 2) inside is fetched.
    alpha : float or (float, float)
        [α/Fe] value or range (default 0: no alpha enhancement).
    dest : path-like, optional
        Destination folder; default :func:`default_cache_dir`.
    base_url : str, optional
        URL of the HiResFITS folder; default ``$REMAP_PHOENIX_URL`` or
        :data:`DEFAULT_BASE_URL`.
    workers : int
        Parallel downloads.
    progress : bool
        Show a tqdm progress bar (on stderr).
    retries, backoff, timeout
        See :func:`download_file`.

    Returns
    -------
    report : `FetchReport`
        Files downloaded, skipped and failed (a failure does not stop the others).

    Raises
    ------
    ValueError
        A label range selects nothing, ``workers`` is not a positive integer,
        or the base URL is not http(s).
    """
    from tqdm.auto import tqdm

    workers = check_int("workers", workers, 1)
    url = resolve_base_url(base_url)
    points = phoenix_points(teff, logg, feh, alpha)
    dest = Path(os.path.expanduser(os.fspath(dest))) if dest is not None else default_cache_dir()
    dest.mkdir(parents=True, exist_ok=True)

    jobs = [(WAVE_FILE_NAME, url + WAVE_FILE_NAME)]
    for p in points:
        rel = grid_relative_path(*p)
        jobs.append((rel, url + urllib.parse.quote(f"{GRID_NAME}/{rel}", safe="/")))

    report = FetchReport(dest=dest)
    stop = threading.Event()
    lock = threading.Lock()
    bar = tqdm(total=len(jobs), unit="file", desc="PHOENIX", disable=not progress,
               dynamic_ncols=True)

    def count(n):
        with lock:
            report.bytes_downloaded += n

    def one(rel, file_url):
        return download_file(file_url, dest / rel, timeout=timeout, retries=retries,
                             backoff=backoff, on_bytes=count, stop=stop)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                                 thread_name_prefix="remap-fetch")
    try:
        futures = {pool.submit(one, rel, file_url): rel for rel, file_url in jobs}
        for future in concurrent.futures.as_completed(futures):
            rel = futures[future]
            try:
                outcome, _ = future.result()
            except FetchError as exc:
                reason = str(exc)
                report.failed[rel] = reason
                bar.write(f"remap: {rel}: {reason}")
            except OSError as exc:  # e.g. the destination is not writable
                report.failed[rel] = f"{type(exc).__name__}: {exc}"
                bar.write(f"remap: {rel}: {report.failed[rel]}")
            else:
                (report.downloaded if outcome == "downloaded" else report.skipped).append(rel)
            bar.update(1)
            bar.set_postfix_str(f"{report.bytes_downloaded / 1e6:.1f} MB, "
                                f"{len(report.failed)} failed", refresh=False)
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
    report.downloaded.sort()
    report.skipped.sort()
    return report
