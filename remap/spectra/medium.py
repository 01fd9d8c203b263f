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
import warnings
from collections.abc import Mapping

import astropy.units as u
import numpy as np

from ..exceptions import MediumAssumedWarning

__all__ = ["MEDIA", "VALID_RANGE", "MEDIUM_KEY", "validate_medium", "refractive_index",
           "vacuum_to_air", "air_to_vacuum", "convert_medium", "medium_from_header",
           "resolve_medium", "apply_medium", "declare_medium", "warn_medium_assumed"]

#: The ``meta`` key holding a spectrum's wavelength medium everywhere in remap.
MEDIUM_KEY = "wavelength_medium"

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


# ------------------------------------------------------------------ medium in metadata
#: Header keywords that name the medium, with how their values read.
_AIR_WORDS = ("air", "awav")
_VACUUM_WORDS = ("vac", "vacuum", "vacuo", "wave")


def _medium_word(value):
    """'air', 'vacuum' or None for a keyword value such as ``'AIR'``, ``'vac'``, ``'Vacuum'``."""
    if not isinstance(value, str):
        return None
    word = value.strip().lower()
    if word in _AIR_WORDS:
        return "air"
    if word in _VACUUM_WORDS:
        return "vacuum"
    return None


def medium_from_header(header):
    """The wavelength medium a FITS header (or a table's ``meta``) declares, if any.

    Read, in this order (the first that answers wins; the explicit keywords
    must agree with each other):

    ``AIRORVAC``
        ``'air'`` or ``'vac'``/``'vacuum'`` (IRAF, ESO, many pipelines);
    ``WAVE_MED``, ``WAVEMED``, ``MEDIUM``
        ``'AIR'`` or ``'VACUUM'``;
    ``VACUUM``
        logical: ``T`` = vacuum, ``F`` = air;
    ``CTYPE1``
        the FITS WCS spectral type (Greisen et al. 2006): ``'AWAV'`` (and
        ``'AWAV-*'``) is air, ``'WAVE'`` (and ``'WAVE-*'``) vacuum;
        ``'LINEAR'``, ``'MULTISPE'`` and others say nothing;
    ``wavelength_medium``
        remap's own key (``meta`` of remap's tables).

    Parameters
    ----------
    header : `astropy.io.fits.Header` or mapping
        Keys are matched case-insensitively.

    Returns
    -------
    medium : {"air", "vacuum"} or None
        None when nothing declares the medium.

    Raises
    ------
    ValueError
        Two explicit keywords contradict each other (e.g. ``AIRORVAC = 'air'``
        with ``VACUUM = T``): the file cannot be trusted either way.
    """
    if header is None:
        return None
    if not isinstance(header, Mapping) and not hasattr(header, "keys"):
        raise TypeError(f"header must be a FITS header or a mapping; received "
                        f"{type(header).__name__}")
    upper = {}
    for key in header.keys():
        if isinstance(key, str) and key.upper() not in upper:
            upper[key.upper()] = header[key]
    found = {}
    for key in ("AIRORVAC", "WAVE_MED", "WAVEMED", "MEDIUM", "WAVELENGTH_MEDIUM"):
        medium = _medium_word(upper.get(key))
        if medium is not None:
            found[key] = medium
    vac = upper.get("VACUUM")
    if isinstance(vac, (bool, np.bool_)):
        found["VACUUM"] = "vacuum" if vac else "air"
    if len(set(found.values())) > 1:
        raise ValueError("the header declares contradicting wavelength media: "
                         + ", ".join(f"{k} -> {v}" for k, v in found.items()))
    if found:
        return next(iter(found.values()))
    ctype = upper.get("CTYPE1")
    if isinstance(ctype, str):
        head = ctype.strip().upper().split("-")[0]
        if head == "AWAV":
            return "air"
        if head == "WAVE":
            return "vacuum"
    return None


def resolve_medium(meta, medium=None, default="air", name="spectrum"):
    """The wavelength medium of a spectrum: given, declared, or assumed.

    Parameters
    ----------
    meta : mapping or None
        The spectrum's ``meta``; ``meta["wavelength_medium"]`` is its declared
        medium.
    medium : {"air", "vacuum"}, optional
        The medium the caller states (e.g. ``remap.fit(..., medium=)`` or
        ``remap fit --medium``); it wins over ``meta``.
    default : {"air", "vacuum"}
        The medium assumed when neither says (normally the survey's).
    name : str
        How to call the spectrum in error messages.

    Returns
    -------
    medium : {"air", "vacuum"}
    assumed : bool
        True when ``default`` was taken because nothing declared the medium;
        the caller should then warn once (see :func:`warn_medium_assumed`).

    Raises
    ------
    ValueError
        A medium that is not ``"air"`` or ``"vacuum"``.
    """
    default = validate_medium(default, "default")
    if medium is not None:
        return validate_medium(medium, "medium"), False
    declared = (meta or {}).get(MEDIUM_KEY)
    if declared is not None:
        return validate_medium(declared, f"{name}.meta[{MEDIUM_KEY!r}]"), False
    return default, True


