"""Spectra in: validation and canonicalisation of `specutils.Spectrum` inputs.

Every entry point of remap that accepts a spectrum passes it through
:func:`prepare`, which turns any acceptable input into one canonical form, or
raises a `~remap.exceptions.SpectrumError` that says what was wrong and what
was expected:

* spectral axis in Å, strictly increasing (a descending axis, or a frequency,
  energy or wavenumber axis, is converted and flipped; duplicates and
  non-monotonic axes are refused);
* flux as floating point with its unit kept (any unit; a 2-D flux of
  ``N`` spectra × pixels sharing one spectral axis is a batch);
* uncertainty as `~astropy.nddata.StdDevUncertainty` (from StdDev, Variance or
  InverseVariance), or none;
* a boolean mask, True = bad, which also flags non-finite flux or uncertainty
  and non-positive variances; the flux under newly masked pixels is filled by
  linear interpolation so that later numerical steps see finite values.

A spectrum whose usable fraction is below ``1 - max_bad_fraction``
(:data:`MAX_BAD_FRACTION` = 0.5 by default), with fewer than ``min_pixels``
usable pixels (:data:`MIN_PIXELS`), or whose usable flux is all zero or
negative, is refused.
"""

from __future__ import annotations

import numbers

import astropy.units as u
import numpy as np
from astropy.nddata import (InverseVariance, StdDevUncertainty, VarianceUncertainty)

from ..exceptions import SpectrumError

__all__ = ["MIN_PIXELS", "MAX_BAD_FRACTION", "prepare", "wavelength_of", "stddev_of",
           "is_spectrum", "spectrum_class"]

#: Default minimum number of usable (unmasked, finite) pixels per spectrum.
MIN_PIXELS = 16

#: Default largest fraction of bad (masked or non-finite) pixels per spectrum.
MAX_BAD_FRACTION = 0.5


def spectrum_class():
    """`specutils.Spectrum` (the class every input must be an instance of)."""
    from specutils import Spectrum
    return Spectrum


def is_spectrum(obj):
    """True for a `specutils.Spectrum` (including the deprecated ``Spectrum1D``)."""
    return isinstance(obj, spectrum_class())


def wavelength_of(spectral_axis):
    """Convert a spectral axis (any `u.spectral` unit) to wavelength in Å.

    Raises
    ------
    SpectrumError
        The axis has no unit, a unit that is not spectral, or non-finite values.
    """
    if not isinstance(spectral_axis, u.Quantity):
        raise SpectrumError("the spectral axis has no unit; expected a Quantity in a "
                            "wavelength, frequency, energy or wavenumber unit (e.g. u.AA)")
    unit = spectral_axis.unit
    if unit == u.dimensionless_unscaled or unit == u.pix:
        raise SpectrumError(f"the spectral axis is in {unit.to_string() or 'dimensionless'} "
                            "units; expected a wavelength, frequency, energy or wavenumber "
                            "unit (e.g. u.AA). Attach the wavelength solution first.")
    if unit.is_equivalent(u.km / u.s):
        raise SpectrumError(f"the spectral axis is a velocity ({unit}); expected a wavelength, "
                            "frequency, energy or wavenumber unit. Convert it to wavelengths "
                            "with its rest value first.")
    try:
        wave = u.Quantity(spectral_axis, copy=True).to(u.AA, equivalencies=u.spectral())
    except u.UnitConversionError:
        raise SpectrumError(f"the spectral axis unit {unit} is not a spectral unit; "
                            "expected wavelength, frequency, energy or wavenumber "
                            "(convertible with astropy.units.spectral())") from None
    value = np.asarray(wave.value, dtype=float)
    if not np.all(np.isfinite(value)):
        raise SpectrumError("the spectral axis contains NaN or infinite values")
    return value * u.AA


