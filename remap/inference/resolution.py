"""The ``resolution`` stage: the input's resolving power, matched to the model's.

The resolving power R of each input spectrum comes from, in this order:

1. the ``resolution=`` option of :func:`remap.fit` (a number, or one per star);
   ``resolution="survey"`` takes the survey beams' nominal R;
2. the spectrum's ``meta["resolution"]`` (a number, or one per row of a 2-D
   spectrum);
3. an estimate from line widths: the width of the cross-correlation peak
   against the model's best template versus that template's autocorrelation
   (:func:`remap.spectra.resolution.resolution_from_widths`; the
   ``rest_frame`` stage's correlation is reused).

The per-star column ``resolution_source`` says which (1 argument, 2 meta,
3 survey, 4 estimated, 0 unknown); a note says it in words for estimates.

A spectrum sharper than the survey's range (``Beam.resolution_range``; an
estimate must exceed it by :data:`ESTIMATE_TOLERANCE`) is convolved down to the
model's resolution with the augmentation's kernel
(:func:`remap.spectra.resolution.convolve_rows`) before resampling; one below
the range gets `remap.Flag.LOW_RESOLUTION` and a note (the network never saw
such broad lines).
"""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np

from .._util.validators import per_star
from ..exceptions import SpectrumError
from ..spectra.medium import convert_medium
from ..spectra.resolution import convolve_rows, resolution_from_widths
from ..spectra.velocity import estimate_rv
from .flags import Flag
from .rest_frame import template_banks
from .stages import Stage

__all__ = ["Resolution", "ESTIMATE_TOLERANCE", "SOURCES", "low_resolution", "high_resolution"]

#: An estimated resolution must lie this fraction beyond the survey's range before it
#: counts as higher or lower (the estimate is good to ~10 % near the model's R).
ESTIMATE_TOLERANCE = 0.15

#: Codes of the ``resolution_source`` column.
SOURCES = {0: "unknown", 1: "argument", 2: "meta", 3: "survey", 4: "estimated"}


def low_resolution(resolution, low, estimated, tolerance=ESTIMATE_TOLERANCE):
    """The `LOW_RESOLUTION` rule: R below the survey's range (an estimate: by ``tolerance``)."""
    limit = np.where(estimated, low / (1.0 + tolerance), low)
    with np.errstate(invalid="ignore"):
        return np.isfinite(resolution) & (resolution < limit)


def high_resolution(resolution, high, estimated, tolerance=ESTIMATE_TOLERANCE):
    """Rows to convolve down: R above the survey's range (an estimate: by ``tolerance``)."""
    limit = np.where(estimated, high * (1.0 + tolerance), high)
    with np.errstate(invalid="ignore"):
        return ~np.isnan(resolution) & (resolution > limit)


def _option(value):
    if value is None or value in ("survey", "estimate"):
        return value
    arr = per_star(value, "resolution",
                   "None, 'survey', 'estimate', a resolving power or one per star")
    if np.any(~np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"resolution must be positive and finite; received {value!r}")
    return float(arr) if arr.ndim == 0 else arr