def apply_medium(spectrum, medium):
    """Declare the wavelength medium of a spectrum (or of every spectrum of a list).

    Only the metadata changes: ``meta["wavelength_medium"] = medium``; the
    wavelengths are not converted (that happens where a spectrum meets a survey
    or model of the other medium, see :meth:`remap.surveys.Survey.split`).

    Parameters
    ----------
    spectrum : `specutils.Spectrum` or `specutils.SpectrumList` or list of them
    medium : {"air", "vacuum"}

    Returns
    -------
    spectrum : same type as the input
        A new object sharing the data arrays, with a new ``meta`` dict.

    Raises
    ------
    ValueError
        ``medium`` is not ``"air"`` or ``"vacuum"``.
    TypeError
        Not a spectrum or a list of spectra.
    """
    from specutils import Spectrum, SpectrumList

    medium = validate_medium(medium, "medium")
    if isinstance(spectrum, (SpectrumList, list, tuple)):
        out = [apply_medium(s, medium) for s in spectrum]
        return SpectrumList(out) if isinstance(spectrum, SpectrumList) else type(spectrum)(out)
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"apply_medium expects a specutils.Spectrum or a list of them; "
                        f"received {type(spectrum).__name__}")
    new = copy.copy(spectrum)
    new.meta = {**dict(spectrum.meta or {}), MEDIUM_KEY: medium}
    return new


def declare_medium(star, medium=None, default="air"):
    """Give one star's spectra a declared medium: ``medium``, their own, or ``default``.

    The one-star step of the medium rule (:func:`resolve_medium`) for the
    shapes :func:`remap.fit` takes; a pipeline calls it per star, collects the
    stars for which ``assumed`` is True and calls :func:`warn_medium_assumed`
    once.

    Parameters
    ----------
    star : `specutils.Spectrum`, `specutils.SpectrumList`, list/tuple or dict of them
        One star (a dict maps beam names to spectra).
    medium : {"air", "vacuum"}, optional
        The caller's medium; wins over ``meta``.
    default : {"air", "vacuum"}
        The medium assumed where nothing declares one (the survey's).

    Returns
    -------
    star : same type as the input
        Spectra that already declared the resolved medium are returned as
        they are, the others through :func:`apply_medium`.
    assumed : bool
        True when ``default`` was assumed for at least one spectrum.
    """
    from specutils import Spectrum, SpectrumList

    if isinstance(star, Mapping):
        out, assumed = {}, False
        for key, piece in star.items():
            out[key], was = declare_medium(piece, medium, default)
            assumed |= was
        return type(star)(out) if not isinstance(star, dict) else out, assumed
    if isinstance(star, (SpectrumList, list, tuple)):
        pieces = [declare_medium(piece, medium, default) for piece in star]
        new = [p for p, _ in pieces]
        return (SpectrumList(new) if isinstance(star, SpectrumList) else type(star)(new),
                any(a for _, a in pieces))
    if not isinstance(star, Spectrum):
        raise TypeError(f"declare_medium expects a specutils.Spectrum, a SpectrumList, a list "
                        f"or a dict of them; received {type(star).__name__}")
    resolved, assumed = resolve_medium(star.meta, medium, default=default)
    if (star.meta or {}).get(MEDIUM_KEY) == resolved:
        return star, assumed
    return apply_medium(star, resolved), assumed


def warn_medium_assumed(names, medium, source="the survey's medium", stacklevel=2):
    """Warn once that ``names`` declare no medium and ``medium`` was assumed.

    Parameters
    ----------
    names : sequence of str
        The spectra (files) concerned; the warning counts them and names the
        first few.
    medium : {"air", "vacuum"}
        The medium assumed.
    source : str
        Where the assumption comes from (e.g. ``"survey 'marvels'"``).
    stacklevel : int
        Passed to `warnings.warn`.
    """
    names = [str(n) for n in names]
    if not names:
        return
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    what = "1 spectrum declares" if len(names) == 1 else f"{len(names)} spectra declare"
    warnings.warn(f"{what} no wavelength medium ({shown}); assumed {medium} wavelengths "
                  f"({source}). Vacuum taken as air shifts lines by ~1.4 Å at 5000 Å; pass "
                  "medium='air'/'vacuum' (remap fit --medium) or set "
                  f"meta[{MEDIUM_KEY!r}] to state it", MediumAssumedWarning,
                  stacklevel=stacklevel + 1)
