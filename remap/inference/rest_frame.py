"""The ``rest_frame`` stage: radial velocity by cross-correlation, wavelengths to the rest frame.

See :mod:`remap.spectra.velocity` for the method.  The stage runs right after
``validate`` on whole input spectra; it changes only the rows' wavelength
grids (``λ_rest = λ_obs / doppler_factor(rv)``), the flux is resampled later
by the ``resample`` stage as for any other spectrum.
"""

from __future__ import annotations

import numbers
import weakref

import astropy.units as u
import numpy as np

from .._util.validators import per_star
from ..spectra.medium import convert_medium
from ..spectra.velocity import (C_KMS, DEFAULT_RV_RANGE, MIN_PEAK, MIN_PEAK_RATIO, TemplateBank,
                                doppler_factor, estimate_rv_groups, to_rest_frame)
from .flags import Flag
from .stages import Stage

__all__ = ["RestFrame", "template_banks"]

_BANKS = weakref.WeakKeyDictionary()


def template_banks(model, rv_range=DEFAULT_RV_RANGE):
    """The model's templates as `remap.spectra.velocity.TemplateBank` objects, per beam.

    Cached per model and velocity range.  Beams without stored templates are
    left out (an empty dict for a model without templates).
    """
    cache = _BANKS.setdefault(model, {})
    key = float(rv_range)
    if key not in cache:
        banks = {}
        stored = {b: model.templates(b) for b in model.beams if model.has_templates(b)}
        # one ln λ step for every beam (their CCFs are summed): the finest template step
        step = min((float(np.median(np.diff(np.log(t.wave.to_value(u.AA)))))
                    for t in stored.values()), default=None)
        for beam, t in stored.items():
            res = model.grid(beam).get("resolution") or t.meta.get("resolution")
            banks[beam] = TemplateBank(t.wave.to_value(u.AA), t.flux, resolution=res,
                                       rv_range=key, labels=t.labels, step=step)
        cache[key] = banks
    return cache[key]


def _known_rv(value):
    """The ``rv`` option as None, a float (km/s) or a 1-D float array (km/s)."""
    if value is None:
        return None
    if isinstance(value, u.Quantity):
        try:
            value = value.to_value(u.km / u.s)
        except u.UnitConversionError:
            raise ValueError(f"rv must be a velocity (e.g. 12.3 * u.km / u.s) or a number in "
                             f"km/s; received a Quantity in {value.unit}") from None
    arr = per_star(value, "rv", "None (measure it), a velocity in km/s or one per star")
    if np.any(~np.isfinite(arr)) or np.any(np.abs(arr) >= C_KMS):
        raise ValueError(f"rv must be finite and below the speed of light in km/s; received "
                         f"{value!r}")
    return float(arr) if arr.ndim == 0 else arr


