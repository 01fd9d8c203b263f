"""``remap-multispec``: IRAF multispec files (``CTYPE1 = 'MULTISPE'``, ``specN`` in WAT2)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import StdDevUncertainty

from ...exceptions import SpectrumFileError
from ._common import (_NOTES, _flux_unit, _image_hdus, _identify_fits, _merged_header,
                      _spectral_unit, _spectrum, _wat_units)
from .merge import merged_file_spectrum

__all__ = ["identify_multispec", "read_multispec"]


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
    def test(hdul):
        i = _multispec_header(hdul)
        return i is not None and re.search(r"spec\d+\s*=", _wat_text(hdul[i].header, 2))

    return _identify_fits(origin, args, test)


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

    One order is returned as read (in the file's flux unit); two or more are
    continuum-normalized and merged by
    :func:`~remap.spectra.readers.merge_orders`.

    Parameters
    ----------
    path : str or path-like
    **kwargs
        ``fitter``: the continuum fitter of the orders.

    Returns
    -------
    spectrum : `specutils.Spectrum`

    Raises
    ------
    SpectrumFileError
        No ``specN`` definitions in WAT2, fewer definitions than orders, or a
        definition that is not numeric or has an unsupported dispersion type.
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
    return merged_file_spectrum([w * unit for w in waves], [f * flux_unit for f in fluxes],
                                None if sigma is None else sigmas, None, header=header,
                                notes=notes, fitter=kwargs.get("fitter"), name=name)
