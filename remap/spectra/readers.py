"""Reading spectrum files: one reader for ``remap fit``, ``remap normalize`` and catalogues.

:func:`read_spectrum` reads the spectrum of one star from a file.  It asks,
in this order:

1. the specutils I/O registry (every format specutils identifies, including
   ``remap-beam`` and the remap readers below, which are registered as
   specutils ``data_loader`` s on ``import remap``);
2. when the identified reader fails, or none identifies the file, remap's own
   readers whose (looser) test accepts the file;

and raises a :class:`~remap.exceptions.SpectrumFileError` naming the file and
every reader tried when none succeeds.

remap's readers (specutils format names):

``remap-fits1d``
    1-D FITS images with a linear (``CRVAL1`` + ``CDELT1``/``CD1_1``,
    ``CRPIX1``), log10-linear (``DC-FLAG = 1``, ``CTYPE1 = 'LOGLAM'``/``'LOG*'``,
    SDSS ``COEFF0``/``COEFF1``) or FITS ``-LOG`` dispersion, whatever their
    ``BUNIT``.  A ``BUNIT`` astropy cannot parse (``'DU/PIXEL'`` of MIKE,
    ``'COUNTS/PIXEL'``, ...) or a missing one gives flux in arbitrary units
    (dimensionless), with a note.  IRAF ``onedspec`` files with bands
    (``NAXIS3``, ``BANDIDn``) give the first band as flux and a ``sigma``
    band as uncertainty.  Registered to claim only the files that specutils'
    ``wcs1d-fits`` refuses (an unparseable ``BUNIT``) or misreads (a log10
    dispersion read as wavelengths of 3.7 Å).
``remap-table``
    FITS, ECSV, CSV and plain-text tables with wavelength and flux columns
    found by name (case-insensitive, see :data:`WAVELENGTH_NAMES`,
    :data:`FLUX_NAMES`, :data:`UNCERTAINTY_NAMES`, :data:`MASK_NAMES`),
    whatever the flux unit (dimensionless included, e.g. what
    ``Spectrum.write(..., format="tabular-fits")`` writes for a normalized
    spectrum), and header-less text files of 2-4 numeric columns (wavelength
    in Å, flux, uncertainty, mask).  ``loglam`` is log10 of the wavelength in
    Å.  A table whose wavelength column holds one row per echelle order
    (2-D) is merged like ``remap-echelle``.
``remap-multispec``
    IRAF multispec files (``CTYPE1 = 'MULTISPE'``, ``WAT2_nnn`` cards with
    ``specN = "..."``): linear, log-linear and Chebyshev/Legendre
    (``ftype`` 1/2) dispersions per order; then merged as below.
``remap-echelle``
    FITS files with a 2-D flux image ``(n_orders, n_pix)`` and a wavelength
    image of the same shape (``EXTNAME`` ``WAVE``, ``WAVELENGTH``, ``LAMBDA``,
    ...), optionally uncertainty (``ERR``, ``SIGMA``, ``VAR``, ``IVAR``) and
    mask images.

Multi-order spectra (the last two, and 2-D table columns) are merged by
:func:`merge_orders`: each order is continuum-normalized (with the
``clipped`` fitter by default, :data:`ORDER_FITTER`), then the orders are
resampled onto one log-uniform grid (the median native ``d ln λ``) and
averaged with inverse-variance weights where they overlap.  The result is
dimensionless, with a note in ``meta``.

Every spectrum returned has ``meta["file"]``, ``meta["reader"]`` (the
format that read it), ``meta["reader_notes"]`` (a list of what was assumed or
done) and, when anything declares it, ``meta["wavelength_medium"]``:
the ``medium=`` argument, or the header (:func:`remap.spectra.medium.medium_from_header`:
``AIRORVAC``, ``WAVE_MED``, ``VACUUM``, ``CTYPE1 = 'AWAV'/'WAVE'``), a column
named ``wavelength_air``/``wave_vac``..., or the survey convention of a
specutils format (SDSS, APOGEE and DESI files are in vacuum).
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.io import registry as io_registry
from astropy.io.registry import compat as io_registry_compat
from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning

from ..exceptions import SpectrumError, SpectrumFileError
from .medium import MEDIUM_KEY, medium_from_header, validate_medium

__all__ = ["read_spectrum", "merge_orders", "ORDER_FITTER", "REMAP_FORMATS", "WAVELENGTH_NAMES",
           "FLUX_NAMES", "UNCERTAINTY_NAMES", "MASK_NAMES", "VACUUM_FORMAT_PREFIXES", "register"]

#: remap's own reader formats, in the order they are tried as fallbacks.
REMAP_FORMATS = ("remap-fits1d", "remap-table", "remap-multispec", "remap-echelle")

#: Wavelength column names (case-insensitive).  ``loglam`` is log10(λ / Å).  A
#: suffix ``_air`` or ``_vac``/``_vacuum`` declares the medium.
WAVELENGTH_NAMES = ("wavelength", "wave", "lambda", "lam", "wl", "wavelengths", "loglam")

#: Flux column names (case-insensitive), in order of preference.
FLUX_NAMES = ("flux", "f", "s", "spec", "spectrum", "fnorm", "norm_flux", "flux_norm",
              "normalized_flux", "intensity")

#: Uncertainty column names -> kind (``std``, ``var`` or ``ivar``).
UNCERTAINTY_NAMES = {"ivar": "ivar", "inverse_variance": "ivar", "flux_ivar": "ivar",
                     "err": "std", "error": "std", "sigma": "std", "uncertainty": "std",
                     "e_flux": "std", "flux_err": "std", "flux_error": "std", "eflux": "std",
                     "err_flux": "std", "noise": "std", "std": "std", "stddev": "std",
                     "var": "var", "variance": "var", "flux_var": "var"}

#: Mask column names (case-insensitive); nonzero / True = bad pixel.
MASK_NAMES = ("mask", "and_mask", "andmask", "badpix", "bad_pixel", "bad", "pixel_mask", "dq")

#: specutils formats of surveys that publish vacuum wavelengths.
VACUUM_FORMAT_PREFIXES = ("SDSS", "APOGEE", "DESI", "MaNGA")

#: Continuum fitter of echelle orders.  An order's blaze falls by half or more
#: towards its ends; on three such orders (SNR ~2000, 9 lines) the median
#: |normalized - true| was 0.0004 with ``clipped``, 0.017 with ``chebyshev``
#: and 0.084 with ``algorithm1`` (made for the flat MARVELS beams), measured
#: with tests/test_readers.py's ``echelle_orders``.
ORDER_FITTER = "clipped"

#: Names of the wavelength, uncertainty and mask images of multi-order FITS files.
_WAVE_EXT = ("WAVE", "WAVELENGTH", "WAVELENGTHS", "LAMBDA", "WAVL", "WL", "LOGLAM")
_STD_EXT = ("ERR", "ERROR", "ERRORS", "SIGMA", "UNCERT", "UNCERTAINTY", "NOISE", "STD")
_VAR_EXT = ("VAR", "VARIANCE")
_IVAR_EXT = ("IVAR", "INVVAR")
_MASK_EXT = ("MASK", "DQ", "BADPIX", "QUALITY")
_FLUX_EXT = ("FLUX", "SCI", "SPEC", "SPECTRUM", "DATA")

#: Spellings of Ångström that astropy does not parse (or parses as Ampere).
_ANGSTROM = {"a", "aa", "angstrom", "angstroms", "angs", "ang", "å", "0.1 nm"}

#: Registry priorities.  remap's readers rank above those they fix (iraf 0, wcs1d-fits 5,
#: tabular-fits 6) and below specutils' survey loaders (10, 20), whose files they must not take.
_PRIORITY = {"remap-multispec": 9, "remap-echelle": 8.5, "remap-fits1d": 8, "remap-table": 7}

_NOTES = "reader_notes"


# ------------------------------------------------------------------------------ helpers
def _is_fits(path):
    try:
        with open(path, "rb") as fh:
            return fh.read(9) == b"SIMPLE  ="
    except OSError:
        return False


def _is_text(path, size=4096):
    try:
        with open(path, "rb") as fh:
            block = fh.read(size)
    except OSError:
        return False
    if not block or b"\0" in block:
        return False
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(block) - 4  # a character cut at the block's end
    return True


def _fits_problem(path):
    """Why a FITS file cannot be read (truncated, no valid HDU), or None when it opens."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False) as hdul:
                len(hdul)  # reads every header
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            return f"{type(exc).__name__}: {_first_line(exc)}"
    for w in caught:
        if "truncated" in str(w.message):
            return _first_line(w.message)
    return None


