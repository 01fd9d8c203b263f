"""The PHOENIX-ACES-AGSS-COND-2011 high-resolution grid (Göttingen Spectral Library).

Reads the grid of Husser et al. (2013, A&A 553, A6) from a directory laid out
like the Göttingen server's ``HiResFITS`` folder::

    DIRECTORY/
        WAVE_PHOENIX-ACES-AGSS-COND-2011.fits
        Z-0.0/lte05800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits
        Z+0.5/lte05800-4.50+0.5.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits
        Z-0.0.Alpha=+0.40/lte05800-4.50-0.0.Alpha=+0.40.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits

(the metallicity folders may also sit one level lower, in a
``PHOENIX-ACES-AGSS-COND-2011/`` folder, as on the server).  The WAVE file holds
the vacuum wavelengths in Å as a 1-D primary array; each spectrum file holds the
flux in erg s⁻¹ cm⁻² cm⁻¹ as a 1-D primary array of the same length, with the
labels in the header keys ``PHXTEFF``, ``PHXLOGG``, ``PHXM_H`` and ``PHXALPHA``.

File names follow the server's conventions, which :func:`grid_file_name`
writes and :func:`parse_grid_file_name` reads:

* T_eff in K, zero-padded to five digits: ``lte05800``;
* log g with two decimals after a ``-`` separator, although log g is
  positive: ``-4.50``;
* [Fe/H] with a sign and one decimal, solar metallicity written ``-0.0``:
  ``-0.0``, ``+0.5``, ``-1.0``;
* [α/Fe] ≠ 0 as ``.Alpha=+0.40`` (sign and two decimals) in both the folder
  and the file name; no suffix for [α/Fe] = 0.

Only the requested wavelength range (plus a margin for later convolution) is
read: the WAVE file through a memory map, each spectrum through
`astropy.io.fits` section access, so a 1.5-million-point HiRes file costs only
the bytes of the cut.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table

from .._util.validators import check_real, wavelength_range
from ..exceptions import RemapError
from ..plugins.hookspecs import hookimpl
from .base import Domain, SyntheticLibrary

__all__ = ["PhoenixLibrary", "PhoenixError", "PhoenixFormatError", "PhoenixFileNotFoundError",
           "GridPointError", "WaveRangeError", "GRID_NAME", "WAVE_FILE_NAME",
           "FLUX_UNIT", "HEADER_KEYS", "DEFAULT_WAVE_RANGE", "DEFAULT_MARGIN",
           "format_feh", "format_alpha", "grid_folder_name", "grid_file_name",
           "grid_relative_path", "parse_grid_file_name", "parse_grid_folder_name",
           "nominal_resolution", "remap_synthetic_libraries"]

#: Name of the PHOENIX grid served by the Göttingen Spectral Library.
GRID_NAME = "PHOENIX-ACES-AGSS-COND-2011"

#: Name of the wavelength file shared by every spectrum of the HiRes grid.
WAVE_FILE_NAME = f"WAVE_{GRID_NAME}.fits"

#: Suffix of every HiRes spectrum file name.
FILE_SUFFIX = f".{GRID_NAME}-HiRes.fits"

#: Flux unit of the HiRes files (Husser et al. 2013, Sect. 4).
FLUX_UNIT = u.erg / u.s / u.cm ** 2 / u.cm

#: Flux unit of the spectra this library returns.
OUTPUT_FLUX_UNIT = u.erg / u.s / u.cm ** 2 / u.AA

#: Header key of each label: label -> key.
HEADER_KEYS = {"teff": "PHXTEFF", "logg": "PHXLOGG", "feh": "PHXM_H", "alpha": "PHXALPHA"}

#: Default wavelength range read, in Å: the two MARVELS beams together
#: (4850–5750 Å, Gilda 2025, MNRAS, Sect. 3.2).
DEFAULT_WAVE_RANGE = (4850.0, 5750.0)

#: Default extra wavelength read on each side of the range, in Å.  5 Å is
#: five standard deviations of a Gaussian line-spread function of resolving
#: power R ≈ 2,400 at 5750 Å, far wider than the R = 10,000 kernels of the
#: pre-processing (Gilda 2025, Sect. 3.3).
DEFAULT_MARGIN = 5.0

# Sampling of the HiRes grid (Husser et al. 2013, A&A 553, A6, Sect. 4 and
# abstract): Δλ = 0.1 Å in the UV (500–3000 Å), R = λ/Δλ = 500,000 in the
# optical and near IR (3000–25,000 Å), R = 100,000 in the IR (25,000–55,000 Å).
_UV_EDGE = 3000.0
_IR_EDGE = 25000.0
_UV_STEP = 0.1
_R_OPTICAL = 500_000.0
_R_IR = 100_000.0

# most 2880-byte blocks a header may have before the file is called corrupt
_MAX_HEADER_BLOCKS = 1000

# label tolerances when comparing a header with a file name
_TOLERANCE = {"teff": 0.5, "logg": 0.005, "feh": 0.005, "alpha": 0.005}
# label scales (about one grid step) for "nearest point" suggestions
_SCALE = {"teff": 100.0, "logg": 0.5, "feh": 0.5, "alpha": 0.2}
_LABELS = ("teff", "logg", "feh", "alpha")

_FOLDER_RE = re.compile(r"^Z(?P<feh>[+-]\d+\.\d)(?:\.Alpha=(?P<alpha>[+-]\d+\.\d\d))?$")
_FILE_RE = re.compile(
    r"^lte(?P<teff>\d{5})-(?P<logg>\d+\.\d\d)(?P<feh>[+-]\d+\.\d)"
    r"(?:\.Alpha=(?P<alpha>[+-]\d+\.\d\d))?" + re.escape(FILE_SUFFIX) + "$")


class PhoenixError(RemapError, ValueError):
    """A PHOENIX grid cannot be read as given."""


class PhoenixFormatError(PhoenixError):
    """A PHOENIX file exists but is not in the Göttingen format (or is corrupt)."""


class PhoenixFileNotFoundError(PhoenixError, FileNotFoundError):
    """A file or directory the PHOENIX grid needs does not exist."""


class GridPointError(PhoenixError):
    """The requested labels are not a point of the grid on disk."""


class WaveRangeError(PhoenixError):
    """The requested wavelength range is not covered by the WAVE file."""


# ----------------------------------------------------------------------------- names

def _exact(value, decimals, what):
    """``value`` as a float, refusing values that need more than ``decimals`` decimals."""
    check_real(what, value)
    rounded = round(float(value), decimals)
    if abs(rounded - float(value)) > 1e-6:
        raise ValueError(f"{what}={value!r} cannot be written in a PHOENIX file name, which "
                         f"holds {decimals} decimal(s)")
    return rounded + 0.0  # turn -0.0 into 0.0


def format_feh(feh):
    """[Fe/H] as written in PHOENIX names: sign and one decimal, ``-0.0`` for zero.

    Parameters
    ----------
    feh : float
        Metallicity in dex, a multiple of 0.1.

    Returns
    -------
    text : str
        e.g. ``"-0.0"``, ``"+0.5"``, ``"-1.0"``.

    Raises
    ------
    ValueError
        ``feh`` is not finite or has more than one decimal.
    """
    value = _exact(feh, 1, "feh")
    return "-0.0" if value == 0 else f"{value:+.1f}"


def format_alpha(alpha):
    """The ``.Alpha=+0.40`` suffix of PHOENIX names, empty for [α/Fe] = 0.

    Parameters
    ----------
    alpha : float
        [α/Fe] in dex, with at most two decimals.

    Returns
    -------
    text : str
        ``""`` for zero, else ``".Alpha="`` + sign + two decimals.

    Raises
    ------
    ValueError
        ``alpha`` is not finite or has more than two decimals.
    """
    value = _exact(alpha, 2, "alpha")
    return "" if value == 0 else f".Alpha={value:+.2f}"


def grid_folder_name(feh, alpha=0.0):
    """Name of the metallicity folder, e.g. ``Z-0.0`` or ``Z-1.0.Alpha=+0.40``.

    Parameters
    ----------
    feh, alpha : float
        [Fe/H] and [α/Fe] in dex.

    Returns
    -------
    name : str

    Raises
    ------
    ValueError
        ``feh`` or ``alpha`` is not finite or has more decimals than the
        PHOENIX names hold (one for [Fe/H], two for [α/Fe]).
    """
    return f"Z{format_feh(feh)}{format_alpha(alpha)}"


def grid_file_name(teff, logg, feh, alpha=0.0):
    """Name of a HiRes spectrum file, e.g. ``lte05800-4.50-0.0.PHOENIX-...-HiRes.fits``.

    Parameters
    ----------
    teff : float
        Effective temperature in K, a whole number below 100,000.
    logg : float
        Surface gravity (log cgs), non-negative, at most two decimals.
    feh, alpha : float
        [Fe/H] (one decimal) and [α/Fe] (two decimals) in dex.

    Returns
    -------
    name : str

    Raises
    ------
    ValueError
        A label cannot be written in the PHOENIX convention (e.g. a negative
        log g or a fractional T_eff).
    """
    t = _exact(teff, 0, "teff")
    if not 0 < t < 100000:
        raise ValueError(f"teff={teff!r} cannot be written as five digits; expected "
                         "0 < teff < 100000 K")
    g = _exact(logg, 2, "logg")
    if g < 0:
        raise ValueError(f"logg={logg!r} is negative; PHOENIX file names hold log g >= 0")
    return f"lte{int(t):05d}-{g:.2f}{format_feh(feh)}{format_alpha(alpha)}{FILE_SUFFIX}"


def grid_relative_path(teff, logg, feh, alpha=0.0):
    """``folder/file`` of a grid point, with ``/`` separators (as in a URL).

    Parameters
    ----------
    teff, logg, feh, alpha : float
        The labels (see :func:`grid_file_name`).

    Returns
    -------
    path : str

    Raises
    ------
    ValueError
        A label cannot be written in the PHOENIX convention (see
        :func:`grid_folder_name` and :func:`grid_file_name`).
    """
    return f"{grid_folder_name(feh, alpha)}/{grid_file_name(teff, logg, feh, alpha)}"


def parse_grid_folder_name(name):
    """``(feh, alpha)`` of a metallicity folder name, or `None` if it is not one.

    Parameters
    ----------
    name : str
        e.g. ``"Z+0.5"`` or ``"Z-0.0.Alpha=+0.40"``.

    Returns
    -------
    labels : tuple of float or None
    """
    m = _FOLDER_RE.match(name)
    if m is None:
        return None
    return float(m["feh"]) + 0.0, float(m["alpha"] or 0.0) + 0.0


def parse_grid_file_name(name):
    """Labels ``{teff, logg, feh, alpha}`` of a HiRes file name, or `None`.

    Parameters
    ----------
    name : str
        A bare file name such as
        ``"lte05800-4.50-0.0.Alpha=+0.40.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"``.

    Returns
    -------
    labels : dict or None
        `None` when ``name`` does not follow the convention.
    """
    m = _FILE_RE.match(name)
    if m is None:
        return None
    return {"teff": float(m["teff"]), "logg": float(m["logg"]),
            "feh": float(m["feh"]) + 0.0, "alpha": float(m["alpha"] or 0.0) + 0.0}


def nominal_resolution(wavelength):
    """Resolving power λ/Δλ of the HiRes grid at a vacuum wavelength (Å).

    Husser et al. (2013, A&A 553, A6): Δλ = 0.1 Å below 3000 Å, R = 500,000
    from 3000 to 25,000 Å and R = 100,000 above.

    Parameters
    ----------
    wavelength : float or array-like
        Wavelength in Å.

    Returns
    -------
    R : float or ndarray
    """
    lam = np.asarray(wavelength, dtype=float)
    r = np.where(lam < _UV_EDGE, lam / _UV_STEP, np.where(lam < _IR_EDGE, _R_OPTICAL, _R_IR))
    return float(r) if r.ndim == 0 else r


# ----------------------------------------------------------------------------- FITS access

def _read_primary_header(path):
    """Header and data offset of a FITS file's primary HDU, checking the file's integrity.

    Parses the header blocks directly (so that a corrupt file gives a clear
    error instead of astropy warnings) and checks that the file holds all the
    bytes its header promises.

    Returns
    -------
    header : `astropy.io.fits.Header`
    data_offset : int
        Byte offset of the primary data.
    """
    path = Path(path)
    blocks = []
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            if size == 0:
                raise PhoenixFormatError(f"{path}: the file is empty; expected a FITS file")
            first = fh.read(2880)
            if not first.startswith(b"SIMPLE  ="):
                raise PhoenixFormatError(
                    f"{path}: not a FITS file (it does not start with a SIMPLE card); the "
                    "file is corrupt or of another format. Delete it and download it again")
            block = first
            while len(block) == 2880 and len(blocks) < _MAX_HEADER_BLOCKS:
                if not block.isascii():
                    raise PhoenixFormatError(
                        f"{path}: corrupt FITS header (non-ASCII bytes in header block "
                        f"{len(blocks) + 1}); delete the file and download it again")
                blocks.append(block)
                if any(block[i:i + 8] == b"END     " for i in range(0, 2880, 80)):
                    break
                block = fh.read(2880)
            else:
                raise PhoenixFormatError(f"{path}: the FITS header has no END card; the file "
                                         "is truncated or corrupt")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise PhoenixFormatError(f"{path}: cannot read the file ({exc})") from exc
    try:
        header = fits.Header.fromstring(b"".join(blocks).decode("ascii"))
    except Exception as exc:  # astropy raises several types for malformed cards
        raise PhoenixFormatError(f"{path}: cannot parse the FITS header "
                                 f"({type(exc).__name__}: {exc})") from exc
    offset = 2880 * len(blocks)
    naxis = header.get("NAXIS")
    bitpix = header.get("BITPIX")
    if not isinstance(naxis, int) or bitpix not in (8, 16, 32, 64, -32, -64):
        raise PhoenixFormatError(f"{path}: the FITS header lacks valid NAXIS/BITPIX cards "
                                 f"(NAXIS={naxis!r}, BITPIX={bitpix!r})")
    count = 1 if naxis > 0 else 0
    for i in range(1, naxis + 1):
        n = header.get(f"NAXIS{i}")
        if not isinstance(n, int) or n < 0:
            raise PhoenixFormatError(f"{path}: invalid NAXIS{i}={n!r} in the FITS header")
        count *= n
    need = offset + count * abs(bitpix) // 8
    if size < need:
        raise PhoenixFormatError(f"{path}: the file is truncated: it has {size} bytes but its "
                                 f"header promises {need}; delete it and download it again")
    return header, offset


def _parse_unit(text):
    """A unit from a BUNIT string such as ``erg/s/cm^2/cm``, or `None`.

    Chains of ``/`` are split and parsed piece by piece, which reads the
    PHOENIX spelling without astropy's "multiple slashes" warning.
    """
    text = str(text).strip()
    try:
        if "(" in text or ")" in text:
            return u.Unit(text, parse_strict="raise")
        first, *rest = text.split("/")
        unit = u.Unit(first or "1", parse_strict="raise")
        for piece in rest:
            unit = unit / u.Unit(piece, parse_strict="raise")
        return unit
    except (ValueError, TypeError):
        return None


def _check_1d(path, header, what):
    """Length of the 1-D primary array described by ``header``."""
    if header["NAXIS"] != 1:
        shape = tuple(header.get(f"NAXIS{i}") for i in range(header["NAXIS"], 0, -1))
        raise PhoenixFormatError(f"{path}: the primary HDU holds an array of shape {shape}; "
                                 f"expected a 1-D array of {what}")
    return header["NAXIS1"]


# ----------------------------------------------------------------------------- library

class PhoenixLibrary(SyntheticLibrary):
    """PHOENIX-ACES-AGSS-COND-2011 HiRes spectra read from a local copy of the grid.

    Parameters
    ----------
    directory : str or path-like
        Folder holding ``WAVE_PHOENIX-ACES-AGSS-COND-2011.fits`` and the
        metallicity folders (``Z-0.0`` …), directly or inside a
        ``PHOENIX-ACES-AGSS-COND-2011`` folder (the server's layout; what
        ``remap library fetch phoenix`` writes is read as it is).
    wave_range : (float, float) or `~astropy.units.Quantity`, optional
        Vacuum wavelength range to return: a Quantity pair such as
        ``(5000, 5750) * u.AA`` or ``(5000 * u.AA, 575 * u.nm)``, or plain
        numbers in Å.  Default
        :data:`DEFAULT_WAVE_RANGE` (4850–5750 Å); `None` reads the whole file.
    margin : float, optional
        Extra wavelength (Å) kept on each side of ``wave_range`` for later
        convolution, as far as the WAVE file reaches.  Default
        :data:`DEFAULT_MARGIN`.

    Raises
    ------
    PhoenixFileNotFoundError
        ``directory`` or the WAVE file does not exist.
    PhoenixFormatError
        The directory holds no PHOENIX spectra, a file name breaks the
        convention, a file lies in the wrong folder, or the WAVE file is corrupt.
    WaveRangeError
        ``wave_range`` is not inside the WAVE file's coverage.
    TypeError, ValueError
        ``wave_range`` or ``margin`` is malformed (a unit that is not spectral
        is an `astropy.units.UnitConversionError`, also a `ValueError`).

    Examples
    --------
    >>> lib = remap.get_library("phoenix", directory="~/phoenix")  # doctest: +SKIP
    >>> spec = lib.spectrum(teff=5800, logg=4.5, feh=0.0)           # doctest: +SKIP
    """

    name = "phoenix"
    label = "PHOENIX-ACES-AGSS-COND-2011 HiRes grid (Husser et al. 2013), read from disk"
    wavelength_medium = "vacuum"

    def __init__(self, directory, wave_range=DEFAULT_WAVE_RANGE, margin=DEFAULT_MARGIN):
        self.directory = Path(os.path.expanduser(os.fspath(directory)))
        if not self.directory.is_dir():
            raise PhoenixFileNotFoundError(
                f"PHOENIX directory {self.directory} does not exist; download the grid with "
                "'remap library fetch phoenix' or point 'directory' at a copy of the "
                "Göttingen HiResFITS folder")
        self.margin = check_real("margin", margin, 0)
        self._requested = (None if wave_range is None else tuple(
            float(v) for v in wavelength_range(wave_range, default_unit=u.AA).value))
        self._grid = self._discover()
        self._read_wave()

    # -- discovery ---------------------------------------------------------------------
    def _discover(self):
        roots = [self.directory, self.directory / GRID_NAME]
        rows = {}
        for root in roots:
            if not root.is_dir():
                continue
            for folder in sorted(root.iterdir()):
                labels = parse_grid_folder_name(folder.name)
                if labels is None or not folder.is_dir():
                    continue
                for path in sorted(folder.iterdir()):
                    if not path.name.endswith(FILE_SUFFIX):
                        continue
                    point = parse_grid_file_name(path.name)
                    if point is None:
                        raise PhoenixFormatError(
                            f"{path}: file name does not follow the PHOENIX convention "
                            "'lteTTTTT-G.GG[+-]Z.Z[.Alpha=[+-]A.AA]" + FILE_SUFFIX + "' "
                            "(e.g. " + grid_file_name(5800, 4.5, 0.0) + ")")
                    if (point["feh"], point["alpha"]) != labels:
                        raise PhoenixFormatError(
                            f"{path}: file of [Fe/H]={point['feh']:+.1f}, "
                            f"[alpha/Fe]={point['alpha']:+.2f} lies in folder {folder.name!r}; "
                            f"expected folder "
                            f"{grid_folder_name(point['feh'], point['alpha'])!r}")
                    key = tuple(point[k] for k in _LABELS)
                    if key in rows:
                        raise PhoenixFormatError(f"grid point {key} appears twice: {rows[key]} "
                                                 f"and {path}; keep one of them")
                    rows[key] = path
        if not rows:
            wave = self.directory / WAVE_FILE_NAME
            what = "the directory is empty" if not any(self.directory.iterdir()) else \
                "it holds no PHOENIX spectra"
            raise PhoenixFormatError(
                f"no PHOENIX grid in {self.directory}: {what}. Expected "
                f"{WAVE_FILE_NAME}{'' if wave.exists() else ' (missing too)'} and metallicity "
                "folders such as Z-0.0/" + grid_file_name(5800, 4.5, 0.0) +
                "; download them with 'remap library fetch phoenix'")
        keys = sorted(rows)
        table = Table(rows=[(*k, str(rows[k])) for k in keys],
                      names=("teff", "logg", "feh", "alpha", "path"),
                      dtype=(float, float, float, float, str))
        table["teff"].unit = u.K
        table.meta["directory"] = str(self.directory)
        return table

    def _read_wave(self):
        path = self.directory / WAVE_FILE_NAME
        if not path.is_file():
            raise PhoenixFileNotFoundError(
                f"the wavelength file {WAVE_FILE_NAME} is missing from {self.directory}; it is "
                "shared by every spectrum of the grid (download it with 'remap library fetch "
                "phoenix', which always fetches it)")
        header, _ = _read_primary_header(path)
        self._n_wave = _check_1d(path, header, "vacuum wavelengths in Å")
        if self._n_wave < 2:
            raise PhoenixFormatError(f"{path}: holds {self._n_wave} wavelength(s); expected "
                                     "a wavelength array")
        with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
            data = hdul[0].data  # a memory map: only the pages touched below are read
            first, last = float(data[0]), float(data[-1])
            if not (math.isfinite(first) and math.isfinite(last) and first < last):
                del data
                raise PhoenixFormatError(f"{path}: wavelengths run from {first} to {last}; "
                                         "expected finite, increasing values in Å")
            if self._requested is None:
                i0, i1 = 0, self._n_wave
            else:
                lo, hi = self._requested
                if lo < first or hi > last:
                    del data
                    raise WaveRangeError(
                        f"wave_range {lo:g}-{hi:g} Å is not inside the coverage of "
                        f"{path.name}, {first:g}-{last:g} Å (vacuum); choose a range within it")
                # bounds are inclusive, up to rounding of the stored wavelengths
                i0 = int(np.searchsorted(data, (lo - self.margin) * (1 - 1e-12), side="left"))
                i1 = int(np.searchsorted(data, (hi + self.margin) * (1 + 1e-12), side="right"))
            wave = np.array(data[i0:i1], dtype=float)
            del data
        diffs = np.diff(wave)
        if not np.all(np.isfinite(wave)) or np.any(diffs <= 0):
            raise PhoenixFormatError(f"{path}: the wavelengths in the requested range are not "
                                     "finite and strictly increasing; the file is corrupt")
        self._slice = (i0, i1)
        self._wave = wave
        self._wave.flags.writeable = False

    # -- properties --------------------------------------------------------------------
    @property
    def grid(self):
        """`astropy.table.Table` of the grid points on disk.

        Columns ``teff`` (K), ``logg``, ``feh``, ``alpha`` and ``path``, sorted.
        """
        return self._grid.copy()

    @property
    def axes(self):
        """Dict ``label -> sorted array`` of the distinct values of each label on disk."""
        return {k: np.unique(np.asarray(self._grid[k])) for k in _LABELS}

    @property
    def domain(self):
        """The (min, max) of each label over the grid on disk (`Domain`)."""
        ranges = {k: (float(np.min(self._grid[k])), float(np.max(self._grid[k])))
                  for k in _LABELS}
        return Domain(**ranges)

    @property
    def wavelength(self):
        """The vacuum wavelengths returned by :meth:`spectrum` (Å, margin included)."""
        return self._wave * u.AA

    @property
    def wavelength_range(self):
        """The requested (min, max) vacuum wavelength, a Quantity in Å.

        With ``wave_range=None`` this is the WAVE file's whole coverage.
        """
        if self._requested is None:
            return u.Quantity([self._wave[0], self._wave[-1]], u.AA)
        return u.Quantity(self._requested, u.AA)

    @property
    def resolution(self):
        """Resolving power of the returned spectra (λ/Δλ), lowest over the range.

        The nominal HiRes value of Husser et al. (2013), R = 500,000 between
        3000 and 25,000 Å (:func:`nominal_resolution`), limited by the actual
        pixel sampling of the WAVE file (a coarser file gives a lower R).
        """
        lam = self._wave
        sampling = np.median(lam[1:] / np.diff(lam))
        return float(min(np.min(nominal_resolution(lam)), sampling))

    # -- holes -------------------------------------------------------------------------
    def holes(self):
        """Label combinations missing from the grid on disk.

        Every combination of the distinct T_eff, log g, [Fe/H] and [α/Fe]
        values found on disk that has no file.  The real grid has no
        alpha-enhanced models above [Fe/H] = 0 (Husser et al. 2013, Table 2),
        so such combinations are reported as well: read the result with
        :meth:`summary`, which groups it by folder.

        Returns
        -------
        holes : `astropy.table.Table`
            Columns ``teff``, ``logg``, ``feh``, ``alpha``, ``folder``, ``file``
            (the name the missing file would have), sorted.
        """
        axes = self.axes
        have = {tuple(float(row[k]) for k in _LABELS) for row in self._grid}
        missing = [combo for combo in _product(*(axes[k] for k in _LABELS))
                   if combo not in have]
        table = Table(rows=[(*m, grid_folder_name(m[2], m[3]), grid_file_name(*m))
                            for m in missing] or None,
                      names=("teff", "logg", "feh", "alpha", "folder", "file"),
                      dtype=(float, float, float, float, str, str))
        table["teff"].unit = u.K
        return table

    def summary(self):
        """A human-readable description of the grid on disk and its holes.

        Returns
        -------
        text : str
            Counts, label values, wavelength cut and, per metallicity folder,
            how many points are missing (listing up to ten of them).
        """
        axes = self.axes
        lines = [f"PHOENIX grid in {self.directory}: {len(self._grid)} spectra"]
        for k, unit in zip(_LABELS, (" K", "", " dex", " dex")):
            vals = ", ".join(f"{v:g}" for v in axes[k])
            lines.append(f"  {k:5s} ({len(axes[k])}): {vals}{unit}")
        w0, w1 = self._wave[0], self._wave[-1]
        lines.append(f"  wavelengths: {w0:.2f}-{w1:.2f} Å (vacuum, {len(self._wave)} pixels, "
                     f"R = {self.resolution:,.0f})")
        holes = self.holes()
        per_folder = len(axes["teff"]) * len(axes["logg"])
        if len(holes) == 0:
            lines.append("  holes: none (the grid is complete over the values above)")
            return "\n".join(lines)
        lines.append(f"  holes: {len(holes)} of {len(holes) + len(self._grid)} combinations "
                     "have no file")
        for folder in _unique_in_order(holes["folder"]):
            sub = holes[holes["folder"] == folder]
            if len(sub) == per_folder:
                lines.append(f"    {folder}: folder absent or empty ({per_folder} points)")
                continue
            points = ", ".join(f"({r['teff']:g}, {r['logg']:g})" for r in sub[:10])
            more = f", ... ({len(sub) - 10} more)" if len(sub) > 10 else ""
            lines.append(f"    {folder}: {len(sub)} missing (teff, logg): {points}{more}")
        return "\n".join(lines)

    # -- spectra -----------------------------------------------------------------------
    def _lookup(self, teff, logg, feh, alpha):
        labels = {"teff": teff, "logg": logg, "feh": feh, "alpha": alpha}
        for k, v in labels.items():
            check_real(k, v)
        arr = {k: np.asarray(self._grid[k], dtype=float) for k in _LABELS}
        match = np.ones(len(self._grid), dtype=bool)
        for k in _LABELS:
            match &= np.abs(arr[k] - float(labels[k])) <= _TOLERANCE[k]
        if match.any():
            return int(np.flatnonzero(match)[0])
        dist = sum(((arr[k] - float(labels[k])) / _SCALE[k]) ** 2 for k in _LABELS)
        nearest = np.argsort(dist, kind="stable")[:5]
        listed = "; ".join(
            f"teff={arr['teff'][i]:g}, logg={arr['logg'][i]:g}, feh={arr['feh'][i]:g}, "
            f"alpha={arr['alpha'][i]:g}" for i in nearest)
        raise GridPointError(
            f"(teff={teff}, logg={logg}, feh={feh}, alpha={alpha}) is not a point of the "
            f"PHOENIX grid in {self.directory}; nearest available: {listed}")

    def spectrum(self, teff, logg, feh, alpha=0.0):
        """The HiRes spectrum of one grid point, cut to the wavelength range.

        Parameters
        ----------
        teff : float
            Effective temperature (K).
        logg : float
            Surface gravity (log cgs).
        feh : float
            [Fe/H] (dex).
        alpha : float, optional
            [α/Fe] (dex), default 0.

        Returns
        -------
        spectrum : `specutils.Spectrum`
            Flux in erg s⁻¹ cm⁻² Å⁻¹ on the vacuum wavelengths of
            :attr:`wavelength`; ``meta`` holds ``teff``, ``logg``, ``feh``,
            ``alpha`` (from the file header), ``wavelength_medium``,
            ``resolution``, ``library`` and ``path``.

        Raises
        ------
        GridPointError
            The labels are not on the grid; the message lists the nearest points.
        PhoenixFormatError
            The file is corrupt or truncated, lacks a label keyword, its labels
            disagree with its name, or its length differs from the WAVE file's.
        """
        from specutils import Spectrum

        row = self._grid[self._lookup(teff, logg, feh, alpha)]
        path = Path(row["path"])
        expected = {k: float(row[k]) for k in _LABELS}
        try:
            header, _ = _read_primary_header(path)
        except FileNotFoundError:
            raise PhoenixFileNotFoundError(f"{path} has disappeared since the grid was "
                                           "read") from None
        n = _check_1d(path, header, "flux values")
        if n != self._n_wave:
            raise PhoenixFormatError(
                f"{path}: holds {n} flux values but {WAVE_FILE_NAME} holds {self._n_wave} "
                "wavelengths; they must match (is the file from another PHOENIX grid, "
                "e.g. the MedRes one?)")
        missing = [key for key in HEADER_KEYS.values() if key not in header]
        if missing:
            raise PhoenixFormatError(f"{path}: the header lacks {', '.join(missing)}; expected "
                                     f"the label keywords {', '.join(HEADER_KEYS.values())}")
        labels = {}
        for k, key in HEADER_KEYS.items():
            try:
                labels[k] = float(header[key])
            except (TypeError, ValueError):
                raise PhoenixFormatError(f"{path}: header keyword {key}={header[key]!r} is not "
                                         "a number") from None
            if abs(labels[k] - expected[k]) > _TOLERANCE[k]:
                raise PhoenixFormatError(
                    f"{path}: header {key}={labels[k]:g} disagrees with the file name "
                    f"({k}={expected[k]:g}); the file is misnamed or corrupt")
        unit = FLUX_UNIT
        if "BUNIT" in header:
            unit = _parse_unit(header["BUNIT"])
            if unit is None or not unit.is_equivalent(FLUX_UNIT):
                raise PhoenixFormatError(f"{path}: BUNIT={header['BUNIT']!r} is not a flux "
                                         f"density per unit wavelength; expected {FLUX_UNIT}")
        i0, i1 = self._slice
        try:
            with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                flux = np.asarray(hdul[0].section[i0:i1], dtype=float)
        except (OSError, ValueError, TypeError, IndexError) as exc:
            raise PhoenixFormatError(f"{path}: cannot read the flux ({type(exc).__name__}: "
                                     f"{exc})") from exc
        if not np.all(np.isfinite(flux)):
            bad = int(np.count_nonzero(~np.isfinite(flux)))
            raise PhoenixFormatError(f"{path}: {bad} flux values in the requested range are "
                                     "NaN or infinite; the file is corrupt")
        flux = (flux * unit).to(OUTPUT_FLUX_UNIT)
        meta = {**labels, "wavelength_medium": self.wavelength_medium,
                "resolution": self.resolution, "library": self.name, "path": str(path)}
        return Spectrum(flux=flux, spectral_axis=self.wavelength, meta=meta)

    def __repr__(self):
        w = self.wavelength_range
        return (f"<PhoenixLibrary {self.directory}: {len(self._grid)} spectra, "
                f"{w[0].value:g}-{w[1].value:g} Å>")


def _product(*axes):
    import itertools
    return (tuple(float(v) for v in combo) for combo in itertools.product(*axes))


def _unique_in_order(values):
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


@hookimpl
def remap_synthetic_libraries():
    """Register the PHOENIX HiRes grid reader as the ``phoenix`` library."""
    return [PhoenixLibrary]
