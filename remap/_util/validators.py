"""Validators of user input shared by remap's modules."""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import astropy.units as u
import numpy as np

__all__ = ["wavelength_range"]


def _one_wavelength(item, what, value, default_unit):
    if isinstance(item, u.Quantity):
        if item.ndim != 0:
            raise ValueError(f"{what} must be a (min, max) pair of wavelengths; received "
                             f"{value!r}")
        try:
            return item.to_value(u.AA, equivalencies=u.spectral()), item.unit
        except u.UnitConversionError:
            raise u.UnitConversionError(
                f"{what} has unit {item.unit}, which is not spectral; expected a "
                f"wavelength (e.g. u.AA); received {value!r}") from None
    if isinstance(item, numbers.Real) and not isinstance(item, (bool, np.bool_)):
        if default_unit is None:
            raise TypeError(f"{what} must be wavelengths with units: a Quantity pair such as "
                            f"(5000, 5750) * u.AA or (5000 * u.AA, 5750 * u.AA); received "
                            f"{value!r}")
        return (float(item) * default_unit).to_value(u.AA, equivalencies=u.spectral()), \
            u.Unit(default_unit)
    raise TypeError(f"{what} must be a (min, max) pair of wavelengths; received {value!r}")


def wavelength_range(value, what: str = "wave_range", *,
                     default_unit: u.UnitBase | str | None = None) -> u.Quantity:
    """Check a ``(min, max)`` wavelength range and return it in Å.

    Parameters
    ----------
    value : `~astropy.units.Quantity` or pair
        A Quantity of shape ``(2,)`` (``(5000, 5750) * u.AA``), or a pair of
        scalar Quantities (``(5000 * u.AA, 575 * u.nm)``; the units may
        differ).  Any spectral unit is accepted (converted with
        `astropy.units.spectral`); a range given in frequency or energy may
        come in either order.  Plain numbers are accepted only when
        ``default_unit`` is given, and are read in that unit.
    what : str
        Name of the argument, for the error messages.
    default_unit : `~astropy.units.Unit` or str, optional
        Unit of plain numbers; `None` (the default) refuses them.

    Returns
    -------
    wave_range : `~astropy.units.Quantity`
        Shape ``(2,)``, in Å, with ``0 < min < max``, both finite.

    Raises
    ------
    TypeError
        Not a pair, or plain numbers without ``default_unit``.
    astropy.units.UnitConversionError
        A unit that is not spectral (also a `ValueError`).
    ValueError
        Not two values, not finite and positive, or ``min >= max``.

    Examples
    --------
    >>> import astropy.units as u
    >>> wavelength_range((5000 * u.AA, 575 * u.nm))
    <Quantity [5000., 5750.] Angstrom>
    >>> wavelength_range((4850, 5750), default_unit=u.AA)
    <Quantity [4850., 5750.] Angstrom>
    """
    if isinstance(value, u.Quantity):
        if value.shape != (2,):
            raise ValueError(f"{what} must be a (min, max) pair of wavelengths; received a "
                             f"Quantity of shape {value.shape}: {value!r}")
        items = [value[0], value[1]]
    elif isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a (min, max) pair of wavelengths; received {value!r}")
    else:
        items = list(value)
        if len(items) != 2:
            raise ValueError(f"{what} must be a (min, max) pair of wavelengths; received "
                             f"{len(items)} values: {value!r}")
    (lo, lo_unit), (hi, hi_unit) = (_one_wavelength(item, what, value, default_unit)
                                    for item in items)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo > 0 and hi > 0):
        raise ValueError(f"{what} must hold finite positive wavelengths; received {value!r}")
    if lo > hi and not (lo_unit.is_equivalent(u.m) and hi_unit.is_equivalent(u.m)):
        lo, hi = hi, lo  # a frequency or energy range maps to wavelengths in reverse
    if not lo < hi:
        raise ValueError(f"{what} must be a (min, max) pair with min < max; received "
                         f"{value!r}")
    return u.Quantity([lo, hi], u.AA)