def _path_of(args):
    """The path given to an astropy identifier (``origin, path, fileobj, ...``)."""
    if args and isinstance(args[0], (str, os.PathLike)):
        return str(args[0])
    return None


def _spectral_unit(text, notes, what):
    """A spectral unit from a header/column unit string; Å (with a note) when there is none."""
    if isinstance(text, u.UnitBase) and not isinstance(text, u.UnrecognizedUnit):
        unit = text
        if unit == u.A:  # FITS 'A' is the ampere; on a wavelength it means Ångström
            return u.AA
    else:
        raw = "" if text is None else str(text).strip()
        if not raw:
            notes.append(f"{what}: no unit, taken as Å")
            return u.AA
        if raw.lower() in _ANGSTROM:
            return u.AA
        try:
            unit = u.Unit(raw, format="fits")
        except ValueError:
            try:
                unit = u.Unit(raw)
            except ValueError:
                raise SpectrumFileError(f"{what} unit {raw!r} is not a unit astropy knows"
                                        ) from None
    if not unit.is_equivalent(u.AA, equivalencies=u.spectral()):
        raise SpectrumFileError(f"{what} unit {unit.to_string()!r} is not a wavelength, "
                                "frequency or energy unit")
    return unit


def _flux_unit(text, notes):
    """The flux unit of ``BUNIT``/``TUNIT``; dimensionless (with a note) if missing or unknown."""
    if isinstance(text, u.UnitBase) and not isinstance(text, u.UnrecognizedUnit):
        return text
    raw = "" if text is None else str(text).strip()
    if not raw:
        notes.append("no flux unit: flux taken in arbitrary units (dimensionless)")
        return u.dimensionless_unscaled
    for fmt in ("fits", "generic"):
        try:
            return u.Unit(raw, format=fmt)
        except ValueError:
            continue
    notes.append(f"flux unit {raw!r} is not an astropy unit: flux taken in arbitrary units "
                 "(dimensionless), values unchanged")
    return u.dimensionless_unscaled


def _unit_parses(text):
    if text is None or not str(text).strip():
        return False
    for fmt in ("fits", "generic"):
        try:
            u.Unit(str(text).strip(), format=fmt)
            return True
        except ValueError:
            continue
    return False


def _merged_header(hdul, index):
    """The header of HDU ``index`` with the primary header's cards it lacks."""
    header = hdul[index].header.copy()
    if index != 0:
        for card in hdul[0].header.cards:
            if card.keyword and card.keyword not in header and card.keyword not in (
                    "SIMPLE", "BITPIX", "NAXIS", "EXTEND", "COMMENT", "HISTORY", ""):
                header[card.keyword] = card.value
    return header


def _uncertainty(kind, values, flux_unit):
    values = np.asarray(values, dtype=float)
    if kind == "ivar":
        return InverseVariance(values, unit=flux_unit ** -2)
    if kind == "var":
        return VarianceUncertainty(values, unit=flux_unit ** 2)
    return StdDevUncertainty(values, unit=flux_unit)


def _spectrum(flux, wave, unit, flux_unit, uncertainty=None, mask=None, meta=None, name=""):
    from specutils import Spectrum

    flux = np.asarray(flux, dtype=float)
    wave = np.asarray(wave, dtype=float)
    if flux.ndim != 1 or wave.shape != flux.shape:
        raise SpectrumFileError(f"{name}: wavelength {wave.shape} and flux {flux.shape} arrays "
                                "do not match")
    if wave.size < 2:
        raise SpectrumFileError(f"{name}: the spectrum has {wave.size} pixel(s)")
    good = np.isfinite(wave)
    if not good.all():
        meta[_NOTES].append(f"{int((~good).sum())} pixel(s) without a finite wavelength dropped")
        flux, wave = flux[good], wave[good]
        if uncertainty is not None:
            uncertainty = type(uncertainty)(uncertainty.array[good], unit=uncertainty.unit)
        if mask is not None:
            mask = mask[good]
    order = np.argsort(wave, kind="stable")
    if np.any(np.diff(order) < 0):
        if not np.all(np.diff(wave) <= 0):  # more than a descending axis
            meta[_NOTES].append("wavelengths not in order: pixels sorted by wavelength")
        flux, wave = flux[order], wave[order]
        if uncertainty is not None:
            uncertainty = type(uncertainty)(uncertainty.array[order], unit=uncertainty.unit)
        if mask is not None:
            mask = mask[order]
    if np.any(np.diff(wave) == 0):
        flux, wave, uncertainty, mask = _average_duplicates(flux, wave, uncertainty, mask, meta)
    try:
        return Spectrum(flux=flux * flux_unit, spectral_axis=wave * unit,
                        uncertainty=uncertainty, mask=mask, meta=meta)
    except ValueError as exc:
        raise SpectrumFileError(f"{name}: {exc}") from None


def _average_duplicates(flux, wave, uncertainty, mask, meta):
    """One pixel per wavelength: repeated wavelengths (segment joins) averaged.

    The unmasked values of a repeated wavelength are averaged (all of them when
    all are masked, and then the pixel stays masked); the variance of the mean
    is the sum of the variances over the count squared.
    """
    axis, index, counts = np.unique(wave, return_inverse=True, return_counts=True)
    good = np.ones(wave.size, bool) if mask is None else ~np.asarray(mask, bool)
    n_good = np.bincount(index, weights=good.astype(float), minlength=axis.size)
    use = good | (n_good[index] == 0)  # a wavelength with no good value uses all of them
    n_use = np.bincount(index, weights=use.astype(float), minlength=axis.size)
    new_flux = np.bincount(index, weights=np.where(use, flux, 0.0), minlength=axis.size) / n_use
    new_unc = None
    if uncertainty is not None:
        if isinstance(uncertainty, InverseVariance):
            with np.errstate(divide="ignore"):
                var = 1.0 / np.asarray(uncertainty.array, float)
        elif isinstance(uncertainty, VarianceUncertainty):
            var = np.asarray(uncertainty.array, float)
        else:
            var = np.asarray(uncertainty.array, float) ** 2
        mean_var = np.bincount(index, weights=np.where(use, var, 0.0),
                               minlength=axis.size) / n_use ** 2
        if isinstance(uncertainty, InverseVariance):
            with np.errstate(divide="ignore"):
                new_unc = InverseVariance(1.0 / mean_var, unit=uncertainty.unit)
        elif isinstance(uncertainty, VarianceUncertainty):
            new_unc = VarianceUncertainty(mean_var, unit=uncertainty.unit)
        else:
            new_unc = StdDevUncertainty(np.sqrt(mean_var), unit=uncertainty.unit)
    new_mask = None if mask is None else n_good == 0
    first = axis[counts > 1][0]
    meta[_NOTES].append(f"{wave.size - axis.size} repeated wavelength(s) (e.g. {first:g}): "
                        "their values averaged")
    return new_flux, axis, new_unc, new_mask