def stddev_of(uncertainty, shape, flux_unit):
    """Standard deviations (array of ``shape``, in ``flux_unit``) from any NDData uncertainty.

    Returns `None` when ``uncertainty`` is `None`.  Non-positive variances or
    inverse variances become ``inf`` (to be masked).
    """
    if uncertainty is None:
        return None
    arr = np.asarray(uncertainty.array, dtype=float)
    if arr.shape != shape:
        raise SpectrumError(f"the uncertainty has shape {arr.shape}, the flux {shape}; "
                            "they must match")
    unc_unit = getattr(uncertainty, "unit", None)
    with np.errstate(divide="ignore", invalid="ignore"):
        if isinstance(uncertainty, StdDevUncertainty):
            std = np.where(arr >= 0, arr, np.nan)
            std_unit = unc_unit
        elif isinstance(uncertainty, VarianceUncertainty):
            std = np.where(arr > 0, np.sqrt(arr), np.where(arr == 0, 0.0, np.nan))
            std_unit = unc_unit ** 0.5 if unc_unit is not None else None
        elif isinstance(uncertainty, InverseVariance):
            std = np.where(arr > 0, 1.0 / np.sqrt(arr), np.inf)
            std_unit = unc_unit ** -0.5 if unc_unit is not None else None
        else:
            raise SpectrumError(f"unsupported uncertainty type {type(uncertainty).__name__}; "
                                "expected StdDevUncertainty, VarianceUncertainty or "
                                "InverseVariance")
    if std_unit is not None and flux_unit is not None and std_unit != flux_unit:
        try:
            std = (std * std_unit).to_value(flux_unit)
        except u.UnitConversionError:
            raise SpectrumError(f"the uncertainty unit {std_unit} does not match the flux "
                                f"unit {flux_unit}") from None
    return std


def _fill_masked(flux, mask):
    """Linearly interpolate ``flux`` across masked pixels, row by row (in place)."""
    x = np.arange(flux.shape[-1])
    for row, bad in zip(flux, mask):
        if bad.any():
            good = ~bad
            row[bad] = np.interp(x[bad], x[good], row[good])
    return flux


