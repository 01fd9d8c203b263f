"""Air and vacuum wavelengths.

Ground-based optical spectra are usually calibrated in *air* wavelengths,
synthetic spectra (PHOENIX) and space-based or infrared surveys in *vacuum*
wavelengths; the two differ by about 1.4 Å at 5000 Å, i.e. 14 pixels of the
MARVELS 0.1 Å grid, so every spectrum that enters remap must be on the
medium its model was trained on.  This module is the one place where remap
converts between the two.

The refractive index of standard dry air (15 °C, 101 325 Pa, 0.03 % CO₂) is
the formula of Morton (2000, ApJS 130, 403, eq. 8), a fit to the dispersion
relation of Birch & Downs (1994, Metrologia 31, 315) as adopted by the IAU
and used by VALD and SDSS::

    n - 1 = 8.34254e-5 + 2.406147e-2 / (130 - s²) + 1.5998e-4 / (38.9 - s²),
    s = 10⁴ / λ_vac[Å]   (in µm⁻¹)

so that ``λ_air = λ_vac / n(λ_vac)``.  Because ``n`` is a function of the
*vacuum* wavelength, the inverse ``air_to_vacuum`` is computed by an exact
numerical inversion (a fixed-point iteration ``λ_vac ← λ_air · n(λ_vac)``,
a contraction with factor ≈ 1e-5), so that a round trip agrees to better than
1e-8 Å; no approximate published inverse is used.

The formula is valid for wavelengths above 2000 Å (the IAU convention quotes
air wavelengths only above 2000 Å) and is applied up to 10 µm
(:data:`VALID_RANGE`); wavelengths outside that range are refused.
"""

from __future__ import annotations

import copy

import astropy.units as u
import numpy as np

__all__ = ["MEDIA", "VALID_RANGE", "validate_medium", "refractive_index", "vacuum_to_air",
           "air_to_vacuum", "convert_medium"]

#: The wavelength media remap knows.
MEDIA = ("air", "vacuum")

#: Range of (vacuum or air) wavelengths on which the conversion is applied.
VALID_RANGE = (2000.0 * u.AA, 100000.0 * u.AA)

# Morton (2000, ApJS 130, 403), eq. 8
_A, _B, _B0, _C, _C0 = 8.34254e-5, 2.406147e-2, 130.0, 1.5998e-4, 38.9


def validate_medium(medium, what="medium"):
    """Return ``medium`` lower-cased if it is ``"air"`` or ``"vacuum"``.

    Parameters
    ----------
    medium : str
        The name of a wavelength medium.
    what : str
        How to call the argument in the error message.

    Returns
    -------
    medium : str
        ``"air"`` or ``"vacuum"``.

    Raises
    ------
    ValueError
        ``medium`` is not one of :data:`MEDIA`.
    """
    if isinstance(medium, str) and medium.strip().lower() in MEDIA:
        return medium.strip().lower()
    raise ValueError(f"{what} must be 'air' or 'vacuum'; received: {medium!r}")


def _to_angstrom(wavelength, medium):
    """Wavelength values in Å (float array) from a spectral Quantity, range-checked."""
    if not isinstance(wavelength, u.Quantity):
        raise TypeError(f"expected the {medium} wavelength as an astropy Quantity with a "
                        f"spectral unit (e.g. 5000 * u.AA); received {type(wavelength).__name__}")
    try:
        value = wavelength.to_value(u.AA, equivalencies=u.spectral())
    except u.UnitConversionError:
        raise u.UnitsError(f"the {medium} wavelength has unit {wavelength.unit}, which is not "
                           "a wavelength, frequency, energy or wavenumber unit") from None
    value = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(value)):
        raise ValueError(f"the {medium} wavelengths contain NaN or infinite values")
    lo, hi = VALID_RANGE[0].to_value(u.AA), VALID_RANGE[1].to_value(u.AA)
    if value.size and (value.min() < lo or value.max() > hi):
        raise ValueError(f"{medium} wavelengths must lie in {lo:g}-{hi:g} Å for the air/vacuum "
                         f"conversion (Morton 2000 formula); received "
                         f"{value.min():g}-{value.max():g} Å")
    return value


def _back(value_aa, like):
    """``value_aa`` (Å) as a Quantity in the unit of ``like``."""
    return (value_aa * u.AA).to(like.unit, equivalencies=u.spectral())


def _index(vacuum_aa):
    s2 = (1.0e4 / vacuum_aa) ** 2
    return 1.0 + _A + _B / (_B0 - s2) + _C / (_C0 - s2)