# ----------------------------------------------------------------------- 1-D FITS image
def _image_hdus(hdul):
    return [i for i, h in enumerate(hdul)
            if isinstance(h, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))
            and h.data is not None]


def _onedspec_hdu(hdul):
    """(index, flux, sigma or None) of the first 1-D image (squeezed; IRAF bands allowed)."""
    for i in _image_hdus(hdul):
        header = hdul[i].header
        if str(header.get("CTYPE1", "")).upper().startswith("MULTISPE"):
            continue
        data = np.squeeze(np.asarray(hdul[i].data, dtype=float))
        if data.ndim == 1:
            return i, data, None
        bands = [header.get(f"BANDID{k}") for k in range(1, data.shape[0] + 1)]
        if (data.ndim == 2 and hdul[i].header.get("NAXIS2", 0) == 1 and
                any(isinstance(b, str) for b in bands)):
            sigma = next((data[k] for k, b in enumerate(bands)
                          if isinstance(b, str) and b.lower().startswith(("sigma", "error"))),
                         None)
            return i, data[0], sigma
    return None


def _log10_dispersion(header):
    """True when the dispersion is linear in log10(λ) (IRAF ``DC-FLAG``, ``LOGLAM``, SDSS)."""
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    if "CRVAL1" not in header and "COEFF0" in header and "COEFF1" in header:
        return True
    return header.get("DC-FLAG") == 1 or ctype.startswith("LOG")


def _dispersion(header, n, notes, name):
    """Wavelength values (in the header's unit) of the ``n`` pixels of a 1-D image."""
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    if "CRVAL1" in header:
        step = header.get("CDELT1", header.get("CD1_1"))
        if step is None or not np.isfinite(float(step)) or float(step) == 0:
            raise SpectrumFileError(f"{name}: CRVAL1 without a non-zero CDELT1 or CD1_1: no "
                                    "wavelength solution")
        crval, step = float(header["CRVAL1"]), float(step)
        crpix = float(header.get("CRPIX1", 1.0))
        pixel = np.arange(1, n + 1, dtype=float)
        if "LTV1" in header or "LTM1_1" in header:  # IRAF logical -> physical
            pixel = (pixel - float(header.get("LTV1", 0.0))) / float(header.get("LTM1_1", 1.0))
        x = crval + (pixel - crpix) * step
        if _log10_dispersion(header):
            if crval > 6:
                raise SpectrumFileError(f"{name}: the dispersion is declared log10-linear "
                                        f"(DC-FLAG = 1 or CTYPE1 = {ctype!r}) but CRVAL1 = "
                                        f"{crval:g} is no log10 wavelength")
            notes.append("log10-linear dispersion (IRAF DC-FLAG = 1 / LOGLAM)")
            return 10.0 ** x
        if ctype.endswith("-LOG"):
            notes.append("logarithmic FITS dispersion (CTYPE1 '-LOG')")
            return crval * np.exp(step * (pixel - crpix) / crval)
        return x
    if "COEFF0" in header and "COEFF1" in header:
        notes.append("log10-linear dispersion (SDSS COEFF0/COEFF1)")
        return 10.0 ** (float(header["COEFF0"]) + float(header["COEFF1"]) * np.arange(n))
    raise SpectrumFileError(f"{name}: no wavelength solution (no CRVAL1/CDELT1, CD1_1 or "
                            "COEFF0/COEFF1 keywords)")


def _wat_units(header, axis=1):
    text = "".join(str(header.get(f"WAT{axis}_{k:03d}", "")) for k in range(1, 10))
    match = re.search(r"units\s*=\s*(\S+)", text)
    return match.group(1) if match else None


def _has_dispersion(header):
    return ("CRVAL1" in header and ("CDELT1" in header or "CD1_1" in header)) or \
        ("COEFF0" in header and "COEFF1" in header)


def identify_fits1d(origin, *args, strict=True, **kwargs):
    """astropy identifier of ``remap-fits1d``.

    With ``strict`` (the registered identifier) it accepts only 1-D FITS
    images that specutils' ``wcs1d-fits`` refuses or misreads: a ``BUNIT``
    astropy cannot parse, or a log10 dispersion.  Without, any 1-D FITS image
    with a dispersion.
    """
    path = _path_of(args)
    if origin != "read" or path is None or not _is_fits(path):
        return False
    try:
        with fits.open(path, memmap=False) as hdul:
            found = _onedspec_hdu(hdul)
            if found is None:
                return False
            header = _merged_header(hdul, found[0])
    except Exception:  # noqa: BLE001 - an unreadable file is not this format
        return False
    if not _has_dispersion(header):
        return False
    if not strict:
        return True
    bunit = header.get("BUNIT")
    return _log10_dispersion(header) or (bunit is not None and not _unit_parses(bunit)) or \
        found[2] is not None


def read_fits1d(path, **kwargs):
    """``remap-fits1d``: a 1-D FITS image with a linear or log-linear dispersion.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    spectrum : `specutils.Spectrum`
    """
    name = Path(path).name
    notes = []
    with fits.open(path, memmap=False) as hdul:
        found = _onedspec_hdu(hdul)
        if found is None:
            raise SpectrumFileError(f"{name}: no 1-D image HDU")
        index, flux, sigma = found
        header = _merged_header(hdul, index)
        unc_kind, unc_values, mask = None, sigma, None
        for j in _image_hdus(hdul):
            if j == index:
                continue
            ext = str(hdul[j].header.get("EXTNAME", "")).strip().upper()
            data = np.squeeze(np.asarray(hdul[j].data))
            if data.shape != flux.shape:
                continue
            if ext in _STD_EXT + _VAR_EXT + _IVAR_EXT and unc_values is None:
                unc_kind = "std" if ext in _STD_EXT else "var" if ext in _VAR_EXT else "ivar"
                unc_values = data.astype(float)
            elif ext in _MASK_EXT and mask is None:
                mask = data.astype(bool)
    wave = _dispersion(header, flux.size, notes, name)
    unit = _spectral_unit(header.get("CUNIT1") or _wat_units(header), notes, "CUNIT1")
    flux_unit = _flux_unit(header.get("BUNIT"), notes)
    if sigma is not None:
        notes.append("IRAF bands: band 1 is the flux, the 'sigma' band the uncertainty")
    uncertainty = None
    if unc_values is not None:
        uncertainty = _uncertainty(unc_kind or "std", unc_values, flux_unit)
    meta = {"header": header, _NOTES: notes}
    return _spectrum(flux, wave, unit, flux_unit, uncertainty, mask, meta, name)


# ------------------------------------------------------------------------------ tables
def _find_column(names, wanted):
    lower = {n.lower(): n for n in names}
    for w in wanted:
        if w in lower:
            return lower[w]
    return None


