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

from ..spectra.medium import convert_medium
from ..spectra.velocity import (C_KMS, DEFAULT_RV_RANGE, MIN_PEAK, MIN_PEAK_RATIO, TemplateBank,
                                estimate_rv, to_rest_frame)
from .flags import Flag
from .stages import Stage

__all__ = ["RestFrame", "template_banks", "combine_rows"]

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


def combine_rows(star, rv, rv_err, uncertain, n):
    """Per-star velocity from per-row estimates (a star's input spectra).

    The rows whose peak is not uncertain are averaged with weights 1/err²
    (all rows when every one is uncertain).

    Returns
    -------
    rv, rv_err : ndarray, shape (n,)
        NaN for stars without a finite estimate.
    uncertain : ndarray of bool, shape (n,)
        Every row of the star was uncertain.
    """
    out_rv = np.full(n, np.nan)
    out_err = np.full(n, np.nan)
    out_unc = np.zeros(n, bool)
    for s in np.unique(star):
        rows = np.flatnonzero((star == s) & np.isfinite(rv))
        if rows.size == 0:
            out_unc[s] = True
            continue
        sure = rows[~uncertain[rows]]
        use = sure if sure.size else rows
        err = rv_err[use]
        good = np.isfinite(err) & (err > 0)
        if good.any():
            w = 1.0 / err[good] ** 2
            out_rv[s] = float(np.sum(w * rv[use][good]) / np.sum(w))
            out_err[s] = float(1.0 / np.sqrt(np.sum(w)))
        else:
            out_rv[s] = float(np.mean(rv[use]))
        out_unc[s] = sure.size == 0
    return out_rv, out_err, out_unc


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
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        arr = np.asarray(float(value))
    else:
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"rv must be None (measure it), a velocity in km/s or one per "
                             f"star; received {type(value).__name__}") from None
        if arr.ndim != 1:
            raise ValueError(f"rv must be a scalar or a 1-D array (one per star); received "
                             f"shape {arr.shape}")
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
        rows_star, rows_rv, rows_err, rows_unc, rows_peak, reasons = [], [], [], [], [], []
        context.ccf = {}
        for batch in batches:
            wave = batch.wave
            if batch.medium is not None and batch.medium != survey_medium:
                wave = convert_medium(wave * u.AA, batch.medium, survey_medium).to_value(u.AA)
            est = estimate_rv(wave, batch.flux, banks, mask=batch.mask)
            rows_star.append(batch.star)
            rows_rv.append(est.rv)
            rows_err.append(est.rv_err)
            rows_unc.append(est.uncertain)
            rows_peak.append(est.peak)
            reasons += est.reason
            for r in range(len(batch)):
                context.ccf[(int(batch.star[r]), int(batch.piece[r]))] = (
                    float(est.ccf_sigma[r]), float(est.acf_sigma[r]), float(est.pixel_var[r]),
                    float(est.rv[r]))
        if not rows_star:
            return batches
        star = np.concatenate(rows_star)
        rv, err, unc = combine_rows(star, np.concatenate(rows_rv), np.concatenate(rows_err),
                                    np.concatenate(rows_unc), n)
        peak = np.full(n, np.nan)
        allpeak = np.concatenate(rows_peak)
        for s in np.unique(star):
            p = allpeak[star == s]
            peak[s] = np.nanmax(p) if np.isfinite(p).any() else np.nan
        measured = np.isfinite(rv)
        context.set_value("rv", np.flatnonzero(measured), rv[measured])
        context.set_value("rv_err", np.flatnonzero(measured), err[measured])
        context.set_value("rv_ccf_peak", np.arange(n), peak)
        flagged = np.zeros(n, bool)
        for s in np.unique(star):
            if not unc[s]:
                continue
            flagged[s] = True
            why = "; ".join(dict.fromkeys(reasons[i] for i in np.flatnonzero(star == s)
                                          if reasons[i]))
            value = f"{rv[s]:+.1f} km/s" if np.isfinite(rv[s]) else "none"
            context.note(int(s), self.name, "rv_uncertain",
                         f"{context.labels[int(s)]}: radial velocity uncertain ({why}); "
                         f"measured {value}, applied" if np.isfinite(rv[s]) else
                         f"{context.labels[int(s)]}: radial velocity not measured ({why}); "
                         f"the spectrum is taken as at rest")
        context.flag(flagged, Flag.RV_UNCERTAIN)
        shift = np.where(measured, rv, 0.0)
        return [self._shift(b, shift) for b in batches]

    @staticmethod
    def _shift(batch, rv_star):
        """The batch with each row's wavelengths divided by its star's Doppler factor."""
        rv = rv_star[batch.star]
        if np.all(rv == 0):
            return batch
        if batch.wave.ndim == 1 and np.all(rv == rv[0]):
            batch.wave = to_rest_frame(batch.wave, float(rv[0]))
        else:
            wave = np.broadcast_to(batch.wave, batch.flux.shape)
            batch.wave = to_rest_frame(wave, rv)
        return batch
