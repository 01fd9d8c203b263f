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
* a boolean mask, True = bad, which also flags non-finite flux, and pixels
  whose uncertainty is zero, negative or not finite; the flux under newly
  masked pixels is filled by linear interpolation so that later numerical
  steps see finite values;
* an uncertainty that is zero everywhere is taken as not given.

A spectrum whose usable fraction is below ``1 - max_bad_fraction``
(:data:`MAX_BAD_FRACTION` = 0.5 by default), with fewer than ``min_pixels``
usable pixels (:data:`MIN_PIXELS`), or whose usable flux is all zero or
negative, is refused.
"""

from __future__ import annotations

import hashlib
import numbers
import threading

import astropy.units as u
import numpy as np
from astropy.nddata import (InverseVariance, StdDevUncertainty, VarianceUncertainty)

from ..exceptions import SpectrumError

__all__ = ["MIN_PIXELS", "MAX_BAD_FRACTION", "prepare", "spectrum_arrays",
           "spectrum_parts", "check_rows", "wavelength_of",
           "stddev_of", "is_spectrum", "spectrum_class"]

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
    if unit is u.AA:    # the common case, without unit arithmetic (~70 us a spectrum)
        value = np.array(spectral_axis.value, dtype=float)
        if not np.all(np.isfinite(value)):
            raise SpectrumError("the spectral axis contains NaN or infinite values")
        return value * u.AA
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


#: Spectral axes converted to Å: (unit, size, first, last value) -> list of (raw values,
#: wavelengths).  Most inputs of a survey share a handful of axes, and astropy's unit
#: conversion costs more than the rest of the validation of a spectrum; a hit is checked
#: value by value (``np.array_equal``), so equal keys never mix different axes.
_AXES_LOCK = threading.Lock()
_AXES: dict = {}
_AXES_MAX = 64


def _axis_order(wave):
    """``None`` for an ascending axis, ``"flip"`` for a descending one, else the message."""
    dw = np.diff(wave)
    if wave.size > 1 and np.all(dw < 0):
        return "flip"
    if np.any(dw == 0):
        i = int(np.flatnonzero(dw == 0)[0])
        return (f"the spectral axis has duplicate values (e.g. {wave[i]:.6g} Angstrom at "
                f"pixels {i} and {i + 1}); expected strictly monotonic wavelengths")
    if np.any(dw < 0):
        i = int(np.flatnonzero(dw < 0)[0])
        return (f"the spectral axis is not monotonic (it turns back at pixel {i + 1}, "
                f"{wave[i + 1]:.6g} Angstrom); expected strictly increasing or decreasing "
                "wavelengths. Sort the spectrum or split its orders/beams into separate "
                "spectra.")
    return None


def _wavelength(axis):
    """``wavelength_of(axis)`` as a float array, cached by the axis' unit and values.

    Returns the wavelengths in ascending order where the axis descends
    (read-only, the same object for equal axes), a grouping key (equal for
    equal axes) and the order verdict of `_axis_order` (``None``: ascending,
    ``"flip"``: the input descends and ``wave`` is reversed, else a message).
    """
    raw = axis.view(np.ndarray) if isinstance(axis, u.Quantity) else None
    cacheable = isinstance(raw, np.ndarray) and raw.ndim == 1 and raw.size > 0 \
        and raw.dtype.kind == "f"
    if cacheable:
        key = (axis.unit, raw.size, float(raw[0]), float(raw[-1]))
        for known, wave, order in _AXES.get(key, ()):
            if np.array_equal(known, raw):
                return wave, id(wave), order
    wave = np.array(wavelength_of(axis).value, dtype=float)
    order = _axis_order(wave) if wave.ndim == 1 else None
    if order == "flip":
        wave = wave[::-1].copy()
    wave.flags.writeable = False
    if cacheable:
        with _AXES_LOCK:    # (two chunks may be validated at once, remap.fit_iter)
            if len(_AXES) >= _AXES_MAX:
                _AXES.pop(next(iter(_AXES)))
            _AXES.setdefault(key, []).append((raw.copy(), wave, order))
        return wave, id(wave), order
    return wave, hashlib.sha1(np.ascontiguousarray(wave).view(np.uint8)).digest(), order


def _stddev(uncertainty, shape, unit):
    """`stddev_of`, without astropy unit arithmetic in the common case (σ in the flux unit).

    In that case the array is returned as given (not copied, negative values
    kept): `check_rows` turns negative values into NaN, as `stddev_of` does.
    """
    if (type(uncertainty) is StdDevUncertainty and uncertainty.unit is unit
            and np.shape(uncertainty.array) == shape):
        return np.asarray(uncertainty.array, dtype=float)
    return stddev_of(uncertainty, shape, unit)


def spectrum_parts(spectrum, name="spectrum", *, min_pixels=MIN_PIXELS, copy=True):
    """The whole-spectrum checks of :func:`spectrum_arrays`, and its raw arrays.

    Everything that concerns the spectrum as a whole (type, shape, spectral
    axis and its order, uncertainty and mask shapes) is checked here; the
    per-row rules are left to :func:`check_rows`, so that many spectra on one
    axis can be checked together.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`
    name : str
        How to call the input in messages.
    min_pixels : int
        Fewest pixels the spectrum may have.
    copy : bool
        Copy the flux (``False``: the arrays may be views of the input's,
        read only; stack or copy them before `check_rows`).

    Returns
    -------
    parts : dict
        ``wave`` (ascending, read-only), ``key``, ``flux`` (n, npix), ``std``
        (n, npix, standard deviations, invalid where negative or not finite) or None,
        ``mask`` (n, npix) bool or None, ``ndim``, ``unit``, ``medium`` (raw
        ``meta["wavelength_medium"]``).  A descending axis is reversed
        together with the arrays.

    Raises
    ------
    TypeError
        Not a Spectrum.
    SpectrumError
        A problem of the whole spectrum.
    """
    Spectrum = spectrum_class()
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"{name}: expected a specutils Spectrum (or Spectrum1D), a "
                        f"SpectrumList or a dict of beam spectra; received "
                        f"{type(spectrum).__name__}")
    if isinstance(spectrum.data, np.ndarray) and spectrum.unit is not None:
        data, unit = spectrum.data, spectrum.unit    # what ``spectrum.flux`` wraps
    else:
        flux_q = u.Quantity(spectrum.flux, copy=False)
        data, unit = flux_q.value, flux_q.unit
    flux = np.array(data, dtype=float) if copy else np.asarray(data, dtype=float)
    if flux.ndim not in (1, 2):
        raise SpectrumError(f"{name}: the flux has {flux.ndim} dimensions, shape {flux.shape}; "
                            "expected 1 (one spectrum) or 2 (a batch: spectra x pixels)")
    flux2 = np.atleast_2d(flux)
    npix = flux2.shape[-1]
    if flux2.size == 0 or npix == 0:
        raise SpectrumError(f"{name}: the spectrum is empty (flux shape {flux.shape})")
    try:
        wave, axis_key, order = _wavelength(spectrum.spectral_axis)
    except SpectrumError as exc:
        raise SpectrumError(f"{name}: {exc}") from None
    if wave.ndim != 1 or wave.size != npix:
        raise SpectrumError(f"{name}: the spectral axis has shape {wave.shape} but the flux "
                            f"has {npix} pixels per spectrum")
    if npix < min_pixels:
        raise SpectrumError(f"{name}: the spectrum has only {npix} pixels; at least "
                            f"{min_pixels} are needed")
    try:
        std = _stddev(spectrum.uncertainty, flux.shape, unit)
    except SpectrumError as exc:
        raise SpectrumError(f"{name}: {exc}") from None
    if spectrum.mask is None:
        mask2 = None
    else:
        mask_in = np.asarray(spectrum.mask)
        if mask_in.shape != flux.shape:
            raise SpectrumError(f"{name}: the mask has shape {mask_in.shape}, the flux "
                                f"{flux.shape}; they must match")
        mask2 = np.atleast_2d(mask_in.astype(bool))
    std2 = None if std is None else np.atleast_2d(np.asarray(std, dtype=float))
    if order is not None and order != "flip":
        raise SpectrumError(f"{name}: {order}")
    if order == "flip":
        flux2 = flux2[:, ::-1]
        mask2 = None if mask2 is None else mask2[:, ::-1]
        std2 = None if std2 is None else std2[:, ::-1]
    return {"wave": wave, "key": axis_key, "flux": flux2, "std": std2, "mask": mask2,
            "ndim": flux.ndim, "unit": unit,
            "medium": (spectrum.meta or {}).get("wavelength_medium")}


def check_rows(flux, std, mask, labels, *, has_std=None, min_pixels=MIN_PIXELS,
               max_bad_fraction=MAX_BAD_FRACTION):
    """The per-row rules of :func:`spectrum_arrays`, on rows of one wavelength grid.

    Parameters
    ----------
    flux : float (n, npix)
        Filled in place under the masked pixels of the rows that pass
        (linear interpolation).
    std : float (n, npix) or None
        Standard deviations (negative, NaN or inf where invalid); rows with
        ``has_std`` False are ignored.
    mask : bool (n, npix) or None
        Input mask, True = bad.
    labels : sequence of str
        How messages name each row.
    has_std : bool (n,), optional
        Rows that were given an uncertainty (default: all, when ``std`` is
        given).

    Returns
    -------
    sigma : float (n, npix)
        NaN rows where no uncertainty is given (or it is zero everywhere).
    bad : bool (n, npix)
    notes : list of list of (code, message)
    errors : list of str or None
        Per row: why it cannot be used, or None.
    """
    # imported on use: numba's import costs about a second
    from ._rows_kernel import scan_rows

    n, npix = flux.shape
    notes = [[] for _ in range(n)]
    # one compiled pass per row (remap.spectra._rows_kernel): bad = non-finite flux or
    # masked, and in rows that use their uncertainty also a zero, negative or non-finite
    # one (negative standard deviations are invalid: NaN in sigma); an uncertainty of
    # exactly zero everywhere means "none given"
    bad, sigma, nbad, positive, zero_rows = scan_rows(flux, std, mask, has_std)
    if std is not None:
        for i in np.flatnonzero(zero_rows):
            notes[i].append(("sigma_all_zero", f"{labels[i]}: the uncertainty is zero "
                                               "everywhere; taken as not given"))
    errors = [None] * n
    for i in np.flatnonzero((nbad / npix > max_bad_fraction) | (npix - nbad < min_pixels)
                            | ~positive):
        nb = int(nbad[i])
        if nb / npix > max_bad_fraction:
            errors[i] = (f"{labels[i]}: {nb} of {npix} pixels ({nb / npix:.0%}) are masked or "
                         f"not finite; at most {max_bad_fraction:.0%} may be bad")
        elif npix - nb < min_pixels:
            errors[i] = (f"{labels[i]}: only {npix - nb} usable pixels; at least {min_pixels} "
                         "are needed")
        else:
            errors[i] = (f"{labels[i]}: the flux is zero or negative everywhere; expected a "
                         "positive (continuum-bearing) flux")
    for i in np.flatnonzero(nbad > 0):
        if errors[i] is None:
            _fill_masked(flux[i:i + 1], bad[i:i + 1])
            row = sigma[i]
            fill = ~(np.isfinite(row) & (row > 0))
            if fill.any() and not fill.all():
                row[fill] = row[~fill].max()
    return sigma, bad, notes, errors


def spectrum_arrays(spectrum, name="spectrum", *, min_pixels=MIN_PIXELS,
                    max_bad_fraction=MAX_BAD_FRACTION, row_errors="raise"):
    """A spectrum checked and converted to plain arrays, without building a new Spectrum.

    The rules of the module documentation, plus the uncertainty rules: pixels
    whose uncertainty is zero, negative or not finite are masked, and an
    uncertainty that is zero everywhere (in a row) is taken as *not given*
    (with a note).  :func:`prepare` and the ``validate`` stage of
    :func:`remap.fit` both use these rules (the stage through
    :func:`spectrum_parts` and :func:`check_rows`, many spectra at once).

    Parameters
    ----------
    spectrum : `specutils.Spectrum`
        1-D or 2-D flux.
    name : str
        How to call the input in messages (rows of a 2-D input: ``name[i]``).
    min_pixels, max_bad_fraction
        As for :func:`prepare`.
    row_errors : {"raise", "return"}
        What to do with a row that fails (mostly masked, too few pixels, no
        positive flux): raise its `SpectrumError`, or return its message in
        ``row_errors`` (and leave that row unfilled).

    Returns
    -------
    arrays : dict
        ``wave`` (npix,) Å, ascending, read-only (the same array for inputs on
        the same axis); ``key``, equal for equal axes; ``flux`` (n, npix)
        float, masked pixels filled by linear interpolation; ``sigma`` (n,
        npix) standard deviations in the flux unit, rows of NaN where no
        uncertainty is given; ``mask`` (n, npix) bool, True = bad; ``ndim``
        of the input flux; ``unit`` of the flux; ``medium``, the raw
        ``meta["wavelength_medium"]`` (not checked); ``notes``, per row a list
        of ``(code, message)``; ``row_errors``, per row a message or None.

    Raises
    ------
    TypeError
        Not a Spectrum.
    SpectrumError
        For the whole spectrum; for a row too with ``row_errors="raise"``.
    """
    parts = spectrum_parts(spectrum, name, min_pixels=min_pixels)
    flux2 = np.ascontiguousarray(parts.pop("flux"))
    n = flux2.shape[0]
    labels = [f"{name}[{i}]" if parts["ndim"] == 2 else name for i in range(n)]
    sigma, bad, notes, errors = check_rows(flux2, parts.pop("std"), parts.pop("mask"), labels,
                                           min_pixels=min_pixels,
                                           max_bad_fraction=max_bad_fraction)
    if row_errors == "raise":
        for message in errors:
            if message is not None:
                raise SpectrumError(message)
    return {**parts, "flux": flux2, "sigma": sigma, "mask": bad, "notes": notes,
            "row_errors": errors}


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
        boolean mask, ``meta`` copied.  Pixels whose uncertainty is zero,
        negative or not finite are masked; an uncertainty that is zero
        everywhere is dropped (taken as not given; in a batch where only some
        rows have one, the others hold NaN).

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
    a = spectrum_arrays(spectrum, name, min_pixels=min_pixels,
                        max_bad_fraction=max_bad_fraction)
    unit = a["unit"]
    shape = (lambda x: x) if a["ndim"] == 2 else (lambda x: x[0])
    has = np.isfinite(a["sigma"]).all(axis=1)
    uncertainty = StdDevUncertainty(shape(a["sigma"]) * unit) if has.any() else None
    return Spectrum(flux=shape(a["flux"]) * unit, spectral_axis=a["wave"] * u.AA,
                    uncertainty=uncertainty, mask=shape(a["mask"]),
                    meta=dict(spectrum.meta or {}))