def _wave_column(names):
    """(column, medium or None, log10?) of the wavelength column, or None."""
    pattern = re.compile(r"^(wavelength|wave|lambda|lam|wl|wavelengths)"
                         r"(?:_(air|vac|vacuum))?(?:_(?:aa|a|angstrom|nm|um))?$")
    best = None
    for n in names:
        low = n.lower()
        if low in ("loglam", "log_lambda", "log_wave", "logwave"):
            cand = (len(WAVELENGTH_NAMES), n, None, True)
        else:
            m = pattern.match(low)
            if m is None:
                continue
            medium = {"air": "air", "vac": "vacuum", "vacuum": "vacuum"}.get(m.group(2))
            cand = (WAVELENGTH_NAMES.index(m.group(1)), n, medium, False)
        if best is None or cand[0] < best[0]:
            best = cand
    return None if best is None else best[1:]


def _roles(table):
    """Column names per role: wave (name, medium, log10), flux, (uncertainty, kind), mask."""
    names = table.colnames
    wave = _wave_column(names)
    flux = _find_column(names, FLUX_NAMES)
    unc = _find_column(names, list(UNCERTAINTY_NAMES))
    mask = _find_column(names, MASK_NAMES)
    headerless = all(re.fullmatch(r"col\d+", n) for n in names)
    if (wave is None or flux is None) and headerless and 2 <= len(names) <= 4:
        cols = list(names)
        return {"wave": (cols[0], None, False), "flux": cols[1],
                "unc": (cols[2], "std") if len(cols) > 2 else None,
                "mask": cols[3] if len(cols) > 3 else None, "headerless": True}
    if wave is None or flux is None:
        return None
    return {"wave": wave, "flux": flux,
            "unc": None if unc is None else (unc, UNCERTAINTY_NAMES[unc.lower()]),
            "mask": mask, "headerless": False}


