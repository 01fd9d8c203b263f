"""``remap-echelle``: FITS files with a 2-D flux image and a wavelength image of its shape."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

from ...exceptions import SpectrumFileError
from ._common import (_FLUX_EXT, _IVAR_EXT, _MASK_EXT, _STD_EXT, _VAR_EXT, _WAVE_EXT,
                      _flux_unit, _image_hdus, _identify_fits, _merged_header,
                      _spectral_unit, _to_sigma)
from .merge import merged_file_spectrum
from .multispec import _multispec_header

__all__ = ["identify_echelle", "read_echelle"]


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
    return _identify_fits(origin, args, lambda hdul: _multispec_header(hdul) is None
                          and _echelle_hdus(hdul) is not None)


def read_echelle(path, **kwargs):
    """``remap-echelle``: 2-D echelle orders with a wavelength image, normalized and merged.

    The uncertainty image (standard deviation, variance or inverse variance,
    by its ``EXTNAME``) and the mask image are optional; a wavelength image
    named ``LOGLAM`` holds log10(λ / Å).

    Parameters
    ----------
    path : str or path-like
    **kwargs
        ``fitter``: the continuum fitter of the orders (see
        :func:`~remap.spectra.readers.merge_orders`).

    Returns
    -------
    spectrum : `specutils.Spectrum`
        Dimensionless, on one log-uniform wavelength grid.

    Raises
    ------
    SpectrumFileError
        No 2-D flux image with a wavelength image of its shape, or no order
        that could be normalized.
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
    return merged_file_spectrum(wave * unit, flux * flux_unit, sigma, mask, header=header,
                                notes=notes, fitter=kwargs.get("fitter"), name=name)
