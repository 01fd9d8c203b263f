"""Validators of user input shared by remap's modules."""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import astropy.units as u
import numpy as np

__all__ = ["is_int", "is_real", "bounds_text", "check_int", "check_real", "check_choice",
           "check_seed", "per_star", "wavelength_range"]


# --------------------------------------------------------------------------- per star

def per_star(value, name, expected):
    """A number or one number per star: a 0-d or 1-D float array (finiteness not checked).

    Parameters
    ----------
    value : number or sequence of numbers
    name : str
        Option name for the messages.
    expected : str
        What the option may be, for the message (e.g. ``"None, a velocity in km/s
        or one per star"``).

    Raises
    ------
    ValueError
        Not numbers, or an array that is not 1-D.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {expected}; received {value!r}")
    if isinstance(value, numbers.Real):
        return np.asarray(float(value))
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {expected}; received {type(value).__name__}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a number or a 1-D array (one per star); received "
                         f"shape {arr.shape}")
    return arr


# --------------------------------------------------------------------------- scalars

def is_int(value) -> bool:
    """Whether ``value`` is an integer (any integral type, NumPy's included; not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value) -> bool:
    """Whether ``value`` is a finite real number (NumPy scalars included; not a bool)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
            and bool(np.isfinite(value)))


def bounds_text(minimum=None, maximum=None, *, strict_min: bool = False,
                strict_max: bool = False) -> str:
    """The bounds of a check as written in its message: ``" >= 1"``, ``" in [0, 1)"``, ``""``.

    Parameters
    ----------
    minimum, maximum : number, optional
        The bounds (None: unbounded on that side).
    strict_min, strict_max : bool
        Whether the bound is exclusive.
    """
    if minimum is not None and maximum is not None:
        return f" in {'(' if strict_min else '['}{minimum}, {maximum}{')' if strict_max else ']'}"
    if minimum is not None:
        return f" {'>' if strict_min else '>='} {minimum}"
    if maximum is not None:
        return f" {'<' if strict_max else '<='} {maximum}"
    return ""


def _within(value, minimum, maximum, strict_min, strict_max):
    if minimum is not None and not (value > minimum if strict_min else value >= minimum):
        return False
    return maximum is None or (value < maximum if strict_max else value <= maximum)


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None,
              *, error: type[Exception] = ValueError) -> int:
    """Return ``value`` as an int, or raise an error that names it and echoes the bad value.

    Parameters
    ----------
    name : str
        The argument's name, used in the message.
    value : object
        The value to check: any integral type (NumPy's included), not a bool.
    minimum, maximum : int, optional
        Inclusive bounds.
    error : type, optional
        Exception class raised (default `ValueError`).

    Returns
    -------
    value : int

    Raises
    ------
    ValueError
        Not an integer, or out of bounds, e.g. ``n must be an integer >= 1;
        received n=0``.

    Examples
    --------
    >>> check_int("n", 3, 1)
    3
    """
    if not (is_int(value) and _within(value, minimum, maximum, False, False)):
        raise error(f"{name} must be an integer{bounds_text(minimum, maximum)}; received "
                    f"{name}={value!r}")
    return int(value)


def check_real(name: str, value, minimum: float | None = None, maximum: float | None = None,
               *, strict_min: bool = False, strict_max: bool = False,
               error: type[Exception] = ValueError) -> float:
    """Return ``value`` as a float, or raise an error that names it and echoes the bad value.

    Parameters
    ----------
    name : str
        The argument's name, used in the message.
    value : object
        The value to check: a finite real number (NumPy scalars included), not
        a bool.
    minimum, maximum : float, optional
        Bounds, inclusive unless ``strict_min`` / ``strict_max``.
    strict_min, strict_max : bool
        Make that bound exclusive.
    error : type, optional
        Exception class raised (default `ValueError`).

    Returns
    -------
    value : float

    Raises
    ------
    ValueError
        Not a finite real number, or out of bounds, e.g. ``gamma must be a
        finite number >= 0; received gamma=-1``.

    Examples
    --------
    >>> check_real("beta", 0.5, 0, 1, strict_max=True)
    0.5
    """
    if not (is_real(value) and _within(value, minimum, maximum, strict_min, strict_max)):
        bounds = bounds_text(minimum, maximum, strict_min=strict_min, strict_max=strict_max)
        raise error(f"{name} must be a finite number{bounds}; received {name}={value!r}")
    return float(value)


def check_choice(name: str, value, choices, *, error: type[Exception] = ValueError):
    """Return ``value`` if it is one of ``choices`` (strings), else raise an error listing them.

    Examples
    --------
    >>> check_choice("reduction", "mean", ("mean", "sum"))
    'mean'
    """
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise error(f"{name} must be one of {', '.join(map(repr, choices))}; received "
                    f"{name}={value!r}")
    return value


def check_seed(seed, name: str = "seed") -> int:
    """Return a random seed as an int: an integer >= 0 (`check_int`)."""
    return check_int(name, seed, 0)


# --------------------------------------------------------------------------- wavelengths


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