def _text_kind(path):
    """astropy format of a text table: ECSV when it says so, CSV by extension, else guessed."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    if first.startswith("# %ECSV"):
        return "ascii.ecsv"
    if str(path).lower().endswith(".csv"):
        return "ascii.csv"
    return "ascii"


def _text_head(path, n_data=20):
    """The comment lines and the first ``n_data`` other lines of a text file."""
    lines = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            lines.append(line)
            if not line.lstrip().startswith("#") and line.strip():
                n_data -= 1
                if n_data < 0:
                    break
    return "".join(lines)


def _quiet_read(source, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Table.read(source, **kwargs)


def _fits_tables(hdul):
    return [i for i, h in enumerate(hdul) if isinstance(h, (fits.BinTableHDU, fits.TableHDU))]


def _tables_of(path, head=False):
    """(table, header, medium hint) candidates of a table file, in file order."""
    if _is_fits(path):
        out = []
        with fits.open(path, memmap=False) as hdul:
            for i in _fits_tables(hdul):
                table = _quiet_read(hdul[i], format="fits")
                out.append((table, _merged_header(hdul, i)))
        return out
    if not _is_text(path):
        return []
    kind = _text_kind(path)
    source = _text_head(path) if head and kind != "ascii.ecsv" else str(path)
    if head and kind == "ascii.ecsv":
        source = str(path)
    kwargs = {"format": kind}
    if kind == "ascii":
        kwargs["guess"] = True
    try:
        table = _quiet_read(source, **kwargs)
    except Exception:  # noqa: BLE001 - not a table
        return []
    return [(table, dict(table.meta))]


def identify_table(origin, *args, strict=True, **kwargs):
    """astropy identifier of ``remap-table``.

    With ``strict`` (the registered identifier) it accepts only tables that
    specutils' ``tabular-fits``/``ECSV``/``ASCII`` loaders cannot read: the
    wavelength or flux column found by name has no unit or one astropy
    cannot parse (a dimensionless, normalized spectrum), or the file has
    no header row.  Without, any table with such columns.
    """
    path = _path_of(args)
    if origin != "read" or path is None:
        return False
    try:
        candidates = _tables_of(path, head=True)
    except Exception:  # noqa: BLE001 - not this format
        return False
    for table, header in candidates:
        roles = _roles(table)
        if roles is None:
            continue
        if not strict or roles["headerless"]:
            return True
        if _is_sdss(header):
            return False  # specutils' SDSS loaders read these (in vacuum)
        for col in (roles["wave"][0], roles["flux"]):
            unit = table[col].unit
            if unit is None or isinstance(unit, u.UnrecognizedUnit):
                return True
    return False


def _is_sdss(header):
    return str((header or {}).get("TELESCOP", "")).upper().startswith("SDSS")


def read_table(path, **kwargs):
    """``remap-table``: a FITS/ECSV/CSV/text table with wavelength and flux columns.

    Parameters
    ----------
    path : str or path-like
    **kwargs
        ``fitter`` for 2-D (per-order) columns (see :func:`merge_orders`).

    Returns
    -------
    spectrum : `specutils.Spectrum`
    """
    name = Path(path).name
    tried = []
    for table, header in _tables_of(str(path)):
        roles = _roles(table)
        if roles is None:
            tried.append(f"columns {table.colnames}")
            continue
        return _table_spectrum(table, header, roles, name, kwargs.get("fitter"))
    found = "; ".join(tried) if tried else "no table"
    raise SpectrumFileError(
        f"{name}: no wavelength and flux columns ({found}); expected a wavelength column "
        f"named one of {', '.join(WAVELENGTH_NAMES)} and a flux column named one of "
        f"{', '.join(FLUX_NAMES)} (any case)")


def _column_values(table, col):
    column = table[col]
    values = np.ma.filled(np.ma.asarray(column, dtype=float), np.nan) \
        if np.asarray(column).dtype.kind in "fiub" else None
    if values is None:
        raise SpectrumFileError(f"column {col!r} is not numeric")
    return np.asarray(values, dtype=float)


def _table_spectrum(table, header, roles, name, fitter):
    notes = []
    wcol, medium, log10 = roles["wave"]
    if roles["headerless"]:
        notes.append("no column names: columns read as wavelength (Å), flux"
                     + (", 1-sigma uncertainty" if roles["unc"] else "")
                     + (", mask" if roles["mask"] else ""))
    wave = _column_values(table, wcol)
    if log10:
        notes.append(f"column {wcol!r} is log10(wavelength / Å)")
        wave, unit = 10.0 ** wave, u.AA
        if medium is None and _is_sdss(header) and medium_from_header(header) is None:
            medium = "vacuum"  # SDSS publishes vacuum wavelengths as loglam
    else:
        unit = _spectral_unit(table[wcol].unit, notes, f"column {wcol!r}")
    flux = _column_values(table, roles["flux"])
    flux_unit = _flux_unit(table[roles["flux"]].unit, notes)
    masked = np.ma.getmaskarray(np.ma.asarray(table[roles["flux"]]))
    unc = None
    if roles["unc"] is not None:
        ucol, kind = roles["unc"]
        unc = (_column_values(table, ucol), kind)
    mask = None
    if roles["mask"] is not None:
        mask = _mask_values(table[roles["mask"]], roles["mask"])
    if masked.any():
        mask = masked if mask is None else (mask | masked)
    meta = {"header": header, _NOTES: notes}
    if medium is not None:
        meta[MEDIUM_KEY] = medium
        notes.append(f"wavelength medium {medium} from the column name {wcol!r}")
    if wave.ndim in (2, 3) and wave.shape[0] == 1:
        wave = wave[0]
        flux = flux.reshape(wave.shape) if flux.size == wave.size else flux
    if mask is not None and mask.shape != flux.shape:
        mask = mask.reshape(flux.shape) if mask.size == flux.size else None
    if unc is not None:
        unc = (unc[0].reshape(flux.shape), unc[1])
    if wave.ndim == 2:
        if flux.shape != wave.shape:
            raise SpectrumFileError(f"{name}: wavelength {wave.shape} and flux {flux.shape} "
                                    "columns do not match")
        sigma = None if unc is None else _to_sigma(unc[0], unc[1])
        spec = merge_orders(wave * unit, flux * flux_unit, sigma, mask,
                            fitter=fitter, name=name)
        spec.meta.update({"header": header})
        spec.meta[_NOTES] = notes + spec.meta[_NOTES]
        if medium is not None:
            spec.meta[MEDIUM_KEY] = medium
        return spec
    if flux.ndim != 1:
        raise SpectrumFileError(f"{name}: the flux column holds {flux.shape} values per "
                                "wavelength; remap reads one star per file")
    uncertainty = None if unc is None else _uncertainty(unc[1], unc[0], flux_unit)
    return _spectrum(flux, wave, unit, flux_unit, uncertainty, mask, meta, name)


_TRUE = {"true", "t", "1", "yes", "y", "bad"}
_FALSE = {"false", "f", "0", "no", "n", "good", ""}


def _mask_values(column, name):
    """A boolean mask (True = bad) from a numeric, boolean or text ('True'/'False') column."""
    values = np.ma.asarray(column)
    if values.dtype.kind in "US":  # text tables: 'True'/'False', 'T'/'F', ...
        words = np.char.lower(np.char.strip(np.ma.filled(values, "1").astype(str)))
        unknown = sorted(set(words.ravel()) - _TRUE - _FALSE)
        if unknown:
            raise SpectrumFileError(f"mask column {name!r} holds {unknown[:3]}; expected "
                                    "numbers, booleans or True/False")
        return np.isin(words, list(_TRUE))
    return np.asarray(np.ma.filled(values, 1)).astype(bool)


def _to_sigma(values, kind):
    values = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "ivar":
            return np.where(values > 0, 1.0 / np.sqrt(values), np.nan)
        if kind == "var":
            return np.where(values > 0, np.sqrt(values), np.nan)
    return values


# --------------------------------------------------------------------------- multispec
def _wat_text(header, axis):
    """The WAT{axis}_nnn cards joined (each but the last padded to IRAF's 68 characters)."""
    parts = []
    k = 1
    while f"WAT{axis}_{k:03d}" in header:
        parts.append(str(header[f"WAT{axis}_{k:03d}"]))
        k += 1
    if not parts:
        return ""
    return "".join(p.ljust(68) for p in parts[:-1]) + parts[-1]


def _multispec_header(hdul):
    for i in _image_hdus(hdul):
        header = hdul[i].header
        if (str(header.get("CTYPE1", "")).upper().startswith("MULTISPE") or
                re.search(r"spec\d+\s*=", _wat_text(header, 2))):
            return i
    return None


def identify_multispec(origin, *args, **kwargs):
    """astropy identifier of ``remap-multispec``: IRAF multispec FITS (``specN`` in WAT2)."""
    path = _path_of(args)
    if origin != "read" or path is None or not _is_fits(path):
        return False
    try:
        with fits.open(path, memmap=False) as hdul:
            i = _multispec_header(hdul)
            return i is not None and bool(re.search(r"spec\d+\s*=",
                                                    _wat_text(hdul[i].header, 2)))
    except Exception:  # noqa: BLE001 - not this format
        return False


def _multispec_wavelengths(spec, npix, name):
    """Wavelengths of one ``specN = "..."`` definition (pixels 1..npix)."""
    try:
        fields = [float(v) for v in spec.split()]
    except ValueError:
        raise SpectrumFileError(f"{name}: a multispec definition is not numeric: {spec!r}"
                                ) from None
    if len(fields) < 9:
        raise SpectrumFileError(f"{name}: a multispec definition has {len(fields)} fields "
                                f"(9 or more expected): {spec!r}")
    dtype, w1, dw, nw, z = int(fields[2]), fields[3], fields[4], int(fields[5]), fields[6]
    nw = min(nw, npix) if nw > 0 else npix
    p = np.arange(1, nw + 1, dtype=float)
    if dtype == 0:
        return (w1 + dw * (p - 1)) / (1 + z), "linear"
    if dtype == 1:
        return 10.0 ** (w1 + dw * (p - 1)) / (1 + z), "log-linear"
    if dtype != 2:
        raise SpectrumFileError(f"{name}: multispec dispersion type {dtype} is not supported "
                                "(0 linear, 1 log-linear, 2 non-linear)")
    rest = fields[9:]
    total = np.zeros_like(p)
    while rest:
        if len(rest) < 3:
            raise SpectrumFileError(f"{name}: a truncated non-linear multispec function")
        weight, w0, ftype = rest[0], rest[1], int(rest[2])
        if ftype not in (1, 2):
            raise SpectrumFileError(f"{name}: multispec non-linear function type {ftype} "
                                    "is not supported (1 Chebyshev, 2 Legendre)")
        order, pmin, pmax = int(rest[3]), rest[4], rest[5]
        coeffs = np.asarray(rest[6:6 + order])
        if coeffs.size != order:
            raise SpectrumFileError(f"{name}: a multispec polynomial with {order} terms has "
                                    f"{coeffs.size} coefficients")
        x = (2 * p - (pmax + pmin)) / (pmax - pmin)
        poly = np.polynomial.chebyshev.chebval(x, coeffs) if ftype == 1 else \
            np.polynomial.legendre.legval(x, coeffs)
        total += weight * (w0 + poly)
        rest = rest[6 + order:]
    return total / (1 + z), "Chebyshev/Legendre"


def read_multispec(path, **kwargs):
    """``remap-multispec``: an IRAF multispec file, orders normalized and merged.

    Parameters
    ----------
    path : str or path-like
    **kwargs
        ``fitter``: the continuum fitter of :func:`merge_orders`.

    Returns
    -------
    spectrum : `specutils.Spectrum`
    """
    name = Path(path).name
    notes = []
    with fits.open(path, memmap=False) as hdul:
        index = _multispec_header(hdul)
        if index is None:
            raise SpectrumFileError(f"{name}: no multispec WAT2 definitions")
        header = _merged_header(hdul, index)
        data = np.asarray(hdul[index].data, dtype=float)
    sigma = None
    if data.ndim == 3:
        bands = [str(header.get(f"BANDID{k}", "")).lower() for k in range(1, data.shape[0] + 1)]
        k_sig = next((k for k, b in enumerate(bands) if b.startswith(("sigma", "error"))),
                     None)
        sigma = None if k_sig is None else data[k_sig]
        data = data[0]
        notes.append("multispec bands: band 1 is the flux"
                     + (f", band {k_sig + 1} the uncertainty" if k_sig is not None else ""))
    if data.ndim == 1:
        data = data[None, :]
        sigma = None if sigma is None else sigma.reshape(1, -1)
    found = re.findall(r'spec(\d+)\s*=\s*"([^"]*)"', _wat_text(header, 2))
    specs = {int(k): v for k, v in found}
    if len(specs) < data.shape[0]:
        raise SpectrumFileError(f"{name}: {data.shape[0]} orders but {len(specs)} multispec "
                                "definitions in WAT2")
    unit = _spectral_unit(_wat_units(header) or header.get("CUNIT1"), notes,
                          f"{name}: WAT1 units")
    flux_unit = _flux_unit(header.get("BUNIT"), notes)
    waves, fluxes, sigmas, kinds = [], [], [], set()
    for row, key in enumerate(sorted(specs)[:data.shape[0]]):
        wave, kind = _multispec_wavelengths(specs[key], data.shape[1], name)
        kinds.add(kind)
        waves.append(wave)
        fluxes.append(data[row, :wave.size])
        sigmas.append(None if sigma is None else sigma[row, :wave.size])
    notes.append(f"IRAF multispec, {len(waves)} order(s), {'/'.join(sorted(kinds))} "
                 "dispersion")
    if len(waves) == 1:
        unc = None if sigmas[0] is None else StdDevUncertainty(sigmas[0], unit=flux_unit)
        return _spectrum(fluxes[0], waves[0], unit, flux_unit, unc, None,
                         {"header": header, _NOTES: notes}, name)
    spec = merge_orders([w * unit for w in waves], [f * flux_unit for f in fluxes],
                        None if sigma is None else sigmas, None,
                        fitter=kwargs.get("fitter"), name=name)
    spec.meta["header"] = header
    spec.meta[_NOTES] = notes + spec.meta[_NOTES]
    return spec


# ----------------------------------------------------------------------- 2-D echelle FITS
def _echelle_hdus(hdul):
    """(flux, wave, {'std'|'var'|'ivar'|'mask': index}) indices of a 2-D echelle file, or None."""
    images = _image_hdus(hdul)
    ext = {i: str(hdul[i].header.get("EXTNAME", "")).strip().upper() for i in images}
    waves = [i for i in images if ext[i] in _WAVE_EXT]
    if not waves:
        return None
    wave = waves[0]
    shape = np.shape(hdul[wave].data)
    if len(shape) != 2 or shape[0] < 2:
        return None
    candidates = [i for i in images if i != wave and np.shape(hdul[i].data) == shape]
    flux = next((i for i in candidates if ext[i] in _FLUX_EXT), None)
    if flux is None:
        flux = next((i for i in candidates if ext[i] not in
                     _STD_EXT + _VAR_EXT + _IVAR_EXT + _MASK_EXT), None)
    if flux is None:
        return None
    extra = {}
    for i in candidates:
        for kind, names in (("std", _STD_EXT), ("var", _VAR_EXT), ("ivar", _IVAR_EXT),
                            ("mask", _MASK_EXT)):
            if ext[i] in names:
                extra.setdefault(kind, i)
    return flux, wave, extra


def identify_echelle(origin, *args, **kwargs):
    """astropy identifier of ``remap-echelle``: a 2-D flux image with a wavelength image."""
    path = _path_of(args)
    if origin != "read" or path is None or not _is_fits(path):
        return False
    try:
        with fits.open(path, memmap=False) as hdul:
            return _multispec_header(hdul) is None and _echelle_hdus(hdul) is not None
    except Exception:  # noqa: BLE001 - not this format
        return False


def read_echelle(path, **kwargs):
    """``remap-echelle``: 2-D echelle orders with a wavelength image, normalized and merged.

    Parameters
    ----------
    path : str or path-like
    **kwargs
        ``fitter``: the continuum fitter of :func:`merge_orders`.

    Returns
    -------
    spectrum : `specutils.Spectrum`
    """
    name = Path(path).name
    notes = []
    with fits.open(path, memmap=False) as hdul:
        found = _echelle_hdus(hdul)
        if found is None:
            raise SpectrumFileError(f"{name}: no 2-D flux image with a wavelength image "
                                    f"(EXTNAME one of {', '.join(_WAVE_EXT)})")
        iflux, iwave, extra = found
        header = _merged_header(hdul, iflux)
        wave_header = hdul[iwave].header
        flux = np.asarray(hdul[iflux].data, dtype=float)
        wave = np.asarray(hdul[iwave].data, dtype=float)
        sigma = None
        for kind in ("std", "var", "ivar"):
            if kind in extra:
                sigma = _to_sigma(hdul[extra[kind]].data, kind)
                break
        mask = None if "mask" not in extra else np.asarray(hdul[extra["mask"]].data) != 0
    if str(wave_header.get("EXTNAME", "")).strip().upper() == "LOGLAM":
        wave = 10.0 ** wave
        unit = u.AA
        notes.append("wavelength image LOGLAM is log10(wavelength / Å)")
    else:
        unit = _spectral_unit(wave_header.get("BUNIT") or wave_header.get("CUNIT1"), notes,
                              f"{name}: the wavelength image")
    flux_unit = _flux_unit(header.get("BUNIT"), notes)
    notes.append(f"2-D echelle file, {flux.shape[0]} orders of {flux.shape[1]} pixels")
    spec = merge_orders(wave * unit, flux * flux_unit, sigma, mask, fitter=kwargs.get("fitter"),
                        name=name)
    spec.meta["header"] = header
    spec.meta[_NOTES] = notes + spec.meta[_NOTES]
    return spec


# ------------------------------------------------------------------------------ merging
def _order_noise(norm, continuum):
    """Per-pixel 1-σ of a normalized order without uncertainties (scatter, photon-scaled)."""
    f = np.asarray(norm, dtype=float)
    good = np.isfinite(f)
    d = np.diff(f[good])
    sigma = 1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2) if d.size > 4 else np.nan
    if not np.isfinite(sigma) or sigma <= 0:
        sigma = 1e-3
    c = np.asarray(continuum, dtype=float)
    ok = np.isfinite(c) & (c > 0)
    if ok.sum() > 2:
        scale = np.sqrt(np.median(c[ok]) / np.where(ok, c, np.nan))
        return np.where(ok, sigma * scale, np.nan)
    return np.full(f.shape, sigma)