def prepare(spectrum, *, min_pixels=MIN_PIXELS, max_bad_fraction=MAX_BAD_FRACTION,
            name="spectrum"):
    """Validate a spectrum and return it in remap's canonical form.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`
        One spectrum (1-D flux) or a batch (2-D flux, spectra × pixels) with
        any spectral-axis unit convertible to wavelength, any flux unit, an
        optional uncertainty and an optional mask (True = bad).
    min_pixels : int
        Fewest usable pixels a spectrum may have.
    max_bad_fraction : float
        Largest fraction of masked or non-finite pixels a spectrum may have.
    name : str
        How to call the input in error messages (e.g. a file name).

    Returns
    -------
    spectrum : `specutils.Spectrum`
        A new spectrum: Å axis strictly increasing, float flux (non-finite
        values filled by interpolation and masked), `StdDevUncertainty` or none,
        boolean mask, ``meta`` copied.

    Raises
    ------
    TypeError
        ``spectrum`` is not a `specutils.Spectrum`.
    SpectrumError
        For every problem listed in the module docstring.
    """
    Spectrum = spectrum_class()
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"{name}: expected a specutils.Spectrum (or Spectrum1D), got "
                        f"{type(spectrum).__name__}; build one with "
                        "Spectrum(flux=..., spectral_axis=...)")
    if not isinstance(min_pixels, numbers.Integral) or min_pixels < 2:
        raise ValueError(f"min_pixels must be an integer >= 2; received: {min_pixels!r}")
    if not (0 <= max_bad_fraction < 1):
        raise ValueError(f"max_bad_fraction must be in [0, 1); received: {max_bad_fraction!r}")

    flux_q = u.Quantity(spectrum.flux)
    flux_unit = flux_q.unit
    flux = np.array(flux_q.value, dtype=float, copy=True)
    if flux.ndim not in (1, 2):
        raise SpectrumError(f"{name}: the flux has {flux.ndim} dimensions, shape {flux.shape}; "
                            "expected 1 (one spectrum) or 2 (a batch: spectra x pixels)")
    batch = flux.ndim == 2
    flux2 = np.atleast_2d(flux)
    npix = flux2.shape[-1]
    if flux2.size == 0 or npix == 0:
        raise SpectrumError(f"{name}: the spectrum is empty (flux shape {flux.shape})")

    try:
        wave = wavelength_of(spectrum.spectral_axis)
    except SpectrumError as exc:
        raise SpectrumError(f"{name}: {exc}") from None
    if wave.ndim != 1 or wave.size != npix:
        raise SpectrumError(f"{name}: the spectral axis has shape {wave.shape} but the flux "
                            f"has {npix} pixels per spectrum")
    if npix < min_pixels:
        raise SpectrumError(f"{name}: the spectrum has only {npix} pixels; at least "
                            f"{min_pixels} are needed")

    try:
        std = stddev_of(spectrum.uncertainty, flux.shape, flux_unit)
    except SpectrumError as exc:
        raise SpectrumError(f"{name}: {exc}") from None
    std2 = None if std is None else np.atleast_2d(np.array(std, dtype=float))
    if spectrum.mask is None:
        mask2 = np.zeros(flux2.shape, dtype=bool)
    else:
        mask_in = np.asarray(spectrum.mask)
        if mask_in.shape != flux.shape:
            raise SpectrumError(f"{name}: the mask has shape {mask_in.shape}, the flux "
                                f"{flux.shape}; they must match")
        mask2 = np.atleast_2d(mask_in.astype(bool)).copy()

    # order of the spectral axis: ascending (kept), descending (flipped), else refused
    dw = np.diff(wave.value)
    if npix > 1 and np.all(dw < 0):
        order = slice(None, None, -1)
        wave = wave[order]
        flux2 = flux2[:, order]
        mask2 = mask2[:, order]
        std2 = None if std2 is None else std2[:, order]
        dw = np.diff(wave.value)
    if np.any(dw == 0):
        i = int(np.flatnonzero(dw == 0)[0])
        raise SpectrumError(f"{name}: the spectral axis has duplicate values (e.g. "
                            f"{wave[i]:.6g} at pixels {i} and {i + 1}); expected strictly "
                            "monotonic wavelengths")
    if np.any(dw < 0):
        i = int(np.flatnonzero(dw < 0)[0])
        raise SpectrumError(f"{name}: the spectral axis is not monotonic (it turns back at "
                            f"pixel {i + 1}, {wave[i + 1]:.6g}); expected strictly "
                            "increasing or decreasing wavelengths. Sort the spectrum or "
                            "split its orders/beams into separate spectra.")

    bad = mask2 | ~np.isfinite(flux2)
    if std2 is not None:
        bad |= ~np.isfinite(std2)
    nbad = bad.sum(axis=1)
    for i, nb in enumerate(nbad):
        label = f"{name}[{i}]" if batch else name
        ngood = npix - nb
        if nb / npix > max_bad_fraction:
            raise SpectrumError(f"{label}: {nb} of {npix} pixels ({nb / npix:.0%}) are masked "
                                f"or not finite; at most {max_bad_fraction:.0%} may be bad")
        if ngood < min_pixels:
            raise SpectrumError(f"{label}: only {ngood} usable pixels; at least {min_pixels} "
                                "are needed")
        if not np.any(flux2[i][~bad[i]] > 0):
            raise SpectrumError(f"{label}: the flux is zero or negative everywhere; expected "
                                "a positive (continuum-bearing) flux")
    flux2 = _fill_masked(flux2, bad)
    if std2 is not None:
        finite = np.isfinite(std2)
        fill = np.nanmax(np.where(finite, std2, np.nan)) if finite.any() else 1.0
        std2 = np.where(finite, std2, fill)

    shape = (lambda a: a) if batch else (lambda a: a[0])
    uncertainty = None if std2 is None else StdDevUncertainty(shape(std2) * flux_unit)
    Spectrum = spectrum_class()
    return Spectrum(flux=shape(flux2) * flux_unit, spectral_axis=wave,
                    uncertainty=uncertainty, mask=shape(bad),
                    meta=dict(spectrum.meta or {}))