class Resolution(Stage):
    """Match the input's resolving power to the model's: convolve higher R down, flag lower R.

    Option ``resolution``: None (default: ``meta["resolution"]``, else
    estimated), a resolving power or one per star, ``"survey"`` or
    ``"estimate"``.
    """

    name = "resolution"
    OPTIONS = {"resolution": None}
    COLUMNS = {"resolution": ("", "resolving power of the input spectrum (given, from its "
                                  "meta, the survey's or estimated; see resolution_source)"),
               "resolution_source": ("", "where resolution came from: 1 the resolution= "
                                         "argument, 2 meta['resolution'], 3 the survey, 4 "
                                         "estimated from line widths, 0 unknown")}

    def __init__(self, model, survey, **options):
        super().__init__(model, survey, **options)
        self.value = _option(self.options["resolution"])
        beams = [survey.beams[b] for b in model.beams if b in survey.beams]
        grids = [model.grid(b).get("resolution") for b in model.beams]
        self.model_r = float(min((g for g in grids if g), default=min(
            b.resolution for b in beams)))
        self.low = min(b.resolution_range[0] for b in beams)
        self.high = max(b.resolution_range[1] for b in beams)
        self.survey_r = max(b.resolution for b in beams)
        self.banks = template_banks(model)

    def describe(self):
        src = {None: "the spectrum's meta['resolution'], else estimated from line widths",
               "survey": f"the survey's (R {self.survey_r:g})",
               "estimate": "estimated from line widths"}.get(
            self.value if isinstance(self.value, (str, type(None))) else 0, "given")
        return (f"input R from {src}; above {self.high:g}: Gaussian down-convolution in ln λ "
                f"to the model's R {self.model_r:g}; below {self.low:g}: LOW_RESOLUTION")

    def _declared(self, batch, context):
        """Per row: (R, source code) from the option or the meta (NaN, 0 when neither)."""
        n = len(batch)
        r = np.full(n, np.nan)
        src = np.zeros(n, dtype=np.int64)
        if isinstance(self.value, float):
            return np.full(n, self.value), np.ones(n, np.int64)
        if isinstance(self.value, np.ndarray):
            idx = context.index[batch.star]
            if np.any(idx >= self.value.size):
                raise ValueError(f"resolution= holds {self.value.size} values but the input "
                                 f"has more stars (item {int(idx.max())})")
            return self.value[idx], np.ones(n, np.int64)
        if self.value == "survey":
            return np.full(n, self.survey_r), np.full(n, 3, np.int64)
        if self.value == "estimate":
            return r, src
        for i in range(n):
            star, piece = int(batch.star[i]), int(batch.piece[i])
            entries = context.piece_resolution.get(star)
            if not entries or piece >= len(entries) or entries[piece][0] is None:
                continue
            meta, row = entries[piece]
            arr = np.asarray(getattr(meta, "value", meta), dtype=float).ravel()
            value = arr[0] if arr.size == 1 else (arr[row] if row < arr.size else np.nan)
            if not (np.isfinite(value) and value > 0):
                raise SpectrumError(f"{context.labels[star]}: meta['resolution'] must be a "
                                    f"positive resolving power (or one per row); received "
                                    f"{meta!r}")
            r[i], src[i] = float(value), 2
        return r, src

    def _estimate(self, batch, context, rows):
        """Estimated R of some rows (NaN where no estimate); reuses the rest-frame CCF."""
        out = np.full(rows.size, np.nan)
        if not self.banks:
            return out
        banks = list(self.banks.values())
        r_t = float(banks[0].resolution or self.model_r)
        ccf = getattr(context, "ccf", {})
        todo, known, recs = [], [], []
        for k, i in enumerate(rows):
            rec = ccf.get(int(batch.star[i]))
            if rec is None:
                todo.append(k)
            else:
                known.append(k)
                recs.append(rec[:3])
        if known:   # the rest-frame CCF widths, all rows at once (elementwise: the same values)
            c_sig, a_sig, pvar = np.array(recs, dtype=float).T
            extra = (pvar - banks[0].template_step ** 2) / 6.0
            out[known] = resolution_from_widths(c_sig, a_sig, r_t, extra_var=extra)
        if todo:
            sub = batch.take(rows[todo])
            wave = sub.wave
            medium = self.survey.wavelength_medium
            if sub.medium is not None and sub.medium != medium:
                wave = convert_medium(wave * u.AA, sub.medium, medium).to_value(u.AA)
            est = estimate_rv(wave, sub.flux, banks, mask=sub.mask, rv=0.0)
            extra = (est.pixel_var - banks[0].template_step ** 2) / 6.0
            out[todo] = resolution_from_widths(est.ccf_sigma, est.acf_sigma, r_t,
                                               extra_var=extra)
        return out

    def run(self, batches, context):
        out = []
        low_stars = {}
        for batch in batches:
            r, src = self._declared(batch, context)
            need = np.flatnonzero(src == 0)
            if need.size:
                est = self._estimate(batch, context, need)
                ok = ~np.isnan(est)
                r[need[ok]], src[need[ok]] = est[ok], 4
            context.set_value("resolution", batch.star, np.where(np.isinf(r), np.nan, r))
            context.set_value("resolution_source", batch.star, src)
            estimated = src == 4
            for i in np.flatnonzero(estimated):
                star = int(batch.star[i])
                text = (f"R {r[i]:,.0f}" if np.isfinite(r[i]) else
                        f"sharper than measurable against R {self.model_r:,.0f} templates")
                context.note(star, self.name, "resolution_estimated",
                             f"{context.labels[star]}: resolution estimated from line widths "
                             f"({text}); give meta['resolution'] or resolution= to set it")
            low = low_resolution(r, self.low, estimated)
            for i in np.flatnonzero(low):
                low_stars.setdefault(int(batch.star[i]), []).append(r[i])
            high = high_resolution(r, self.high, estimated)
            if high.any():
                r_in = np.where(np.isinf(r), math.inf, r)
                sigma = batch.sigma
                has = np.isfinite(sigma).all(axis=1)
                flux, mask, std = convolve_rows(
                    batch.wave, batch.flux, self.model_r, np.where(high, r_in, self.model_r),
                    mask=batch.mask, std=np.where(has[:, None], sigma, 1.0))
                batch.flux, batch.mask = flux, mask
                batch.sigma = np.where(has[:, None], std, np.nan)
            out.append(batch)
        for star, values in low_stars.items():
            context.note(star, self.name, "low_resolution",
                         f"{context.labels[star]}: resolving power {min(values):,.0f} is below "
                         f"the survey's range ({self.low:,.0f}-{self.high:,.0f}); the network "
                         f"was trained on sharper spectra, so the result may be biased")
        if low_stars:
            context.flag(np.array(sorted(low_stars)), Flag.LOW_RESOLUTION)
        return out