def merge_orders(wavelengths, fluxes, uncertainties=None, masks=None, *, fitter=None,
                 name="spectrum"):
    """Continuum-normalize echelle orders and merge them onto one log-uniform axis.

    Each order is normalized with :func:`remap.normalize` (``fitter``); then
    every order is linearly interpolated onto one grid, uniform in
    ``ln λ`` with the median native step of the orders, from the bluest to
    the reddest pixel, and the orders are averaged with inverse-variance
    weights where they overlap.  A grid pixel next to a masked native pixel
    takes no weight from that order; pixels no order covers (gaps between
    orders) are masked.

    Parameters
    ----------
    wavelengths : `~astropy.units.Quantity` of shape (n_orders, n_pix) or list of 1-D
        Wavelengths of each order (any spectral unit).
    fluxes : `~astropy.units.Quantity` or array, same shapes
        Flux of each order (any unit; raw counts with the blaze are fine).
    uncertainties : array or list of arrays, optional
        1-σ uncertainties in the flux unit.  Without them each order's noise
        is estimated from its pixel-to-pixel scatter after normalization,
        scaled with the continuum as photon noise (σ ∝ C^-1/2).
    masks : bool array or list, optional
        True = bad pixel.
    fitter : str or `remap.continuum.ContinuumFitter`, optional
        Continuum fitter (default :data:`ORDER_FITTER`, ``"clipped"``).
    name : str
        How to call the spectrum in messages.

    Returns
    -------
    spectrum : `specutils.Spectrum`
        Dimensionless flux on the merged axis (Å), 1-σ uncertainty, mask;
        ``meta`` has ``normalized = True``, ``orders`` (the number merged),
        ``merge_step_lnlambda`` and a note in ``reader_notes``.

    Raises
    ------
    SpectrumFileError
        No order could be normalized (the message gives each order's reason).
    """
    from specutils import Spectrum

    from ..continuum import normalize

    fitter = ORDER_FITTER if fitter is None else fitter
    n = len(wavelengths)
    if len(fluxes) != n:
        raise SpectrumFileError(f"{name}: {n} wavelength orders but {len(fluxes)} flux orders")
    orders, skipped = [], []
    for k in range(n):
        w = u.Quantity(wavelengths[k]).to_value(u.AA, equivalencies=u.spectral())
        fq = fluxes[k]
        funit = fq.unit if isinstance(fq, u.Quantity) else u.dimensionless_unscaled
        f = np.asarray(u.Quantity(fq).value if isinstance(fq, u.Quantity) else fq, dtype=float)
        sig = None if uncertainties is None or uncertainties[k] is None else \
            np.asarray(uncertainties[k], dtype=float)
        m = None if masks is None or masks[k] is None else np.asarray(masks[k], dtype=bool)
        keep = np.isfinite(w)
        w, f = w[keep], f[keep]
        sig = None if sig is None else sig[keep]
        m = np.zeros(w.shape, bool) if m is None else m[keep]
        if sig is not None:
            m = m | ~np.isfinite(sig) | (sig <= 0)
        m = m | ~np.isfinite(f)
        try:
            order = Spectrum(flux=np.where(np.isfinite(f), f, 0.0) * funit,
                             spectral_axis=w * u.AA,
                             uncertainty=None if sig is None else StdDevUncertainty(
                                 np.where(np.isfinite(sig) & (sig > 0), sig, 1.0), unit=funit),
                             mask=m)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyUserWarning)
                norm = normalize(order, fitter=fitter)
        except (SpectrumError, ValueError) as exc:
            skipped.append(f"order {k}: {exc}")
            continue
        wave = norm.spectral_axis.to_value(u.AA)
        nf = np.asarray(u.Quantity(norm.flux).value, dtype=float)
        if norm.uncertainty is not None:
            ns = np.asarray(norm.uncertainty.array, dtype=float)
        else:
            ns = _order_noise(nf, u.Quantity(norm.meta["continuum"]).value)
        nm = np.asarray(norm.mask, dtype=bool) | ~np.isfinite(ns) | (ns <= 0)
        orders.append((wave, nf, ns, nm))
    if not orders:
        raise SpectrumFileError(f"{name}: no echelle order could be normalized: "
                                + "; ".join(skipped))
    steps = np.concatenate([np.diff(np.log(o[0])) for o in orders])
    step = float(np.median(steps[steps > 0]))
    lo = min(o[0][0] for o in orders)
    hi = max(o[0][-1] for o in orders)
    npix = int(np.floor(np.log(hi / lo) / step)) + 1
    grid = lo * np.exp(step * np.arange(npix))
    num = np.zeros(npix)
    den = np.zeros(npix)
    for wave, nf, ns, nm in orders:
        inside = (grid >= wave[0]) & (grid <= wave[-1])
        g = grid[inside]
        fi = np.interp(g, wave, np.where(nm, 0.0, nf))
        vi = np.interp(g, wave, np.where(nm, 0.0, ns ** 2))
        bad = np.interp(g, wave, nm.astype(float)) > 0
        weight = np.zeros(g.size)
        ok = ~bad & (vi > 0)
        weight[ok] = 1.0 / vi[ok]
        num[inside] += weight * fi
        den[inside] += weight
    covered = den > 0
    flux = np.ones(npix)
    flux[covered] = num[covered] / den[covered]
    sigma = np.ones(npix)
    sigma[covered] = 1.0 / np.sqrt(den[covered])
    note = (f"{len(orders)} echelle order(s) continuum-normalized "
            f"({getattr(fitter, 'name', fitter)}) and merged by inverse variance onto a "
            f"log-uniform grid (d ln λ = {step:.3g}); flux dimensionless")
    if skipped:
        note += f"; left out: {'; '.join(skipped)}"
    meta = {_NOTES: [note], "normalized": True, "orders": len(orders),
            "merge_step_lnlambda": step}
    return Spectrum(flux=flux * u.dimensionless_unscaled, spectral_axis=grid * u.AA,
                    uncertainty=StdDevUncertainty(sigma), mask=~covered, meta=meta)