class RestFrame(Stage):
    """Radial velocity by cross-correlation with the model's templates; rows to the rest frame.

    Options: ``rv`` -- None (default: measure it), a velocity (km/s, a number or
    a Quantity) or one per star (in the order of the input); ``rv=0`` skips
    the measurement.  ``rv_range`` -- the half-width of the searched range
    (km/s, default 300).
    """

    name = "rest_frame"
    OPTIONS = {"rv": None, "rv_range": DEFAULT_RV_RANGE}
    COLUMNS = {"rv": ("km / s", "radial velocity (positive: receding), measured by "
                                "cross-correlation or given with rv="),
               "rv_err": ("km / s", "1-sigma error of the measured rv (Zucker 2003); NaN when "
                                    "rv was given"),
               "rv_ccf_peak": ("", "height of the normalized cross-correlation peak (1: a "
                                   "perfect match to the template)")}

    def __init__(self, model, survey, **options):
        super().__init__(model, survey, **options)
        self.rv = _known_rv(self.options["rv"])
        rng = self.options["rv_range"]
        if not isinstance(rng, numbers.Real) or isinstance(rng, bool) or not 0 < rng < 0.1 * C_KMS:
            raise ValueError(f"rv_range must be a velocity in (0, {0.1 * C_KMS:g}) km/s; "
                             f"received rv_range={rng!r}")
        self.banks = template_banks(model, rng) if self.rv is None else {}

    def describe(self):
        if self.rv is not None:
            if np.ndim(self.rv) == 0:
                return ("rv given: not measured" if self.rv == 0 else
                        f"rv given ({self.rv:g} km/s): wavelengths divided by the Doppler factor")
            return "rv given per star: wavelengths divided by the Doppler factor"
        if not self.banks:
            return ("the model stores no templates: radial velocity not measured (spectra "
                    "taken as at rest)")
        n = next(iter(self.banks.values())).n_templates
        return (f"cross-correlation with the model's {n} templates per beam "
                f"({', '.join(self.banks)}) over ±{self.options['rv_range']:g} km/s, "
                f"Gaussian peak fit; RV_UNCERTAIN below a peak of {MIN_PEAK:g} or a peak "
                f"ratio of {MIN_PEAK_RATIO:g}; rows shifted to the rest frame")

    def _given(self, context):
        if np.ndim(self.rv) == 0:
            return np.full(context.n, float(self.rv))
        if np.any(context.index >= self.rv.size):
            raise ValueError(f"rv= holds {self.rv.size} velocities but the input has more "
                             f"stars (item {int(context.index.max())})")
        return self.rv[context.index]

    def run(self, batches, context):
        n = context.n
        if self.rv is not None:
            rv = self._given(context)
            context.set_value("rv", np.arange(n), rv)
            if np.all(rv == 0):
                return batches
            return [self._shift(b, rv) for b in batches]
        if not self.banks:
            return batches
        banks = list(self.banks.values())
        survey_medium = self.survey.wavelength_medium
        sets, star = [], []
        for batch in batches:
            wave = batch.wave
            if batch.medium is not None and batch.medium != survey_medium:
                wave = convert_medium(wave * u.AA, batch.medium, survey_medium).to_value(u.AA)
            sets.append((wave, batch.flux, batch.mask))
            star.append(batch.star)
        if not sets:
            return batches
        star = np.concatenate(star)
        # one correlation per star: the CCFs of its spectra (beams, pieces) are summed
        est = estimate_rv_groups(sets, banks, star, n)
        present = np.zeros(n, bool)
        present[star] = True
        context.ccf = {int(s): (float(est.ccf_sigma[s]), float(est.acf_sigma[s]),
                                float(est.pixel_var[s]), float(est.rv[s]))
                       for s in np.flatnonzero(present)}
        rv = est.rv
        measured = present & np.isfinite(rv)
        context.set_value("rv", np.flatnonzero(measured), rv[measured])
        context.set_value("rv_err", np.flatnonzero(measured), est.rv_err[measured])
        context.set_value("rv_ccf_peak", np.flatnonzero(present), est.peak[present])
        flagged = present & est.uncertain
        for s in np.flatnonzero(flagged):
            label = context.labels[int(s)]
            if np.isfinite(rv[s]):
                text = (f"{label}: radial velocity uncertain ({est.reason[s]}); measured "
                        f"{rv[s]:+.1f} km/s, applied")
            else:
                text = (f"{label}: radial velocity not measured ({est.reason[s]}); the "
                        f"spectrum is taken as at rest")
            context.note(int(s), self.name, "rv_uncertain", text)
        context.flag(flagged, Flag.RV_UNCERTAIN)
        shift = np.where(measured, rv, 0.0)
        return [self._shift(b, shift) for b in batches]

    @staticmethod
    def _shift(batch, rv_star):
        """The batch with each row's wavelengths divided by its star's Doppler factor.

        One velocity for a shared grid: a new shared grid.  Otherwise the factors
        are kept per row (`Batch.frame`) on the grid as it is, so that the stages
        after this one cut and resample the rows from one observed grid.
        """
        rv = rv_star[batch.star]
        if np.all(rv == 0):
            return batch
        if batch.base_wave.ndim == 1 and batch.frame is None and np.all(rv == rv[0]):
            batch.wave = to_rest_frame(batch.wave, float(rv[0]))
        elif batch.frame is None:
            batch.frame = np.asarray(doppler_factor(rv), dtype=np.float64)
        else:
            batch.wave = to_rest_frame(np.broadcast_to(batch.wave, batch.flux.shape), rv)
        return batch
