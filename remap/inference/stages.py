"""The stages of :func:`remap.fit`: small classes over array batches, in one ordered tuple.

:data:`DEFAULT_STAGES` lists the stage classes in the order they run;
:func:`build_pipeline` makes one instance of each from a model's manifest
(its survey, beam grids, continuum fitter, heads and stored embeddings) and
the caller's options, and :func:`remap.inference.pipeline` prints the same
list.  A stage

* has a ``name`` (the key of its time in `remap.FitResult.timings`),
* declares the keyword options it takes in ``OPTIONS`` (name -> default;
  :func:`remap.fit` passes each of its extra keyword arguments to the stage
  that declares it) and the per-star output columns it adds in ``COLUMNS``
  (name -> (unit, description); they become `remap.FitResult.values` and
  columns of ``to_table()``),
* says what it does with this model in :meth:`Stage.describe`,
* and transforms the chunk's data in :meth:`Stage.run` ``(data, context)``:
  the first stage gets the chunk's input items (`Item`) and returns a list of
  `~remap.inference.batch.Batch`; every later stage gets and returns a list of
  batches, and writes what it learns about the stars into the
  `~remap.inference.context.Context` (notes, flags, values, network outputs).

Stars given up by a stage (`Context.fail`) are dropped from the batches by
the pipeline after that stage.

**Where to add stages.**  The radial-velocity (rest frame) and resolution
stages of the real-spectra work go right after `Validate` and before `Split`
(they see whole input spectra, per-row wavelength grids allowed): insert the
classes into :data:`DEFAULT_STAGES` there.  A stage may change ``Batch.wave``
per row (a 2-D grid); every later stage handles per-row grids.
"""

from __future__ import annotations

import logging
import math
import numbers
import weakref
from collections.abc import Mapping
from typing import NamedTuple

import astropy.units as u
import numpy as np
from astropy.nddata import StdDevUncertainty
from specutils import SpectrumList

from .._util.stats import nanmedian_rows
from ..continuum.base import ContinuumError
from ..exceptions import SpectrumError
from ..labels import conflate
from ..model.runtime import Neighbours
from ..plugins import get_continuum_fitter, registry
from ..spectra.medium import convert_medium, validate_medium, warn_medium_assumed
from ..spectra.resampling import resample_arrays, resample_rows
from ..spectra.validation import (MAX_BAD_FRACTION, MIN_PIXELS, check_rows,
                                  spectrum_class, spectrum_parts)
from ..surveys.base import DEFAULT_MIN_COVERAGE, Survey, fill_spikes, find_spikes
from . import flags as rules
from .batch import Batch
from .flags import Flag

__all__ = ["Item", "Stage", "Validate", "Split", "Spikes", "Resample", "Continuum", "Network",
           "Conflation", "QualityFlags", "NearestNeighbours", "DEFAULT_STAGES", "NETWORK_ROWS",
           "MAD_TO_SIGMA", "Pipeline", "build_pipeline", "stage_options"]

log = logging.getLogger(__name__)

#: Spectra per network forward pass; the last block of a call is padded to this size,
#: so a star's result does not depend on the other stars of its batch.  256 rows (one
#: ``batch_size`` chunk of stars per beam): on the 2-core test machine the default
#: model's network takes 92 us per row in blocks of 256 against 148 us in blocks of 64
#: (a single star costs one padded block, ~25 ms per beam).
NETWORK_ROWS = 256

#: Standard deviation of a Gaussian per unit median absolute deviation.
MAD_TO_SIGMA = 1.482602218505602


class Item(NamedTuple):
    """One input star of a chunk, as :func:`remap.fit_iter` hands it to `Validate`.

    Attributes
    ----------
    index : int
        Position in the caller's input.
    label : str
        How messages name it (``spectra[12]``, ``spectrum[3]``, ``spectrum``).
    obj : object
        A Spectrum, SpectrumList, dict of spectra, a path, or (for a row of a
        2-D spectrum given as the whole input) a `_Rows` bundle.
    row : int or None
        The row of a 2-D input.
    """

    index: int
    label: str
    obj: object
    row: int | None = None


class Stage:
    """Base class of the pipeline stages.

    Parameters
    ----------
    model : `remap.model.RemapModel`
    survey : `remap.surveys.Survey`
    **options
        Values of the options the stage declares in ``OPTIONS`` (the others
        keep their defaults).

    Raises
    ------
    TypeError
        An option the stage does not declare.
    """

    #: Stage name (key of its time in `remap.FitResult.timings`).
    name = ""
    #: Keyword options and their defaults.
    OPTIONS: dict = {}
    #: Per-star output columns: name -> (unit, description).
    COLUMNS: dict = {}

    def __init__(self, model, survey, **options):
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise TypeError(f"stage {self.name!r} takes no option(s) {unknown}; its options: "
                            f"{sorted(self.OPTIONS) or 'none'}")
        self.model = model
        self.survey = survey
        self.options = {**self.OPTIONS, **options}

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"

    def describe(self) -> str:
        """What the stage does with this model and these options (one line)."""
        return (type(self).__doc__ or "").strip().splitlines()[0]

    def run(self, data, context):
        """Transform the chunk's data (see the module documentation)."""
        raise NotImplementedError


# ============================================================================ validate

class _Rows:
    """A 2-D spectrum given as the whole input: checked as a whole once, its rows checked
    and copied chunk by chunk as `Validate` takes them (never the whole input at once)."""

    __slots__ = ("parts", "key", "name")

    def __init__(self, spectrum, name):
        self.parts = _spectrum_parts(spectrum, name)
        self.key = self.parts["key"]
        self.name = name

    def take(self, rows):
        """Rows ``rows`` checked (:func:`~remap.spectra.validation.check_rows`): ``(flux,
        sigma, mask, notes, errors)``, the arrays copies in the order of ``rows``."""
        p = self.parts
        rows = np.asarray(rows, dtype=np.int64)
        flux = p["flux"][rows]
        std = None if p["std"] is None else p["std"][rows]
        mask = None if p["mask"] is None else p["mask"][rows]
        labels = [f"{self.name}[{i}]" for i in rows]
        sigma, bad, notes, errors = check_rows(flux, std, mask, labels)
        return flux, sigma, bad, notes, errors


def _spectrum_parts(spectrum, name):
    """:func:`remap.spectra.validation.spectrum_parts` of one piece (flux not copied: the
    stage stacks the pieces), with the checked medium, ``key`` = (axis key, medium) and
    ``meta_resolution``."""
    a = spectrum_parts(spectrum, name, copy=False)
    medium = a["medium"]
    if medium is not None:
        try:
            a["medium"] = validate_medium(medium, "meta['wavelength_medium']")
        except ValueError as exc:
            raise SpectrumError(f"{name}: {exc}") from None
    a["key"] = (a["key"], a["medium"])
    a["meta_resolution"] = (spectrum.meta or {}).get("resolution")
    return a


def _require_spectrum(obj, label):
    """Raise TypeError naming ``label`` unless ``obj`` is a specutils Spectrum."""
    if not isinstance(obj, spectrum_class()):
        raise TypeError(f"{label}: expected a specutils Spectrum (or Spectrum1D), a "
                        f"SpectrumList or a dict of beam spectra; received "
                        f"{type(obj).__name__}")