# ---------------------------------------------------------------------------- registry
_READERS = {"remap-fits1d": (read_fits1d, identify_fits1d),
            "remap-table": (read_table, identify_table),
            "remap-multispec": (read_multispec, identify_multispec),
            "remap-echelle": (read_echelle, identify_echelle)}


def _registry_loader(reader):
    def load(file_obj, **kwargs):
        if not isinstance(file_obj, (str, os.PathLike)):
            name = getattr(file_obj, "name", None)  # astropy may hand over the open file
            if not isinstance(name, (str, os.PathLike)) or not os.path.isfile(name):
                raise TypeError(f"remap's readers take a path; received "
                                f"{type(file_obj).__name__}")
            file_obj = name
        spec = reader(str(file_obj), **kwargs)
        spec.meta.setdefault("file", str(file_obj))
        return spec
    load.__name__ = reader.__name__
    load.__doc__ = reader.__doc__
    return load


def register():
    """Register remap's readers as specutils ``data_loader`` s (idempotent; run on import).

    Returns
    -------
    registered : list of str
        The formats now registered by remap (a format of that name registered
        by someone else is left alone).
    """
    from specutils import Spectrum, SpectrumList
    from specutils.io.registers import data_loader

    done = []
    # one rebuild of the read() docstrings at the end instead of one per registration
    with io_registry.delay_doc_updates(Spectrum), io_registry.delay_doc_updates(SpectrumList):
        for fmt, (reader, identifier) in _READERS.items():
            if _register_one(fmt, reader, identifier, data_loader, Spectrum):
                done.append(fmt)
    return done


def _register_one(fmt, reader, identifier, data_loader, Spectrum):
    """Register one reader; False when a reader of that name by someone else is there."""
    try:
        existing = io_registry.get_reader(fmt, Spectrum)
    except io_registry.IORegistryError:
        existing = None
    if existing is not None and getattr(existing, "__module__", None) != __name__:
        return False
    data_loader(fmt, identifier=identifier, dtype=Spectrum, extensions=None,
                priority=_PRIORITY[fmt], force=existing is not None)(_registry_loader(reader))
    return True


# ----------------------------------------------------------------------------- reading
def _first_line(text, limit=300):
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[:limit - 3] + "..."


def _as_spectra(result, reader):
    """The list of spectra in what a reader returned (a Spectrum, SpectrumList or list)."""
    from specutils import Spectrum, SpectrumList

    if isinstance(result, Spectrum):
        return [result]
    if isinstance(result, (list, tuple, SpectrumList)):
        spectra = [s for s in result if isinstance(s, Spectrum)]
        if spectra:
            return spectra
    raise SpectrumFileError(f"the {reader} reader returned no spectrum (got "
                            f"{type(result).__name__})")


def _identified(path):
    """specutils formats that identify ``path`` (SpectrumList readers), best first."""
    from specutils import SpectrumList

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        formats = io_registry.identify_format("read", SpectrumList, str(path), None, [], {})
    # the registry keeps (reader, priority) per format; astropy picks the highest
    readers = getattr(io_registry_compat.default_registry, "_readers", {})
    prio = {}
    for fmt in formats:
        entry = readers.get((fmt, SpectrumList))
        prio[fmt] = entry[1] if isinstance(entry, tuple) and len(entry) > 1 else 0
    return sorted(formats, key=lambda f: -prio[f])