def refractive_index(vacuum_wavelength):
    """Refractive index of standard dry air at a vacuum wavelength (Morton 2000, eq. 8).

    Parameters
    ----------
    vacuum_wavelength : `~astropy.units.Quantity`
        Vacuum wavelength(s) in any spectral unit, within :data:`VALID_RANGE`.

    Returns
    -------
    n : `numpy.ndarray` or float
        The refractive index, of the input's shape.

    Raises
    ------
    TypeError
        The input is not a Quantity.
    astropy.units.UnitsError
        Its unit is not spectral.
    ValueError
        Non-finite values or values outside :data:`VALID_RANGE`.
    """
    return _index(_to_angstrom(vacuum_wavelength, "vacuum"))


def vacuum_to_air(wavelength):
    """Convert vacuum wavelengths to air wavelengths.

    Parameters
    ----------
    wavelength : `~astropy.units.Quantity`
        Vacuum wavelength(s), any shape, in any spectral unit (a frequency,
        energy or wavenumber is read as the vacuum wavelength it stands for).

    Returns
    -------
    air : `~astropy.units.Quantity`
        Air wavelengths, same shape and unit as the input.

    Raises
    ------
    TypeError, astropy.units.UnitsError, ValueError
        See :func:`refractive_index`.

    Examples
    --------
    >>> import astropy.units as u
    >>> from remap.spectra.medium import vacuum_to_air
    >>> vacuum_to_air(6564.61 * u.AA).round(2)
    <Quantity 6562.8 Angstrom>
    """
    vac = _to_angstrom(wavelength, "vacuum")
    return _back(vac / _index(vac), wavelength)


def air_to_vacuum(wavelength, *, rtol=1e-14, max_iter=50):
    """Convert air wavelengths to vacuum wavelengths (exact inverse of `vacuum_to_air`).

    Parameters
    ----------
    wavelength : `~astropy.units.Quantity`
        Air wavelength(s), any shape, in any spectral unit.
    rtol : float
        Relative convergence tolerance of the fixed-point iteration.
    max_iter : int
        Largest number of iterations (about 4 are needed at double precision).

    Returns
    -------
    vacuum : `~astropy.units.Quantity`
        Vacuum wavelengths, same shape and unit as the input.

    Raises
    ------
    TypeError, astropy.units.UnitsError, ValueError
        See :func:`refractive_index`.
    RuntimeError
        The iteration did not converge (cannot happen within the valid range).
    """
    air = _to_angstrom(wavelength, "air")
    vac = air * _index(air)
    for _ in range(max_iter):
        new = air * _index(vac)
        done = np.all(np.abs(new - vac) <= rtol * np.abs(new))
        vac = new
        if done:
            return _back(vac, wavelength)
    raise RuntimeError(f"air_to_vacuum did not converge in {max_iter} iterations")


def convert_medium(spectrum_or_wavelength, from_medium, to_medium):
    """Convert a spectrum's spectral axis, or wavelengths, between air and vacuum.

    Parameters
    ----------
    spectrum_or_wavelength : `specutils.Spectrum` or `~astropy.units.Quantity`
        A spectrum (its spectral axis is converted; flux, uncertainty and mask
        are kept as they are, see Notes) or wavelengths.
    from_medium, to_medium : {"air", "vacuum"}
        The medium of the input and the medium wanted.

    Returns
    -------
    converted : `specutils.Spectrum` or `~astropy.units.Quantity`
        A new spectrum (with ``meta["wavelength_medium"] = to_medium``) or a new
        Quantity in the input's unit.  When the media are equal the result is
        a copy of the input.

    Raises
    ------
    ValueError
        A medium is not ``"air"`` or ``"vacuum"``, or the wavelengths are out
        of :data:`VALID_RANGE`.
    TypeError
        The input is neither a spectrum nor a Quantity.

    Notes
    -----
    Flux values are not rescaled: a flux density per unit wavelength changes
    by ``dλ_vac/dλ_air ≈ 1.0003`` between media, far below anything that
    matters for continuum-normalised spectra.
    """
    from_medium = validate_medium(from_medium, "from_medium")
    to_medium = validate_medium(to_medium, "to_medium")
    from specutils import Spectrum

    def convert(wave):
        if from_medium == to_medium:
            return wave.copy()
        return vacuum_to_air(wave) if to_medium == "air" else air_to_vacuum(wave)

    if isinstance(spectrum_or_wavelength, Spectrum):
        spec = spectrum_or_wavelength
        axis = u.Quantity(spec.spectral_axis)
        meta = dict(spec.meta or {})
        meta["wavelength_medium"] = to_medium
        return Spectrum(flux=u.Quantity(spec.flux, copy=True), spectral_axis=convert(axis),
                        uncertainty=copy.deepcopy(spec.uncertainty),
                        mask=None if spec.mask is None else np.array(spec.mask, copy=True),
                        meta=meta)
    if isinstance(spectrum_or_wavelength, u.Quantity):
        return convert(spectrum_or_wavelength)
    raise TypeError("convert_medium expects a specutils.Spectrum or a Quantity of "
                    f"wavelengths; received {type(spectrum_or_wavelength).__name__}")
