"""Continuum normalization of `specutils.Spectrum` objects: :func:`normalize`."""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.nddata import StdDevUncertainty

from ..plugins import get_continuum_fitter
from ..spectra.validation import prepare, spectrum_class
from .base import ContinuumError, ContinuumFitter

__all__ = ["normalize", "DEFAULT_FITTER"]

#: The fitter used when none is named: the paper's Algorithm 1.
DEFAULT_FITTER = "algorithm1"


def normalize(spectrum, fitter=DEFAULT_FITTER, **options):
    """Divide a spectrum (or a batch) by its fitted continuum.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`
        One spectrum or a batch (2-D flux) in any flux unit, with any spectral
        axis accepted by :func:`remap.prepare`.
    fitter : str or `~remap.continuum.ContinuumFitter`
        A registered fitter name (see :func:`remap.list_continuum_fitters`),
        configured with ``options``, or a fitter instance (then no options).
    **options
        Options of the named fitter, e.g. ``mode="faithful"`` for
        ``algorithm1``.

    Returns
    -------
    normalized : `specutils.Spectrum`
        A new spectrum on the prepared grid (Å, ascending) with dimensionless
        flux ``F / C``, uncertainty ``sigma / C`` (if the input had one), the
        prepared mask, and ``meta`` extended with ``"continuum"`` (the
        continuum as a `~astropy.units.Quantity` in the input flux unit) and
        ``"continuum_fitter"`` (``{"name": ..., **fitter.get_config()}``).
        A batch is fitted with one ``fit`` call.

    Raises
    ------
    TypeError
        ``fitter`` is neither a name nor a `~remap.continuum.ContinuumFitter`,
        or options were given with a fitter instance.
    remap.UnknownPluginError
        No fitter has that name (the message lists the known ones).
    remap.SpectrumError
        The spectrum is invalid (see :func:`remap.prepare`).
    remap.continuum.ContinuumError
        The fitted continuum is not finite and positive everywhere.

    Examples
    --------
    >>> import remap
    >>> from remap.testing import make_test_spectra
    >>> spectra, _ = make_test_spectra(2, snr=200, seed=0)
    >>> normalized = remap.normalize(spectra, fitter="clipped")
    >>> normalized.flux.unit, normalized.meta["continuum_fitter"]["name"]
    (Unit(dimensionless), 'clipped')
    """
    if isinstance(fitter, str):
        fitter = get_continuum_fitter(fitter, **options)
    elif isinstance(fitter, ContinuumFitter):
        if options:
            raise TypeError(f"options {sorted(options)} can only be given with a fitter name; "
                            f"configure the {type(fitter).__name__} instance instead")
    else:
        raise TypeError(f"fitter must be a registered fitter name or a ContinuumFitter "
                        f"instance; received {type(fitter).__name__}")

    prepared = prepare(spectrum)
    flux = u.Quantity(prepared.flux)
    mask = np.asarray(prepared.mask, dtype=bool)
    cont = np.asarray(fitter.fit(flux.value, mask=mask,
                                 wavelength=prepared.spectral_axis.to_value(u.AA)),
                      dtype=float)
    if cont.shape != flux.shape:
        raise ContinuumError(f"the fitter {fitter.name!r} returned a continuum of shape "
                             f"{cont.shape} for a flux of shape {flux.shape}")
    bad = ~(np.isfinite(cont) & (cont > 0))
    if bad.any():
        index = np.argwhere(bad)[0]
        pixel = int(index[-1])
        where = f"pixel {pixel} ({prepared.spectral_axis[pixel]:.2f})"
        if cont.ndim == 2:
            where += f" of spectrum {int(index[0])}"
        raise ContinuumError(f"the {fitter.name!r} continuum is {cont[tuple(index)]!r} at "
                             f"{where} ({int(bad.sum())} such pixels); a continuum must be "
                             "finite and positive to normalize by it. Check the flux (is it "
                             "sky-subtracted to ~0?) or try another fitter")

    uncertainty = None
    if prepared.uncertainty is not None:
        std = np.asarray(prepared.uncertainty.array, dtype=float)
        uncertainty = StdDevUncertainty((std / cont) * u.dimensionless_unscaled)
    meta = dict(prepared.meta or {})
    meta["continuum"] = cont * flux.unit
    meta["continuum_fitter"] = {"name": fitter.name, **fitter.get_config()}
    Spectrum = spectrum_class()
    return Spectrum(flux=(flux.value / cont) * u.dimensionless_unscaled,
                    spectral_axis=prepared.spectral_axis, uncertainty=uncertainty,
                    mask=mask.copy(), meta=meta)