def _read_with(path, fmt, fitter):
    """Read with one format: remap's own readers directly, others through specutils."""
    from specutils import SpectrumList

    from .io import FORMAT, read_beams

    if fmt in _READERS:
        kwargs = {} if fitter is None else {"fitter": fitter}
        return [_READERS[fmt][0](str(path), **kwargs)]
    if fmt == FORMAT:
        return list(read_beams(path).values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _as_spectra(SpectrumList.read(str(path), format=fmt), fmt)


def _declare(spectra, path, fmt, medium):
    """Set file, reader, notes and the wavelength medium of every spectrum read."""
    out = []
    for spec in spectra:
        meta = dict(spec.meta or {})
        meta.setdefault("file", str(path))
        meta["reader"] = fmt
        meta[_NOTES] = list(meta.get(_NOTES, []))
        declared = meta.get(MEDIUM_KEY)
        source = "meta"
        if declared is None:
            try:
                declared = medium_from_header(meta.get("header"))
                source = "the header"
            except ValueError as exc:
                meta[_NOTES].append(f"medium not taken from the header: {exc}")
                declared = None
        if (declared is None and isinstance(fmt, str)
                and fmt.startswith(VACUUM_FORMAT_PREFIXES)):
            declared, source = "vacuum", f"the {fmt} convention"
        if declared is not None:
            declared = validate_medium(declared, f"{Path(path).name}: wavelength medium")
        if medium is not None:
            if declared is not None and declared != medium:
                warnings.warn(f"{Path(path).name}: {source} declares {declared} wavelengths, "
                              f"but medium={medium!r} was given; using {medium}",
                              AstropyUserWarning, stacklevel=3)
            meta[MEDIUM_KEY] = medium
        elif declared is not None:
            meta[MEDIUM_KEY] = declared
            if source != "meta":
                meta[_NOTES].append(f"wavelength medium {declared} from {source}")
        spec = copy.copy(spec)
        spec.meta = meta
        out.append(spec)
    return out


def read_spectrum(path, format=None, *, medium=None, fitter=None):
    """Read the spectrum of one star from a file, in whatever layout it comes.

    Parameters
    ----------
    path : str or path-like
    format : str or callable, optional
        A specutils format name (``"tabular-fits"``, ``"wcs1d-fits"``,
        ``"ECSV"``, ``"remap-beam"``, ``"remap-fits1d"``, ``"remap-table"``,
        ``"remap-multispec"``, ``"remap-echelle"``, ...), or a function
        ``reader(path) -> Spectrum | SpectrumList`` of your own.  Default:
        identify it (see the module description for the order).
    medium : {"air", "vacuum"}, optional
        The wavelength medium of the file's wavelengths; it overrides what
        the file declares (with a warning when they differ) and sets
        ``meta["wavelength_medium"]``.  Without it the medium comes from the
        file (see :func:`remap.spectra.medium.medium_from_header`) or stays
        undeclared; :func:`remap.fit` then assumes the survey's and warns.
    fitter : str or `remap.continuum.ContinuumFitter`, optional
        Continuum fitter for normalizing echelle orders before they are
        merged (default :data:`ORDER_FITTER`, ``"clipped"``).

    Returns
    -------
    spectrum : `specutils.Spectrum` or `specutils.SpectrumList`
        A single spectrum when the file holds one, else a ``SpectrumList``
        (one star: one spectrum per beam or per wavelength chunk, as
        :func:`remap.fit` takes it).  ``meta`` holds ``file``, ``reader``,
        ``reader_notes`` and, when known, ``wavelength_medium``.  Not
        validated: :func:`remap.prepare` / :func:`remap.fit` do that.

    Raises
    ------
    FileNotFoundError
        No such file.
    SpectrumFileError
        The path is not a regular file, the file is empty, or no reader can
        read it (the message names the file and the readers tried, with the
        reason each gave).
    ValueError
        ``medium`` is not ``"air"`` or ``"vacuum"``.

    Examples
    --------
    >>> import remap
    >>> spec = remap.read_spectrum("HD190406_mike.fits")        # doctest: +SKIP
    >>> spec.meta["reader"], spec.meta["reader_notes"]           # doctest: +SKIP
    ('remap-fits1d', ["flux unit 'DU/PIXEL' is not an astropy unit: ..."])
    """
    if medium is not None:
        medium = validate_medium(medium, "medium")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise SpectrumFileError(f"{path}: not a regular file")
    if callable(format):
        reader = getattr(format, "__name__", "custom")
        try:
            spectra = _as_spectra(format(str(path)), reader)
        except SpectrumFileError as exc:
            raise SpectrumFileError(f"{path}: {exc}") from None
        return _result(_declare(spectra, path, reader, medium))
    if path.stat().st_size == 0:
        raise SpectrumFileError(f"{path}: the file is empty (0 bytes)")
    # Readers of damaged files warn before they fail, and identification asks every
    # reader: keep their warnings (as hints for the error) and make what happens
    # independent of the caller's warning filters (pytest's "error", Dask workers').
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            spectra, fmt = _read_file(path, format, fitter)
        except SpectrumFileError as exc:
            hints = [_first_line(w.message) for w in caught
                     if not issubclass(w.category, (DeprecationWarning, ResourceWarning))]
            hint = f" (a reader warned: {hints[0]})" if hints and hints[0] not in str(exc) \
                else ""
            raise SpectrumFileError(f"{exc}{hint}") from None
    return _result(_declare(spectra, path, fmt, medium))


def _read_file(path, format, fitter):
    """(spectra, format) of a non-empty file; SpectrumFileError naming every reader tried."""
    name = path.name
    if format is not None:
        try:
            return _read_with(path, format, fitter), format
        except io_registry.IORegistryError as exc:
            raise SpectrumFileError(f"{path}: {_first_line(exc)}") from None
        except (SpectrumFileError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise SpectrumFileError(f"{path}: the {format} reader failed: "
                                    f"{type(exc).__name__}: {_first_line(exc)}") from None
    problem = _fits_problem(path) if _is_fits(path) else None
    if problem is not None:
        raise SpectrumFileError(f"{path}: a damaged FITS file ({problem})")
    tried = []
    candidates = _identified(path)
    fallbacks = [f for f in REMAP_FORMATS if f not in candidates]
    for fmt in candidates + fallbacks:
        if fmt in fallbacks and not _READERS[fmt][1]("read", str(path), None, strict=False):
            continue
        try:
            return _read_with(path, fmt, fitter), fmt
        except Exception as exc:  # noqa: BLE001 - readers raise anything on a bad file
            text = _first_line(exc).replace(f"{name}: ", "")
            tried.append(f"the {fmt} reader failed ({type(exc).__name__}: {text})")
    if not tried:
        kind = "a FITS file" if _is_fits(path) else "a text file" if _is_text(path) else \
            "not FITS or text"
        raise SpectrumFileError(
            f"{path}: no reader recognises this file ({kind}); tried the specutils formats and "
            f"{', '.join(REMAP_FORMATS)}. Pass format= (remap fit --format) with a specutils "
            "format, or write wavelength and flux columns with common names")
    raise SpectrumFileError(f"{path}: " + "; ".join(tried))


def _result(spectra):
    from specutils import SpectrumList

    return spectra[0] if len(spectra) == 1 else SpectrumList(spectra)


register()
