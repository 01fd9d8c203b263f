"""Small array/Spectrum helpers shared by the augmentation and the inference stages.

Private: `remap.augment` re-exports them under its historical names.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.nddata import StdDevUncertainty

from ..exceptions import SpectrumError
from .validation import spectrum_class

__all__ = ["continuum_of", "std_of", "build_like"]


def continuum_of(spec):
    """``meta["continuum"]`` as a float array of the flux's shape, or None."""
    cont = (spec.meta or {}).get("continuum")
    if cont is None:
        return None
    flux = np.asarray(spec.flux.value)
    if isinstance(cont, u.Quantity):
        try:
            cont = cont.to_value(spec.flux.unit)
        except u.UnitConversionError:
            raise SpectrumError(f"meta['continuum'] is in {cont.unit}, which does not convert "
                                f"to the flux unit {spec.flux.unit}") from None
    cont = np.asarray(cont, dtype=float)
    if cont.shape[-1:] != flux.shape[-1:]:
        raise SpectrumError(f"meta['continuum'] has shape {cont.shape} but the flux has "
                            f"{flux.shape[-1]} pixels per spectrum")
    return np.broadcast_to(cont, flux.shape).copy() if cont.shape != flux.shape else cont


def std_of(spec):
    """The uncertainty of a spectrum as a float array (standard deviations), or None."""
    if spec.uncertainty is None:
        return None
    return np.asarray(spec.uncertainty.array, dtype=float)


def build_like(like, flux, wave, *, std=None, mask=None, meta_updates=None, continuum=None):
    """A new Spectrum with ``like``'s flux unit and meta, updated."""
    unit = like.flux.unit
    meta = dict(like.meta or {})
    if continuum is not None:
        meta["continuum"] = np.asarray(continuum, dtype=float)
    elif "continuum" in meta:
        del meta["continuum"]
    meta.update(meta_updates or {})
    return spectrum_class()(
        flux=np.asarray(flux, dtype=float) * unit, spectral_axis=u.Quantity(wave, u.AA),
        uncertainty=None if std is None else StdDevUncertainty(np.asarray(std) * unit),
        mask=None if mask is None else np.asarray(mask, dtype=bool), meta=meta)
