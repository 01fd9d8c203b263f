"""What remap's spectrum-file readers share: file sniffing, units, headers, Spectrum building."""

from __future__ import annotations

import os
import re
import warnings

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty
from specutils import Spectrum

from ...exceptions import SpectrumFileError

#: Names of the wavelength, flux, uncertainty and mask images of multi-image FITS files.
_WAVE_EXT = ("WAVE", "WAVELENGTH", "WAVELENGTHS", "LAMBDA", "WAVL", "WL", "LOGLAM")
_STD_EXT = ("ERR", "ERROR", "ERRORS", "SIGMA", "UNCERT", "UNCERTAINTY", "NOISE", "STD")
_VAR_EXT = ("VAR", "VARIANCE")
_IVAR_EXT = ("IVAR", "INVVAR")
_MASK_EXT = ("MASK", "DQ", "BADPIX", "QUALITY")
_FLUX_EXT = ("FLUX", "SCI", "SPEC", "SPECTRUM", "DATA")

#: Spellings of Ångström that astropy does not parse (or parses as Ampere).
_ANGSTROM = {"a", "aa", "angstrom", "angstroms", "angs", "ang", "å", "0.1 nm"}

#: ``meta`` key of the list of what a reader assumed or did.
_NOTES = "reader_notes"


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


def _identify_fits(origin, args, test):
    """What ``test(hdul)`` says of the FITS file given to an astropy identifier.

    False when astropy is not reading, was given no path, or the file is not
    FITS or cannot be opened (then it is not the identifier's format).
    """
    path = _path_of(args)
    if origin != "read" or path is None or not _is_fits(path):
        return False
    try:
        with fits.open(path, memmap=False) as hdul:
            return bool(test(hdul))
    except Exception:  # noqa: BLE001 - an unreadable file is not this format
        return False


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


def _image_hdus(hdul):
    return [i for i, h in enumerate(hdul)
            if isinstance(h, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))
            and h.data is not None]


def _wat_units(header, axis=1):
    text = "".join(str(header.get(f"WAT{axis}_{k:03d}", "")) for k in range(1, 10))
    match = re.search(r"units\s*=\s*(\S+)", text)
    return match.group(1) if match else None


def _to_sigma(values, kind):
    values = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "ivar":
            return np.where(values > 0, 1.0 / np.sqrt(values), np.nan)
        if kind == "var":
            return np.where(values > 0, np.sqrt(values), np.nan)
    return values


def _first_line(text, limit=300):
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[:limit - 3] + "..."
