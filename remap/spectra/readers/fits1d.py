"""``remap-fits1d``: 1-D FITS images with a linear, log10-linear or ``-LOG`` dispersion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from ...exceptions import SpectrumFileError
from ._common import (_IVAR_EXT, _MASK_EXT, _NOTES, _STD_EXT, _VAR_EXT, _flux_unit,
                      _image_hdus, _identify_fits, _merged_header, _spectral_unit,
                      _spectrum, _uncertainty, _unit_parses, _wat_units)

__all__ = ["identify_fits1d", "read_fits1d"]


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
    def test(hdul):
        found = _onedspec_hdu(hdul)
        if found is None:
            return False
        header = _merged_header(hdul, found[0])
        if not _has_dispersion(header):
            return False
        if not strict:
            return True
        bunit = header.get("BUNIT")
        return _log10_dispersion(header) or (bunit is not None and not _unit_parses(bunit)) \
            or found[2] is not None

    return _identify_fits(origin, args, test)


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
