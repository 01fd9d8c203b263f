"""Base class of synthetic spectral libraries (the ``remap_synthetic_libraries`` hook)."""

from __future__ import annotations

import abc
import dataclasses

import astropy.units as u

__all__ = ["SyntheticLibrary", "Domain"]


@dataclasses.dataclass(frozen=True)
class Domain:
    """Closed parameter ranges covered by a library.

    Attributes are ``(low, high)`` tuples of floats: ``teff`` in K, ``logg``
    (cgs, dex), ``feh`` and ``alpha`` in dex.
    """

    teff: tuple
    logg: tuple
    feh: tuple
    alpha: tuple = (0.0, 0.0)

    def contains(self, teff, logg, feh, alpha=0.0):
        """True when every label lies inside its range (bounds included)."""
        pairs = ((teff, self.teff), (logg, self.logg), (feh, self.feh), (alpha, self.alpha))
        return all(lo <= float(v) <= hi for v, (lo, hi) in pairs)

    def check(self, teff, logg, feh, alpha=0.0, name="library"):
        """Raise `ValueError` naming the label that lies outside the domain."""
        pairs = (("teff", teff, self.teff), ("logg", logg, self.logg),
                 ("feh", feh, self.feh), ("alpha", alpha, self.alpha))
        for label, v, (lo, hi) in pairs:
            if not (lo <= float(v) <= hi):
                raise ValueError(f"{name}: {label}={v} lies outside the library domain "
                                 f"[{lo}, {hi}]")


class SyntheticLibrary(abc.ABC):
    """A source of synthetic spectra labelled by (T_eff, log g, [Fe/H], [α/Fe]).

    Subclasses set the class attributes ``name`` (unique registry name),
    ``wavelength_medium`` (``"air"`` or ``"vacuum"``) and implement
    :meth:`spectrum`, :attr:`domain` and :attr:`resolution`.  Grids (libraries
    with discrete points) also implement :attr:`grid`.
    """

    name: str = ""
    wavelength_medium: str = "vacuum"

    @property
    @abc.abstractmethod
    def domain(self) -> Domain:
        """The parameter ranges this library covers (`Domain`)."""

    @property
    @abc.abstractmethod
    def resolution(self) -> float:
        """Resolving power R = λ/Δλ of the spectra it returns."""

    @abc.abstractmethod
    def spectrum(self, teff, logg, feh, alpha=0.0):
        """The spectrum at these labels, a `specutils.Spectrum` with units.

        ``meta`` carries the labels (``teff``, ``logg``, ``feh``, ``alpha``),
        ``wavelength_medium`` and ``resolution``.
        """

    @property
    def grid(self):
        """An `astropy.table.Table` of available grid points (``teff, logg, feh, alpha``)."""
        raise NotImplementedError(f"the {self.name!r} library is not a grid")

    @property
    def wavelength_range(self) -> u.Quantity:
        """(min, max) wavelength covered, as a Quantity in Å."""
        raise NotImplementedError
