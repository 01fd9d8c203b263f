"""The continuum-fitter strategy interface, `ContinuumFitter`, and option checks.

A continuum fitter is a strategy object (in the style of specutils'
resamplers): its options are validated once in ``__init__``, and
:meth:`ContinuumFitter.fit` turns a batch of flux arrays into a batch of
continua.  Calling the fitter on a `specutils.Spectrum` validates the spectrum
with :func:`remap.spectra.prepare` first and returns the continuum as a
`~astropy.units.Quantity`.  :meth:`ContinuumFitter.get_config` returns the
options so that a model artifact can record which fitter produced its training
data, and :meth:`ContinuumFitter.from_config` rebuilds the fitter.

``check_int``, ``check_real`` and ``check_choice``, the checks the fitters run on
their options, are remap's shared validators (``remap._util.validators``),
importable from here for fitter plugins.
"""

from __future__ import annotations

import abc

import astropy.units as u
import numpy as np

from .._util.validators import check_choice, check_int, check_real
from ..exceptions import RemapError
from ..spectra.validation import prepare

__all__ = ["ContinuumFitter", "ContinuumError", "check_int", "check_real", "check_choice"]


class ContinuumError(RemapError, RuntimeError):
    """A continuum could not be fitted (e.g. an iteration limit was reached)."""


class ContinuumFitter(abc.ABC):
    """Base class of continuum fitters (strategy objects).

    Subclasses set the class attributes ``name`` (unique registry name) and
    ``description`` (one line), validate their options in ``__init__``, and
    implement :meth:`fit` and :meth:`get_config`.

    Examples
    --------
    >>> import remap
    >>> fitter = remap.get_continuum_fitter("algorithm1")
    >>> fitter.get_config()["mode"]
    'fast'
    """

    #: Unique name under which the fitter is registered.
    name: str = ""
    #: One-line description shown by ``remap plugins``.
    description: str = ""

    @abc.abstractmethod
    def fit(self, flux, mask=None, wavelength=None):
        """Fit the continuum of one spectrum or of a batch.

        Parameters
        ----------
        flux : array-like of float, shape (n_spectra, n_pix) or (n_pix,)
            Flux values in any (consistent) unit.
        mask : array-like of bool, same shape as ``flux``, optional
            True marks a bad pixel, which the fit ignores (its flux may be
            anything, NaN included).
        wavelength : array-like of float, shape (n_pix,), optional
            Strictly increasing wavelengths in Å (fitters that work in pixel
            space may ignore it).

        Returns
        -------
        continuum : `~numpy.ndarray`
            The continuum, same shape and unit as ``flux``.

        Raises
        ------
        ValueError
            Inconsistent shapes, non-finite unmasked flux, a spectrum with
            no usable pixel.
        """

    @abc.abstractmethod
    def get_config(self):
        """The options of this fitter, as a dict that ``type(self)(**config)`` accepts.

        Returns
        -------
        config : dict
        """

    @classmethod
    def from_config(cls, config):
        """Rebuild a fitter from :meth:`get_config` output.

        Parameters
        ----------
        config : dict
            Options of the fitter.

        Returns
        -------
        fitter : `ContinuumFitter`
        """
        return cls(**config)

    def __call__(self, spectrum):
        """Fit the continuum of a `specutils.Spectrum` (one spectrum or a batch).

        Parameters
        ----------
        spectrum : `specutils.Spectrum`
            Any input accepted by :func:`remap.spectra.prepare`.

        Returns
        -------
        continuum : `~astropy.units.Quantity`
            The continuum on the prepared (Å, ascending) grid, in the flux unit
            of ``spectrum``, with the shape of its flux.

        Raises
        ------
        remap.SpectrumError
            The spectrum is invalid (see :func:`remap.spectra.prepare`).
        """
        prepared = prepare(spectrum)
        flux = u.Quantity(prepared.flux)
        cont = self.fit(flux.value, mask=np.asarray(prepared.mask, dtype=bool),
                        wavelength=prepared.spectral_axis.to_value(u.AA))
        return cont * flux.unit

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({opts})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.get_config().items()))))

    @staticmethod
    def _as_batch(flux, mask=None, wavelength=None, *, min_good=2):
        """Validate ``fit`` inputs; return 2-D copies and whether the input was 1-D.

        Returns
        -------
        flux : ndarray, shape (n, npix)
            Float copy; masked pixels are set to 0 (finite, never used).
        good : ndarray of bool, shape (n, npix)
            True where the pixel may be used.
        wavelength : ndarray or None
        squeeze : bool
            The input flux was 1-D.

        Raises
        ------
        ValueError
            For every inconsistency, with what was expected.
        """
        arr = np.asarray(flux)
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"flux must be a numeric array; received dtype {arr.dtype}")
        if arr.ndim not in (1, 2):
            raise ValueError(f"flux must have shape (n_pix,) or (n_spectra, n_pix); received "
                             f"shape {arr.shape}")
        squeeze = arr.ndim == 1
        flux2 = np.array(np.atleast_2d(arr), dtype=float, copy=True)
        n, npix = flux2.shape
        if n == 0 or npix < min_good:
            raise ValueError(f"flux must have at least one spectrum of at least {min_good} "
                             f"pixels; received shape {arr.shape}")
        if mask is None:
            bad = np.zeros(flux2.shape, dtype=bool)
        else:
            m = np.asarray(mask)
            if m.shape != arr.shape:
                raise ValueError(f"mask must have the shape of flux {arr.shape}; received "
                                 f"shape {m.shape}")
            if m.dtype != bool:
                raise ValueError(f"mask must be boolean (True = bad pixel); received dtype "
                                 f"{m.dtype}")
            bad = np.atleast_2d(m).copy()
        nonfinite = ~np.isfinite(flux2) & ~bad
        if nonfinite.any():
            row, col = np.argwhere(nonfinite)[0]
            where = f"pixel {col}" + ("" if squeeze else f" of spectrum {row}")
            raise ValueError(f"flux has a non-finite value ({flux2[row, col]}) at unmasked "
                             f"{where}; mask it (mask=True) or use remap.prepare, which masks "
                             f"NaNs")
        good = ~bad
        ngood = good.sum(axis=1)
        if np.any(ngood < min_good):
            row = int(np.flatnonzero(ngood < min_good)[0])
            raise ValueError(f"spectrum {row} has {ngood[row]} unmasked pixels; at least "
                             f"{min_good} are needed to fit a continuum")
        flux2[bad] = 0.0
        return flux2, good, ContinuumFitter._check_wavelength(wavelength, npix), squeeze

    @staticmethod
    def _check_wavelength(wavelength, npix):
        """``wavelength`` as a float array of ``npix`` ascending values (or None), else raise."""
        if wavelength is None:
            return None
        wave = np.asarray(wavelength, dtype=float)
        if wave.shape != (npix,):
            raise ValueError(f"wavelength must be 1-D with {npix} values (one per pixel); "
                             f"received shape {wave.shape}")
        if not np.all(np.isfinite(wave)) or not np.all(np.diff(wave) > 0):
            raise ValueError("wavelength must be finite and strictly increasing (Å)")
        return wave