class Validate(Stage):
    """Check every input and turn it into array rows, grouped by wavelength grid.

    Each input spectrum is converted once (spectral axis to Å ascending in its
    medium, uncertainty to a standard deviation, mask to bool; the rules of
    :func:`remap.spectra.prepare`).  Input rules: pixels whose uncertainty is
    zero, negative or not finite are masked; an uncertainty that is zero
    everywhere is taken as *not given* (with a note).  Rows that share a
    wavelength grid and medium go into one `Batch`, whatever the input's shape
    (list of dicts, SpectrumList, list of 1-D spectra, 2-D spectrum).

    Wavelength medium: the ``medium=`` option (``"air"``/``"vacuum"``) states
    it for every input; otherwise each spectrum's ``meta["wavelength_medium"]``;
    inputs that declare neither are taken in the survey's medium, with one
    `remap.MediumAssumedWarning` per chunk of stars naming them.
    """

    name = "validate"
    OPTIONS = {"medium": None}

    def __init__(self, model, survey, **options):
        super().__init__(model, survey, **options)
        medium = self.options["medium"]
        self.medium = None if medium is None else validate_medium(medium, "medium")

    def describe(self):
        return ("inputs -> array rows (Å, σ, mask); σ ≤ 0 masked, σ ≡ 0 taken as not "
                "given; rows grouped by wavelength grid")

    def _pieces(self, item):
        """(piece label, Spectrum) pairs of one star, or raise for bad input."""
        obj = item.obj
        if isinstance(obj, (SpectrumList, Mapping)):
            entries = list(obj.items()) if isinstance(obj, Mapping) else list(enumerate(obj))
            if not entries:
                raise SpectrumError(f"{item.label}: the {type(obj).__name__} holds no spectra")
            kind = "SpectrumList item" if isinstance(obj, SpectrumList) else "beam"
            out = []
            for key, spec in entries:
                sub = f"{item.label} ({kind} {key!r})"
                _require_spectrum(spec, sub)
                if np.ndim(spec.flux) != 1:
                    raise SpectrumError(f"{sub}: each spectrum of one star must have 1-D "
                                        f"flux; received shape {np.shape(spec.flux)}")
                out.append((sub, spec))
            return out
        _require_spectrum(obj, item.label)
        if np.ndim(obj.flux) != 1:
            raise SpectrumError(f"{item.label}: a batch item must be one star (1-D flux); "
                                f"received flux of shape {np.shape(obj.flux)}. Pass a 2-D "
                                f"batch directly, not inside a list")
        return [(item.label, obj)]

    def run(self, items, context):
        groups = {}     # grid key -> list of (stars, flux, sigma, mask): 2-D input rows, checked
        waves = {}
        pending = {}    # (npix, medium) -> list of (star, piece, label, parts): rows to check
        bundles = {}    # id -> (bundle, [(star, row)]): rows of a 2-D input, checked below
        for star, item in enumerate(items):
            if isinstance(item.obj, _Rows):
                bundles.setdefault(id(item.obj), (item.obj, []))[1].append((star, item.row))
                continue
            if isinstance(item.obj, BaseException):   # a file that could not be read
                context.fail(star, self.name, item.obj)
                continue
            try:
                pieces = self._pieces(item)
                converted = [_spectrum_parts(spec, label) for label, spec in pieces]
            except (SpectrumError, TypeError) as exc:
                context.fail(star, self.name, exc)
                continue
            context.pieces[star] = [label for label, _ in pieces]
            context.piece_units[star] = [a["unit"] for a in converted]
            context.piece_resolution[star] = [(a["meta_resolution"], 0) for a in converted]
            for p, ((label, _), a) in enumerate(zip(pieces, converted)):
                # checked together with every piece of its pixel count and medium (rows
                # on their own grids alike: one file per star, each its own solution)
                pending.setdefault((a["flux"].shape[1], a["key"][1]), []).append(
                    (star, p, label, a))
        for bundle, taken in bundles.values():
            flux, sigma, bad, notes, errors = bundle.take([r for _, r in taken])
            a = bundle.parts
            keep = []
            for j, (star, row) in enumerate(taken):
                if errors[j] is not None:
                    context.fail(star, self.name, SpectrumError(errors[j]))
                    continue
                for code, text in notes[j]:
                    context.note(star, self.name, code, text)
                context.piece_resolution[star] = [(a["meta_resolution"], row)]
                keep.append(j)
            if len(keep) < len(taken):   # (the arrays are already copies: no other copy)
                flux, sigma, bad = flux[keep], sigma[keep], bad[keep]
            if keep:
                groups.setdefault(bundle.key, []).append(
                    (np.array([taken[j][0] for j in keep], dtype=np.int64), flux, sigma, bad))
            waves[bundle.key] = (a["wave"], a["medium"])
        checked = self._check(pending, context)
        batches = []
        assumed = []
        for key in waves:
            wave, medium = waves[key]
            if self.medium is not None:
                medium = self.medium
            for stars, flux, sigma, bad in groups.get(key, ()):
                if len(stars):
                    batches.append(Batch(flux=flux, sigma=sigma, mask=bad, wave=wave,
                                         star=stars, piece=np.zeros(len(stars), np.int64),
                                         medium=medium))
            if self.medium is None and medium is None:
                assumed.extend(context.labels[s] for g in groups.get(key, ()) for s in g[0])
        for (_, medium), part in checked.items():
            if len(part):
                batches.append(part)
            if self.medium is None and medium is None:
                assumed.extend(context.labels[s] for s, p in zip(part.star, part.piece)
                               if p == 0)
        if assumed:
            warn_medium_assumed(assumed, self.survey.wavelength_medium,
                                f"the medium of survey {getattr(self.survey, 'name', '?')!r}",
                                stacklevel=4)
        return _merge_grids(batches)

    def _check(self, pending, context):
        """The per-row rules on the stacked pieces of each pixel count and medium (one pass
        each).

        A star with a failing piece fails as a whole (its first failing piece
        names the reason); its other pieces are dropped.  Returns (pixel count,
        medium) -> `Batch` of the pieces that pass: on their shared grid, or each
        on its own (a 2-D ``wave``) when their grids differ.
        """
        stacked = {}
        first_error = {}
        for key, rows in pending.items():
            flux = np.stack([a["flux"][0] for *_, a in rows])
            has_std = np.array([a["std"] is not None for *_, a in rows])
            std = None
            if has_std.any():
                std = np.stack([a["std"][0] if a["std"] is not None else
                                np.full(flux.shape[1], np.nan) for *_, a in rows])
            mask = None
            if any(a["mask"] is not None for *_, a in rows):
                mask = np.stack([a["mask"][0] if a["mask"] is not None else
                                 np.zeros(flux.shape[1], bool) for *_, a in rows])
            sigma, bad, notes, errors = check_rows(flux, std, mask,
                                                   [label for _, _, label, _ in rows],
                                                   has_std=has_std)
            for (star, piece, _, _), message in zip(rows, errors):
                if message is not None and (star not in first_error
                                            or piece < first_error[star][0]):
                    first_error[star] = (piece, message)
            stacked[key] = (rows, flux, sigma, bad, notes)
        for star in sorted(first_error):
            context.fail(star, self.name, SpectrumError(first_error[star][1]))
        out = {}
        for key, (rows, flux, sigma, bad, notes) in stacked.items():
            keep = np.array([not context.failed[star] for star, *_ in rows])
            for (star, _, _, _), row_notes in zip(rows, notes):
                if not context.failed[star]:
                    for code, text in row_notes:
                        context.note(star, self.name, code, text)
            if not keep.any():
                continue
            if not keep.all():
                flux, sigma, bad = flux[keep], sigma[keep], bad[keep]
            first = rows[0][3]
            if all(a["key"] == first["key"] for *_, a in rows):
                wave = first["wave"]
            else:
                wave = np.stack([a["wave"] for (*_, a), k in zip(rows, keep) if k])
            out[key] = Batch(flux=flux, sigma=sigma, mask=bad, wave=wave,
                             star=np.array([s for (s, *_), k in zip(rows, keep) if k],
                                           dtype=np.int64),
                             piece=np.array([p for (_, p, *_), k in zip(rows, keep) if k],
                                            dtype=np.int64),
                             medium=self.medium if self.medium is not None
                             else rows[0][3]["medium"])
        return out


def _merge_grids(batches):
    """Batches of one pixel count and medium joined into one whose rows keep their own grids.

    Spectra that each come with their own wavelength solution (one file per star)
    would otherwise travel as one batch per star, every stage paying its per-batch
    cost a thousand times; the stages treat each row on its own, so the results are
    those of the separate batches.
    """
    by_shape = {}
    for b in batches:
        by_shape.setdefault((b.npix, b.medium), []).append(b)
    if len(by_shape) == len(batches):
        return batches
    return [parts[0] if len(parts) == 1 else Batch.concatenate(parts)
            for parts in by_shape.values()]


# ============================================================================ split

class Split(Stage):
    """Cut rows into the survey's beams (converting the medium), join chunks of one beam."""

    name = "split"
    OPTIONS = {"min_coverage": DEFAULT_MIN_COVERAGE}

    def __init__(self, model, survey, **options):
        super().__init__(model, survey, **options)
        mc = self.options["min_coverage"]
        if not isinstance(mc, numbers.Real) or isinstance(mc, bool) or not 0 <= mc <= 1:
            raise ValueError(f"min_coverage must be in [0, 1]; received: {mc!r}")

    def describe(self):
        name = getattr(self.survey, "name", type(self.survey).__name__)
        return (f"survey {name!r} ({self.survey.wavelength_medium}): beams "
                f"{', '.join(self.model.beams)}; chunks of one beam joined, overlapping "
                f"spectra of one beam refused")

    def _ranges(self):
        return "; ".join(f"beam {b.name}: {b.wave_min.value:g}-{b.wave_max.value:g} Å"
                         for b in self.survey.beams.values())

    def run(self, batches, context):
        medium = self.survey.wavelength_medium
        parts = {b: [] for b in self.model.beams}
        for batch in batches:
            original = batch.medium
            convert = original is not None and original != medium
            # rows in their own frames on one stored grid: cut from it (`_cut_rows`)
            framed = batch.frame is not None and not convert
            wave = None if framed else batch.wave
            if convert:
                wave = convert_medium(wave * u.AA, original, medium).to_value(u.AA)
            reached = np.zeros(len(batch), bool)
            skipped = {}
            if framed:
                self._cut_rows(batch, batch.base_wave, batch.frame, parts, reached, skipped)
            elif wave.ndim == 2:
                self._cut_rows(batch, wave, None, parts, reached, skipped)
            for rows, w in _groups(batch, wave) if not framed and wave.ndim == 1 else ():
                cuts, too_little = self.survey.beam_cuts(
                    w, min_coverage=self.options["min_coverage"])
                for r in rows if too_little else ():
                    skipped.setdefault(int(r), []).extend(too_little)
                for beam, sl, _ in cuts:
                    if beam not in parts:
                        continue
                    reached[rows] = True
                    whole = len(rows) == len(batch)
                    part = (batch if whole else batch.take(rows)).columns(sl, w[sl])
                    part.beam, part.medium = beam, medium
                    parts[beam].append(part)
            for r in np.flatnonzero(~reached):
                star, piece = int(batch.star[r]), int(batch.piece[r])
                w = batch.row_wave(r) if original is None or original == medium else (
                    wave if wave.ndim == 1 else wave[r])
                extra = (f" (partial overlap below min_coverage="
                         f"{self.options['min_coverage']:g}: {', '.join(skipped[int(r)])})"
                         if int(r) in skipped else "")
                context.note(star, self.name, "no_overlap",
                             f"{context.pieces[star][piece]} covers {w[0]:.6g}-{w[-1]:.6g} Å "
                             f"({medium}, converted from {original}) which overlaps no beam "
                             f"of survey {self.survey.name!r}{extra}; the beams cover "
                             f"{self._ranges()}")
            for r, why in skipped.items():
                if reached[r]:
                    log.warning("%s: beams of survey %r left out for coverage below %.0f%% or "
                                "fewer than %d pixels: %s",
                                context.pieces[int(batch.star[r])][int(batch.piece[r])],
                                self.survey.name, 100 * self.options["min_coverage"],
                                MIN_PIXELS, ", ".join(why))
        out = []
        for beam, beam_parts in parts.items():
            for part in self._join_chunks(beam, beam_parts, context):
                out.append(part)
        return out

    def _cut_rows(self, batch, base, frame, parts, reached, skipped):
        """`Survey.beam_cuts` for rows with their own grids, vectorized over the rows.

        The rows' wavelengths are ``base`` (1-D: shared, or 2-D), divided row by row
        by ``frame`` (`Batch.frame`) when it is given: the beams are cut from the
        stored grid without computing every row's grid (the same pixels:
        `_framed_search`).  Rows whose beam range starts and ends at the same pixels
        go into one part (each row keeps its grid, or its frame).
        """
        mc = self.options["min_coverage"]
        factor = np.ones(len(batch)) if frame is None else frame
        for beam in self.survey.beams.values():
            lo, hi = beam.wave_min.value, beam.wave_max.value
            i0 = _framed_search(base, factor, lo, "left")
            i1 = _framed_search(base, factor, hi, "right")
            rows = np.flatnonzero(i1 - i0 >= 2)
            if not rows.size:
                continue
            count = (i1 - i0)[rows]
            first = _framed_at(base, factor, i0, rows)
            last = _framed_at(base, factor, i1 - 1, rows)
            cov = np.clip((np.minimum(last, hi) - np.maximum(first, lo)) / (hi - lo), 0.0, 1.0)
            ok = (cov >= mc) & (count >= MIN_PIXELS)
            for r, c, k in zip(rows[~ok], cov[~ok], count[~ok]):
                skipped.setdefault(int(r), []).append(f"{beam.name} ({c:.1%} covered, "
                                                      f"{k} pixels)")
            rows = rows[ok]
            if beam.name not in parts or not rows.size:
                continue
            reached[rows] = True
            ends = np.stack([i0[rows], i1[rows]], axis=1)
            uniq, inverse = np.unique(ends, axis=0, return_inverse=True)
            inverse = np.asarray(inverse).ravel()
            for g, (a, b) in enumerate(uniq):
                sel = rows[inverse == g]
                parts[beam.name].append(Batch(
                    flux=batch.flux[sel, a:b], sigma=batch.sigma[sel, a:b],
                    mask=batch.mask[sel, a:b],
                    wave=base[a:b] if base.ndim == 1 else base[sel, a:b],
                    star=batch.star[sel], piece=batch.piece[sel], beam=beam.name,
                    medium=self.survey.wavelength_medium,
                    frame=None if frame is None else frame[sel]))

    def _join_chunks(self, beam, parts, context):
        """Parts of one beam: stars reaching it through several spectra get one joined row."""
        counts = {}
        for part in parts:
            for s in part.star:
                counts[int(s)] = counts.get(int(s), 0) + 1
        multi = {s for s, c in counts.items() if c > 1}
        if not multi:
            return parts
        kept, rows_of = [], {}
        for part in parts:
            is_multi = np.array([int(s) in multi for s in part.star])
            for r in np.flatnonzero(is_multi):
                rows_of.setdefault(int(part.star[r]), []).append(
                    (part.row_wave(r), part.flux[r], part.sigma[r], part.mask[r],
                     int(part.piece[r])))
            if (~is_multi).any():
                kept.append(part.take(~is_multi))
        for star, rows in sorted(rows_of.items()):
            rows.sort(key=lambda row: row[0][0])
            units = context.piece_units.get(star)
            try:
                for (wa, *_, pa), (wb, *_, pb) in zip(rows, rows[1:]):
                    if wb[0] <= wa[-1]:
                        names = context.pieces[star]
                        raise SpectrumError(
                            f"{names[pa]} and {names[pb]} both cover beam {beam} over "
                            f"{wb[0]:.6g}-{min(wa[-1], wb[-1]):.6g} Å; spectra of one beam of "
                            f"one star must not overlap (remap does not choose between or "
                            f"average them): give one spectrum per beam, or chunks that do "
                            f"not overlap")
                scales = [1.0] * len(rows)
                if units is not None:
                    first = units[rows[0][4]]
                    for j, row in enumerate(rows):
                        try:
                            scales[j] = (1.0 * units[row[4]]).to_value(first)
                        except u.UnitConversionError:
                            raise SpectrumError(
                                f"{context.labels[star]}: its spectra of beam {beam} are in "
                                f"incompatible flux units ({first} and {units[row[4]]}); they "
                                f"cannot be joined into one beam") from None
            except SpectrumError as exc:
                context.fail(star, self.name, exc)
                continue
            has_sigma = all(np.isfinite(row[2]).all() for row in rows)
            wave = np.concatenate([row[0] for row in rows])
            flux = np.concatenate([row[1] * sc for row, sc in zip(rows, scales)])
            sigma = (np.concatenate([row[2] * sc for row, sc in zip(rows, scales)])
                     if has_sigma else np.full(wave.size, np.nan))
            mask = np.concatenate([row[3] for row in rows])
            kept.append(Batch(flux=flux[None], sigma=sigma[None], mask=mask[None], wave=wave,
                              star=np.array([star], np.int64),
                              piece=np.array([rows[0][4]], np.int64), beam=beam,
                              medium=self.survey.wavelength_medium))
        return kept


def _framed_at(base, frame, idx, rows):
    """Wavelength of pixel ``idx[r]`` of each row ``r`` of ``rows``: ``base / frame`` there."""
    i = idx[rows]
    return (base[i] if base.ndim == 1 else base[rows, i]) / frame[rows]


def _framed_search(base, frame, value, side):
    """``np.searchsorted(base[r] / frame[r], value, side)`` for each row ``r``.

    ``base``: one grid (1-D) or one per row; the rows' wavelengths are
    ``base / frame[:, None]`` (`Batch.frame`; ones: ``base`` itself).  The search runs on ``base``
    for ``value * frame`` and is then corrected pixel by pixel against the
    divided values themselves, so the result is exactly that of searching the
    divided grid (rounding moves the boundary by a pixel at most).
    """
    n, npix = frame.size, base.shape[-1]
    rows = np.arange(n)
    target = value * frame
    if base.ndim == 1:
        idx = np.searchsorted(base, target, side=side).astype(np.int64)
    else:
        idx = np.fromiter((np.searchsorted(b, t, side=side) for b, t in zip(base, target)),
                          np.int64, n)

    def past(i):
        """Whether pixel ``i`` of each row is at or beyond the boundary (False off the end)."""
        inside = (i >= 0) & (i < npix)
        c = np.clip(i, 0, npix - 1)
        w = (base[c] if base.ndim == 1 else base[rows, c]) / frame
        return inside & ((w >= value) if side == "left" else (w > value))

    for _ in range(npix + 1):
        down = (idx > 0) & past(idx - 1)
        up = (idx < npix) & ~past(idx)
        if not (down.any() or up.any()):
            return idx
        idx += up.astype(np.int64) - down.astype(np.int64)
    raise AssertionError("unreachable: the search moves towards the boundary")  # pragma: no cover


def _groups(batch, wave):
    """(rows, wave) for rows sharing a grid, ``wave`` being the batch's (converted) grid."""
    if wave.ndim == 1:
        return [(np.arange(len(batch)), wave)]
    _, first, inverse = np.unique(wave, axis=0, return_index=True, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    return [(np.flatnonzero(inverse == g), wave[row]) for g, row in enumerate(first)]


# ============================================================================ usable rows

def _usable(batch, context, stage):
    """Rows of a beam part that can be processed; notes for the others."""
    bad = batch.mask
    npix = batch.npix
    frac = bad.mean(axis=1)
    good = npix - bad.sum(axis=1)
    positive = np.any((batch.flux > 0) & ~bad, axis=1)
    ok = (frac <= MAX_BAD_FRACTION) & (good >= MIN_PIXELS) & positive
    for r in np.flatnonzero(~ok):
        if frac[r] > MAX_BAD_FRACTION:
            why = f"{frac[r]:.0%} of its {npix} pixels are masked or not finite"
        elif good[r] < MIN_PIXELS:
            why = f"only {good[r]} usable pixels"
        else:
            why = "the flux is zero or negative everywhere"
        star = int(batch.star[r])
        context.note(star, stage, "beam_not_used",
                     f"{context.labels[star]}: beam {batch.beam} not used: {why}",
                     beam=batch.beam)
    return ok


# ============================================================================ spikes

class Spikes(Stage):
    """Mask narrow bright artefacts (cosmic rays, interferometer features); interpolate over them.

    :func:`remap.surveys.base.find_spikes` on each beam batch (rows with and
    without uncertainties separately, so that no row's noise estimate depends
    on another's), with the survey's ``known_spikes``.
    """

    name = "spikes"

    def describe(self):
        name = getattr(self.survey, "name", type(self.survey).__name__)
        known = len(getattr(self.survey, "known_spikes", ()))
        custom = type(self.survey).remove_spikes is not Survey.remove_spikes
        how = (f"{type(self.survey).__name__}.remove_spikes" if custom else
               "remap.surveys.base.find_spikes")
        return f"survey {name!r}: {how}, {known} known spike wavelength(s)"

    def run(self, batches, context):
        out = []
        for batch in batches:
            ok = _usable(batch, context, self.name)
            if not ok.any():
                continue
            if not ok.all():
                batch = batch.take(ok)
            if type(self.survey).remove_spikes is not Survey.remove_spikes:
                out.append(self._custom(batch))
                continue
            spikes = np.zeros(batch.mask.shape, bool)
            has = batch.has_sigma()
            for sel in (has, ~has):
                if not sel.any():
                    continue
                rows = np.flatnonzero(sel)
                known = self.survey.known_spikes
                for grp, w in ([(rows, batch.shared_wave)] if batch.shared_wave is not None
                               or not np.size(known) else
                               [(rows[g], w) for g, w in _groups(batch.take(rows),
                                                                 batch.take(rows).wave)]):
                    # every row: the arrays themselves, not copies
                    grp = slice(None) if len(grp) == len(batch) else grp
                    spikes[grp] = find_spikes(
                        batch.flux[grp], w, stddev=batch.sigma[grp] if sel is has else None,
                        mask=batch.mask[grp], known_spikes=known)
            fill_spikes(batch.flux, spikes, batch.mask)
            batch.mask = batch.mask | spikes
            out.append(batch)
        return out

    def _custom(self, batch):
        """A survey with its own ``remove_spikes``: call it on the batch as one spectrum."""
        Spectrum = spectrum_class()
        rows = []
        for grp, w in batch.wave_groups():
            sub = batch.take(grp)
            has = sub.has_sigma()
            unc = StdDevUncertainty(np.where(has[:, None], sub.sigma, 1.0))
            spec = Spectrum(flux=sub.flux * u.one, spectral_axis=w * u.AA, uncertainty=unc,
                            mask=sub.mask, meta={"wavelength_medium": batch.medium})
            clean = self.survey.remove_spikes(spec, name=f"beam {batch.beam}")
            sub.flux = np.atleast_2d(np.asarray(u.Quantity(clean.flux).value, float))
            sub.mask = np.atleast_2d(np.asarray(clean.mask, bool))
            rows.append(sub)
        return Batch.concatenate(rows)


# ============================================================================ resample

class Resample(Stage):
    """Cubic-spline resampling onto each beam's model grid.

    :func:`remap.spectra.resampling.resample_arrays` (the function the
    augmentation uses); rows already on the grid are passed on as they are.
    """

    name = "resample"

    def __init__(self, model, survey, **options):
        super().__init__(model, survey, **options)
        self.grids = {b: model.wavelength(b).to_value(u.AA) for b in model.beams}

    def describe(self):
        grids = ", ".join(f"{b}: {g['wave_min']:g}-{g['wave_max']:g} Å at {g['sampling']:g} Å"
                          for b, g in ((b, self.model.grid(b)) for b in self.model.beams))
        return f"cubic spline onto the model grids ({grids}); skipped on the grid already"

    def run(self, batches, context):
        by_window = {}
        own = []
        for batch in batches:
            grid = self.grids[batch.beam]
            step = float(np.median(np.diff(grid)))
            if batch.frame is not None or (batch.base_wave.ndim == 2
                                           and not (batch.wave == batch.wave[0]).all()):
                own.append(batch)
                continue
            for rows, w in batch.wave_groups():
                sub = batch if len(rows) == len(batch) else batch.take(rows)
                if w.size == grid.size and np.allclose(w, grid, rtol=0, atol=1e-6 * step):
                    sub.wave, sub.window = grid, (0, grid.size)
                else:
                    inside = (grid >= w[0]) & (grid <= w[-1])
                    count = int(inside.sum())
                    if count < MIN_PIXELS:
                        for s in sub.star:
                            context.note(int(s), self.name, "beam_not_used",
                                         f"{context.labels[int(s)]}: beam {batch.beam} not "
                                         f"used: the spectrum ({w[0]:.6g}-{w[-1]:.6g} Å) "
                                         f"covers only {count} pixels of the model grid",
                                         beam=batch.beam)
                        continue
                    i0 = int(np.argmax(inside))
                    g = grid[i0:i0 + count]
                    sub.flux, sub.sigma, sub.mask = resample_arrays(w, g, sub.flux, sub.sigma,
                                                                    sub.mask)
                    sub.wave, sub.window = g, (i0, i0 + count)
                by_window.setdefault((batch.beam, sub.window), []).append(sub)
        if own:
            self._own_grids(own, by_window, context)
        return [Batch.concatenate(parts) for parts in by_window.values()]

    def _own_grids(self, batches, by_window, context):
        """Rows with their own grids, gathered across batches into one output batch per beam
        and model-grid window: one compiled spline pass per (input batch, window), written
        straight into the window's arrays (:func:`remap.spectra.resampling.resample_rows`).

        Rows in their own frames (`Batch.frame`: λ = stored λ / frame) are
        interpolated on their stored grid at the model grid times their frame
        factor: the same spline (a cubic spline does not depend on the scale of its
        abscissae, up to rounding), and rows sharing a stored grid share one
        factorization of the spline system.
        """
        groups = {}     # (beam, i0, i1) -> list of (batch, rows)
        for batch in batches:
            grid = self.grids[batch.beam]
            first, last = batch.wave_ends()
            i0 = np.searchsorted(grid, first, side="left")
            i1 = np.searchsorted(grid, last, side="right")
            few = i1 - i0 < MIN_PIXELS
            for r in np.flatnonzero(few):
                star = int(batch.star[r])
                context.note(star, self.name, "beam_not_used",
                             f"{context.labels[star]}: beam {batch.beam} not used: the "
                             f"spectrum ({first[r]:.6g}-{last[r]:.6g} Å) covers only "
                             f"{int(i1[r] - i0[r])} pixels of the model grid", beam=batch.beam)
            rows = np.flatnonzero(~few)
            if not rows.size:
                continue
            ends, inverse = np.unique(np.stack([i0[rows], i1[rows]], axis=1), axis=0,
                                      return_inverse=True)
            inverse = np.asarray(inverse).ravel()
            for k, (a, b) in enumerate(ends):
                groups.setdefault((batch.beam, int(a), int(b)), []).append(
                    (batch, rows[inverse == k]))
        for (beam, a, b), parts in groups.items():
            grid = self.grids[beam][a:b]
            n = sum(len(sel) for _, sel in parts)
            flux = np.empty((n, b - a))
            sigma = np.empty((n, b - a))
            mask = np.empty((n, b - a), dtype=bool)
            offset = 0
            for batch, sel in parts:
                # rows in their own frames: the model grid taken into each row's frame
                resample_rows(batch.base_wave, grid, batch.flux, batch.sigma, batch.mask,
                              rows=sel, out=(flux, sigma, mask), offset=offset,
                              scale=batch.frame)
                offset += len(sel)
            first = parts[0][0]
            by_window.setdefault((beam, (a, b)), []).append(Batch(
                flux=flux, sigma=sigma, mask=mask, wave=grid,
                star=np.concatenate([batch.star[sel] for batch, sel in parts]),
                piece=np.concatenate([batch.piece[sel] for batch, sel in parts]),
                beam=beam, medium=first.medium, window=(a, b)))


# ============================================================================ continuum

def _snr(flux, sigma, mask):
    """SNR per row of normalized spectra: median 1/σ, or a robust residual estimate."""
    out = np.full(len(flux), np.nan)
    has = np.isfinite(sigma).all(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if has.any():
            inv = np.where(mask[has] | ~(sigma[has] > 0), np.nan, 1.0 / sigma[has])
            out[has] = nanmedian_rows(inv)
        rest = ~has | ~np.isfinite(out)
        if rest.any():
            f, m = flux[rest], mask[rest]
            resid = f[:, 1:-1] - 0.5 * (f[:, :-2] + f[:, 2:])
            bad = m[:, 1:-1] | m[:, :-2] | m[:, 2:]
            noise = MAD_TO_SIGMA * nanmedian_rows(np.where(bad, np.nan, np.abs(resid))) \
                / math.sqrt(1.5)
            level = nanmedian_rows(np.where(m, np.nan, f))
            out[rest] = level / noise
    return out


def _own_float64(a):
    """``a`` itself when it is a writable, C-contiguous float64 array owning its data, else a
    copy of it that is."""
    if (a.dtype == np.float64 and a.flags.c_contiguous and a.flags.writeable
            and a.flags.owndata):
        return a
    return np.array(a, dtype=np.float64, order="C")


def _normalize(batch, cont):
    """Divide the batch's flux and σ by ``cont`` (new arrays); return the SNR per row (`_snr`).

    A compiled pass per row (`remap.inference._snr_kernel`); rows without
    usable uncertainties get the robust residual estimate of `_snr`.
    """
    from ._snr_kernel import normalize_rows   # numba: imported on first use

    # the stages before own the batch's arrays (split and resample copy): divided in place
    flux = _own_float64(batch.flux)
    sigma = _own_float64(batch.sigma)
    snr = normalize_rows(flux, sigma, batch.mask, cont)
    batch.flux, batch.sigma = flux, sigma
    rest = ~np.isfinite(snr)
    if rest.any():
        snr[rest] = _snr(flux[rest], sigma[rest], batch.mask[rest])
    return snr


class Continuum(Stage):
    """Divide by the continuum of the model's own fitter (the one of its training spectra).

    One ``fitter.fit(flux, mask, wavelength)`` call per beam batch; a batch
    whose fit fails is retried row by row (failing rows: the beam is not
    used, with a note).  Sets the per-beam SNR.
    """

    name = "continuum"
    OPTIONS = {"fitter_options": None}

    def __init__(self, model, survey, **options):
        super().__init__(model, survey, **options)
        fo = self.options["fitter_options"]
        if not fo:
            self.fitter = model.continuum_fitter()
        else:
            if not isinstance(fo, Mapping):
                raise TypeError(f"fitter_options must be a dict of continuum-fitter options; "
                                f"received {type(fo).__name__}")
            if model.fitter is None:
                raise ValueError("fitter_options were given but the model records no "
                                 "continuum fitter")
            config = {**model.fitter.get("config", {}), **dict(fo)}
            self.fitter = get_continuum_fitter(model.fitter["name"], **config)

    def describe(self):
        if self.fitter is None:
            return "none (the model records no continuum fitter: inputs taken as normalized)"
        return f"{self.fitter.name!r} {self.fitter.get_config()}"

    def _fit(self, batch):
        cont = np.asarray(self.fitter.fit(batch.flux, mask=batch.mask,
                                          wavelength=batch.shared_wave), dtype=float)
        if cont.shape != batch.flux.shape:
            raise ContinuumError(f"the fitter {self.fitter.name!r} returned a continuum of "
                                 f"shape {cont.shape} for a flux of shape {batch.flux.shape}")
        return cont

    def run(self, batches, context):
        out = []
        for batch in batches:
            if self.fitter is not None:
                try:
                    cont = self._fit(batch)
                except (ContinuumError, ValueError):
                    cont = np.full(batch.flux.shape, np.nan)
                    for r in range(len(batch)):
                        try:
                            cont[r] = self._fit(batch.take([r]))[0]
                        except (ContinuumError, ValueError) as exc:
                            star = int(batch.star[r])
                            context.note(star, self.name, "continuum_failed",
                                         f"{context.labels[star]}: continuum fit failed: "
                                         f"{exc}", beam=batch.beam)
                positive = np.all(np.isfinite(cont) & (cont > 0), axis=1)
                for r in np.flatnonzero(~positive & np.isfinite(cont).all(axis=1)):
                    star = int(batch.star[r])
                    context.note(star, self.name, "continuum_failed",
                                 f"{context.labels[star]}: beam {batch.beam} not used: the "
                                 f"{self.fitter.name!r} continuum is not positive everywhere",
                                 beam=batch.beam)
                if not positive.any():
                    continue
                if not positive.all():
                    batch, cont = batch.take(positive), cont[positive]
                context.snr[batch.beam][batch.star] = _normalize(batch, cont)
            else:
                context.snr[batch.beam][batch.star] = _snr(batch.flux, batch.sigma, batch.mask)
            out.append(batch)
        return out


# ============================================================================ network

class Network(Stage):
    """One network per beam: a PMF per parameter and the embeddings.

    Rows are placed on the beam's full model grid (pixels a partial spectrum
    does not cover count as masked and are in-painted: option ``uncovered``,
    ``"mean"`` -- the model's mean training spectrum, row 0 of its templates,
    what the partial-coverage augmentation trains with; 1 when the model
    stores no templates -- or ``"continuum"``, the normalized continuum 1)
    and run in fixed blocks of :data:`NETWORK_ROWS` (the last one padded), so
    that a star's result does not depend on the other stars.
    """

    name = "network"
    OPTIONS = {"uncovered": "mean"}

    def __init__(self, model, survey, **options):
        super().__init__(model, survey, **options)
        if self.options["uncovered"] not in ("mean", "continuum"):
            raise ValueError(f"uncovered must be 'mean' or 'continuum'; received "
                             f"{self.options['uncovered']!r}")
        self.fill = {}
        for beam in model.beams:
            npix = model.grid(beam)["npix"]
            mean = self.options["uncovered"] == "mean" and model.has_templates(beam)
            self.fill[beam] = (np.asarray(model.templates(beam).flux[0], np.float32) if mean
                               else np.ones(npix, np.float32))

    def describe(self):
        heads = ", ".join(h.name for h in self.model.heads)
        fill = ("the mean training spectrum" if any(self.model.has_templates(b)
                                                    for b in self.model.beams)
                and self.options["uncovered"] == "mean" else "1")
        return (f"one network per beam ({', '.join(self.model.beams)}); heads {heads}; blocks "
                f"of {NETWORK_ROWS} rows; uncovered pixels set to {fill}")

    def _predict(self, beam, X):
        outs = []
        for start in range(0, len(X), NETWORK_ROWS):
            block = X[start:start + NETWORK_ROWS]
            k = len(block)
            if k < NETWORK_ROWS:
                block = np.concatenate([block, np.ones((NETWORK_ROWS - k, X.shape[1]),
                                                       np.float32)])
            out = self.model.predict(beam, block, batch_size=NETWORK_ROWS)
            outs.append({name: v[:k] for name, v in out.items()})
        return {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}

    def run(self, batches, context):
        for beam in self.model.beams:
            parts = [b for b in batches if b.beam == beam and len(b)]
            if not parts:
                continue
            with context.timer(f"network {beam}"):
                npix = self.model.grid(beam)["npix"]
                n = sum(len(p) for p in parts)
                X = np.tile(self.fill[beam], (n, 1))
                M = np.ones((n, npix), dtype=bool)
                stars = np.concatenate([p.star for p in parts])
                at = 0
                for p in parts:
                    i0, i1 = p.window
                    X[at:at + len(p), i0:i1] = p.flux
                    M[at:at + len(p), i0:i1] = p.mask
                    at += len(p)
                finite = np.all(np.isfinite(X), axis=1)
                for s in stars[~finite]:  # never feed NaN to a network
                    context.note(int(s), self.name, "beam_not_used",
                                 f"{context.labels[int(s)]}: beam {beam} not used: the "
                                 f"normalized flux is not finite", beam=beam)
                    context.snr[beam][s] = np.nan
                if not finite.any():
                    continue
                X, M, stars = X[finite], M[finite], stars[finite]
                context.masked_fraction[beam][stars] = M.mean(axis=1)
                out = self._predict(beam, X)
                context.used[beam][stars] = True
                for h in self.model.heads:
                    context.beam_pmfs[h.name][beam][stars] = out[h.name]
                    emb = out.get(f"{h.name}_embedding")
                    if emb is not None:
                        full = context.embeddings[beam].setdefault(
                            h.name, np.full((context.n, emb.shape[1]), np.nan))
                        full[stars] = emb
        return batches


# ============================================================================ conflation

class Conflation(Stage):
    """Product of the beams' PMFs, renormalized (Hill & Miller 2011), and its summary.

    Where the beams' PMFs share no bin the reported PMF is their average
    (flagged by the ``flags`` stage).
    """

    name = "conflation"

    def describe(self):
        return "product of the beams' PMFs, renormalized (Hill & Miller 2011)"

    def run(self, batches, context):
        for h in self.model.heads:
            per_beam = [context.beam_pmfs[h.name][b] for b in self.model.beams]
            conf, disjoint = conflate(*per_beam, return_flags=True)
            disjoint = np.atleast_1d(disjoint)
            if disjoint.any():
                stack = np.stack(per_beam)
                with np.errstate(invalid="ignore", divide="ignore"):  # (np.nanmean, no warning)
                    mix = np.nansum(stack, axis=0) / np.sum(~np.isnan(stack), axis=0)
                mix = mix / mix.sum(axis=1, keepdims=True)
                conf[disjoint] = mix[disjoint]
            context.pmfs[h.name] = conf
            context.disjoint[h.name] = disjoint
            context.summaries[h.name] = self.model.bins[h.name].decode(conf)
        return batches


# ============================================================================ flags

class QualityFlags(Stage):
    """The quality flags and their notes (rules and thresholds: :mod:`remap.inference.flags`).

    NO_COVERAGE, MISSING_BEAM, LOW_SNR, MASKED, BEAMS_DISAGREE, EDGE_PMF,
    OUTSIDE_DOMAIN (FAR_FROM_TRAINING is set by ``neighbours``, BAD_INPUT
    where a stage gave a star up).  OUTSIDE_DOMAIN uses the ``trusted_domain``
    of the library plugin the model's manifest names (none: not checked).
    """

    name = "flags"

    def __init__(self, model, survey, **options):
        super().__init__(model, survey, **options)
        self.domain = _trusted_domain(model)

    def describe(self):
        domain = ("" if self.domain is None else
                  f", OUTSIDE_DOMAIN (library {self.model.manifest['library']['name']!r} "
                  f"trusted domain)")
        return (f"LOW_SNR < {rules.LOW_SNR:g}, MASKED > {rules.MASKED_FRACTION:.0%}, "
                f"BEAMS_DISAGREE > {rules.TENSION_SIGMA:g} sigma, EDGE_PMF > "
                f"{rules.EDGE_MASS:.0%} in {rules.EDGE_BINS} edge bins, MISSING_BEAM, "
                f"NO_COVERAGE{domain}")

    def run(self, batches, context):
        beams = self.model.beams
        used_any = np.zeros(context.n, bool)
        for b in beams:
            used_any |= context.used[b]
        none = ~used_any & ~context.failed
        context.flag(none, Flag.NO_COVERAGE)
        for i in np.flatnonzero(none):
            if not context.has_note(int(i)):
                context.note(int(i), self.name, "no_coverage",
                             f"{context.labels[i]}: no beam of the model could be used")
        for b in beams:
            miss = ~context.used[b] & used_any
            context.flag(miss, Flag.MISSING_BEAM)
            for i in np.flatnonzero(miss):
                if not context.has_note(int(i), beam=b):
                    others = ", ".join(x for x in beams if context.used[x][i])
                    context.note(int(i), self.name, "missing_beam",
                                 f"beam {b} not covered: parameters from beam(s) {others} "
                                 f"only", beam=b)
            low = context.used[b] & rules.low_snr(context.snr[b])
            heavy = context.used[b] & rules.heavily_masked(context.masked_fraction[b])
            context.flag(low, Flag.LOW_SNR)
            context.flag(heavy, Flag.MASKED)
            for i in np.flatnonzero(low):
                context.note(int(i), self.name, "low_snr",
                             f"beam {b}: SNR {context.snr[b][i]:.1f} < {rules.LOW_SNR:g}",
                             beam=b)
            for i in np.flatnonzero(heavy):
                context.note(int(i), self.name, "masked",
                             f"beam {b}: {context.masked_fraction[b][i]:.0%} of the pixels "
                             f"masked or not covered (> {rules.MASKED_FRACTION:.0%})", beam=b)
        for h in self.model.heads:
            bins = self.model.bins[h.name]
            unit = h.unit.to_string()
            disjoint = context.disjoint[h.name]
            context.flag(disjoint, Flag.BEAMS_DISAGREE)
            for i in np.flatnonzero(disjoint):
                context.note(int(i), self.name, "pmf_disjoint",
                             f"{h.label}: the beams' PMFs share no bin; the reported PMF is "
                             f"their average")
            if len(beams) > 1:
                per_beam = [context.beam_pmfs[h.name][b] for b in beams]
                worst, pair, stats = rules.beam_tension(bins, per_beam)
                tense = (worst > rules.TENSION_SIGMA) & ~disjoint
                context.flag(tense, Flag.BEAMS_DISAGREE)
                for i in np.flatnonzero(tense):
                    a, b = pair[i]
                    context.note(int(i), self.name, "beams_disagree",
                                 f"{h.label}: beams {beams[a]} and {beams[b]} disagree: "
                                 f"{stats[a]['median'][i]:.4g} vs {stats[b]['median'][i]:.4g} "
                                 f"{unit} ({worst[i]:.1f} sigma)")
            lo, hi, edge = rules.edge_mass(context.pmfs[h.name])
            context.flag(edge, Flag.EDGE_PMF)
            for i in np.flatnonzero(edge):
                side, mass, lim = (
                    ("lowest", lo[i], f"below {bins.edges[rules.EDGE_BINS]:.4g}")
                    if lo[i] > rules.EDGE_MASS else
                    ("highest", hi[i], f"above {bins.edges[-rules.EDGE_BINS - 1]:.4g}"))
                context.note(int(i), self.name, "edge_pmf",
                             f"{h.label}: {mass:.0%} of the probability in the {side} "
                             f"{rules.EDGE_BINS} bins ({lim} {unit}): probably outside the "
                             f"training domain")
        self._domain_flags(context)
        return batches

    def _domain_flags(self, context):
        names = {h.name for h in self.model.heads}
        if self.domain is None or not {"teff", "logg", "feh"} <= names:
            return
        med = {p: context.summaries[p]["median"] for p in ("teff", "logg", "feh")}
        outside = rules.outside_domain(self.domain, med["teff"], med["logg"], med["feh"])
        context.flag(outside, Flag.OUTSIDE_DOMAIN)
        reason = getattr(self.domain, "reason", "")
        for i in np.flatnonzero(outside):
            context.note(int(i), self.name, "outside_domain",
                         f"{med['teff'][i]:.0f} K / {med['logg'][i]:.2f} / "
                         f"{med['feh'][i]:+.2f} is outside the trusted domain of the "
                         f"training library {self.model.manifest['library']['name']!r}"
                         + (f" ({reason})" if reason else ""))


def _trusted_domain(model):
    """``trusted_domain`` of the library plugin named in the model's manifest, or None."""
    name = ((getattr(model, "manifest", None) or {}).get("library") or {}).get("name")
    if not name:
        return None
    try:
        factory = registry("library").get(name)
    except Exception:  # noqa: BLE001 - a broken plugin set must not break fitting
        return None
    domain = getattr(factory, "trusted_domain", None)
    return domain if callable(getattr(domain, "contains", None)) else None


# ============================================================================ neighbours

_FAR = weakref.WeakKeyDictionary()


def _far_limit(model, beam, head):
    """:func:`remap.inference.flags.far_threshold` of a model's beam and head, cached."""
    cache = _FAR.setdefault(model, {})
    if (beam, head) not in cache:
        record = model.embeddings(beam)
        cache[(beam, head)] = rules.far_threshold(record["embeddings"][head], record["labels"])
    return cache[(beam, head)]


class NearestNeighbours(Stage):
    """The k nearest training spectra in each embedding space; FAR_FROM_TRAINING."""

    name = "neighbours"
    OPTIONS = {"k": 5}

    def __init__(self, model, survey, **options):
        super().__init__(model, survey, **options)
        k = self.options["k"]
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be an integer >= 1; received k={k!r}")
        self.k = int(k)
        for beam in model.beams:
            if model.has_embeddings(beam):
                stored = len(model.embeddings(beam)["labels"])
                if self.k > stored:
                    raise ValueError(f"k={self.k} exceeds the {stored} training embeddings "
                                     f"stored for beam {beam!r}")

    def describe(self):
        embedded = [b for b in self.model.beams if self.model.has_embeddings(b)]
        if not embedded:
            return "no stored embeddings"
        return (f"k={self.k} nearest stored training embeddings (beams {', '.join(embedded)}); "
                f"FAR_FROM_TRAINING beyond the {rules.FAR_PERCENTILE:g}th percentile")

    def run(self, batches, context):
        n, k = context.n, self.k
        for b in self.model.beams:
            if not self.model.has_embeddings(b):
                continue
            record = self.model.embeddings(b)
            names = list(record["label_names"])
            context.neighbours[b] = {}
            rows = np.flatnonzero(context.used[b])
            far = np.zeros(n, bool)
            far_text = {}
            for h in self.model.heads:
                if h.name not in record["embeddings"]:
                    continue
                idx = np.full((n, k), -1, dtype=np.int64)
                dist = np.full((n, k), np.nan)
                lab = np.full((n, k, len(names)), np.nan)
                emb = context.embeddings[b].get(h.name)
                if len(rows) and emb is not None:
                    nb = self.model.nearest(b, h.name, emb[rows], k=k)
                    idx[rows], dist[rows], lab[rows] = nb.indices, nb.distances, nb.labels
                    limit = _far_limit(self.model, b, h.name)
                    beyond = rules.far_from_training(nb.distances[:, 0], limit)
                    far[rows] |= beyond
                    for r in np.flatnonzero(beyond):
                        far_text.setdefault(int(rows[r]), []).append(
                            f"{h.name} {nb.distances[r, 0]:.3g} > {limit:.3g}")
                context.neighbours[b][h.name] = Neighbours(idx, dist, lab, names)
            context.flag(far, Flag.FAR_FROM_TRAINING)
            for i in np.flatnonzero(far):
                context.note(int(i), self.name, "far_from_training",
                             f"beam {b}: far from the training set (distance to the nearest "
                             f"training embedding beyond the {rules.FAR_PERCENTILE:g}th "
                             f"percentile of the training set's own: "
                             f"{', '.join(far_text[int(i)])})", beam=b)
        return batches


# the real-spectra stages subclass Stage, so they are imported once it is defined
from .resolution import Resolution  # noqa: E402
from .rest_frame import RestFrame  # noqa: E402

#: The built-in stages, in the order they run.  The real-spectra stages
#: (radial velocity / rest frame, resolution matching) run right after `Validate`.
DEFAULT_STAGES = (Validate, RestFrame, Resolution, Split, Spikes, Resample, Continuum, Network,
                  Conflation, QualityFlags, NearestNeighbours)


def stage_options(stages=None) -> dict:
    """Option name -> the stage class declaring it (each option belongs to one stage)."""
    owner = {}
    for cls in DEFAULT_STAGES if stages is None else stages:
        for name in cls.OPTIONS:
            if name in owner:
                raise TypeError(f"option {name!r} is declared by stages {owner[name].name!r} "
                                f"and {cls.name!r}")
            owner[name] = cls
    return owner


class Pipeline:
    """The stage instances :func:`build_pipeline` made, in order.

    Attributes
    ----------
    model, survey
    stages : list of `Stage`
    """

    def __init__(self, model, survey, stages):
        self.model = model
        self.survey = survey
        self.stages = list(stages)

    def __iter__(self):
        return iter(self.stages)

    def __len__(self):
        return len(self.stages)

    def describe(self) -> list[tuple[str, str]]:
        """``(stage name, description)`` per stage, in order."""
        return [(s.name, s.describe()) for s in self.stages]

    @property
    def columns(self) -> dict:
        """Per-star output columns of all stages: name -> (unit, description, stage).

        Raises
        ------
        TypeError
            Two stages declare the same column.
        """
        out = {}
        for s in self.stages:
            for name, (unit, desc) in s.COLUMNS.items():
                if name in out:
                    raise TypeError(f"column {name!r} is declared by stages {out[name][2]!r} "
                                    f"and {s.name!r}")
                out[name] = (unit, desc, s.name)
        return out

    def run(self, items, context):
        """Run every stage on one chunk of items; the outputs are left in ``context``."""
        for name, (unit, desc, stage) in self.columns.items():
            context.declare(name, unit, desc, stage)
        data = items
        for stage in self.stages:
            with context.timer(stage.name):
                data = stage.run(data, context)
                if context.failed.any() and data and not isinstance(data[0], Item):
                    data = [b if not context.failed[b.star].any()
                            else b.take(~context.failed[b.star]) for b in data]
                    data = [b for b in data if len(b)]
        return context


def build_pipeline(model, survey, stages=None, **options) -> Pipeline:
    """The stages of :func:`remap.fit` for a model, survey and options.

    Parameters
    ----------
    model : `remap.model.RemapModel`
    survey : `remap.surveys.Survey`
    stages : sequence of `Stage` subclasses, optional
        Default: :data:`DEFAULT_STAGES` (looked up when called).
    **options
        Stage options (``k=``, ``fitter_options=``, ``min_coverage=``, ...),
        each passed to the stage that declares it.

    Returns
    -------
    pipeline : `Pipeline`

    Raises
    ------
    TypeError
        An option no stage declares (the message lists them).
    ValueError
        A bad option value (raised by its stage).
    """
    stages = DEFAULT_STAGES if stages is None else tuple(stages)
    owner = stage_options(stages)
    unknown = sorted(set(options) - set(owner))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; the pipeline's stages take "
                        f"{sorted(owner) or 'none'}")
    made = []
    for cls in stages:
        mine = {k: v for k, v in options.items() if owner[k] is cls}
        made.append(cls(model, survey, **mine))
    return Pipeline(model, survey, made)
