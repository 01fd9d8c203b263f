"""Fit stellar parameters to spectra: :func:`fit`, the default model, the pipeline.

:func:`fit` runs a trained model (`remap.model.RemapModel`) on observed
spectra.  Each step is the plugin named in the model's manifest:

1. **split** -- the survey plugin cuts each spectrum into its beams
   (:meth:`remap.surveys.Survey.split`, converting air/vacuum wavelengths);
2. **spikes** -- the survey's spike removal
   (:meth:`remap.surveys.Survey.remove_spikes`);
3. **resample** -- cubic-spline resampling onto each beam's model grid
   (:func:`remap.augment.resample`; skipped when the spectrum is already on it);
4. **continuum** -- the continuum fitter the training spectra were normalized
   with (:meth:`remap.model.RemapModel.continuum_fitter`, via
   :func:`remap.normalize`);
5. **network** -- one network per beam, giving a PMF per parameter and the
   embeddings (:meth:`remap.model.RemapModel.predict`);
6. **conflation** -- the beams' PMFs are multiplied and renormalized
   (:func:`remap.labels.conflate`, Hill & Miller 2011) and summarized
   (:meth:`remap.labels.LabelBins.decode`);
7. **neighbours** -- the nearest training spectra in each embedding space
   (:meth:`remap.model.RemapModel.nearest`).

Stars that share a wavelength axis go through steps 1-5 as 2-D batches.  A
beam covered only in part is normalized where it is covered; the uncovered
model-grid pixels are set to the normalized continuum (1) and counted as
masked.  The networks always run on blocks of :data:`NETWORK_ROWS` spectra
(the last one padded), so a star's result does not depend on which other
stars it was fitted with.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import math
import numbers
import os
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path

import astropy.units as u
import numpy as np

from .exceptions import NoOverlapError, SpectrumError
from .result import (EDGE_BINS, EDGE_MASS, FAR_PERCENTILE, LOW_SNR, MASKED_FRACTION,
                     TENSION_SIGMA, FitResult, Flag)
from .spectra.validation import MAX_BAD_FRACTION, MIN_PIXELS, spectrum_class

__all__ = ["DEFAULT_MODEL_PATH", "NETWORK_ROWS", "STAGES", "fit", "default_model", "pipeline",
           "cached_model"]

#: Directory of the model shipped with remap (see the model card in the docs).
DEFAULT_MODEL_PATH = Path(os.fspath(importlib.resources.files("remap") / "data" / "models"
                                    / "default"))

#: Spectra per network forward pass; the last block of a call is padded to this size.
NETWORK_ROWS = 64

#: Names of the timed pipeline stages (keys of `remap.FitResult.timings`; the
#: network stage is timed per beam as ``"network <beam>"``).
STAGES = ("split", "spikes", "resample", "continuum", "network", "conflation", "neighbours")

_CACHE = {}
_CACHE_LOCK = threading.Lock()
_FAR = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------ models

def cached_model(path):
    """The model at ``path``, loaded once per process with :func:`remap.load_model`.

    Keyed by the path and the manifest file's modification time and size (one
    ``stat``, cheap enough for every :func:`fit` call), so a model re-trained
    into the same directory is loaded again.
    """
    from .model.artifact import load_model

    resolved = Path(path).expanduser().resolve()
    try:
        st = (resolved / "manifest.json").stat()
        key = (str(resolved), st.st_mtime_ns, st.st_size)
    except OSError:
        key = (str(resolved), None, None)   # load_model reports what is missing
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = load_model(resolved)
            _CACHE[key] = model
    return model


def default_model():
    """The model shipped with remap, loaded once per process.

    Returns
    -------
    model : `remap.model.RemapModel`
        The artifact in :data:`DEFAULT_MODEL_PATH` (trained with
        ``configs/default.toml``; see the model card in the documentation).

    Raises
    ------
    remap.model.ArtifactError
        The installed artifact is damaged or does not fit this installation.
    """
    return cached_model(DEFAULT_MODEL_PATH)


def _resolve_model(model):
    from .model.artifact import RemapModel

    if model is None:
        return default_model()
    if isinstance(model, RemapModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return cached_model(model)
    raise TypeError(f"model must be None (the default model), a path to a model artifact or "
                    f"a remap.model.RemapModel; received {type(model).__name__}")


def _resolve_survey(survey, model):
    from .plugins import get_survey

    if survey is None:
        survey = model.survey
    if isinstance(survey, str):
        survey = get_survey(survey)
    for attr in ("split", "remove_spikes", "beams"):
        if not hasattr(survey, attr):
            raise TypeError(f"survey must be a survey name or a survey object (with "
                            f"split, remove_spikes and beams); received "
                            f"{type(survey).__name__} without {attr!r}")
    missing = [b for b in model.beams if b not in survey.beams]
    if missing:
        raise ValueError(f"the model's beams {missing} are not beams of survey "
                         f"{getattr(survey, 'name', survey)!r} (beams: {list(survey.beams)})")
    return survey


def _fitter(model, fitter_options):
    if not fitter_options:
        return model.continuum_fitter()
    if not isinstance(fitter_options, Mapping):
        raise TypeError(f"fitter_options must be a dict of continuum-fitter options; "
                        f"received {type(fitter_options).__name__}")
    if model.fitter is None:
        raise ValueError("fitter_options were given but the model records no continuum "
                         "fitter")
    from .plugins import get_continuum_fitter
    config = {**model.fitter.get("config", {}), **dict(fitter_options)}
    return get_continuum_fitter(model.fitter["name"], **config)


def pipeline(model=None, survey=None, fitter_options=None):
    """The steps :func:`fit` runs with a model, and the plugin doing each.

    Parameters
    ----------
    model, survey, fitter_options
        As for :func:`fit`.

    Returns
    -------
    steps : list of (str, str)
        ``(stage, description)`` in order: split, spikes, resample,
        continuum, network, conflation, neighbours.
    """
    model = _resolve_model(model)
    survey = _resolve_survey(survey, model)
    fitter = _fitter(model, fitter_options)
    name = getattr(survey, "name", type(survey).__name__)
    grids = ", ".join(f"{b}: {g['wave_min']:g}-{g['wave_max']:g} Å at {g['sampling']:g} Å"
                      for b, g in ((b, model.grid(b)) for b in model.beams))
    heads = ", ".join(h.name for h in model.heads)
    embedded = [b for b in model.beams if model.has_embeddings(b)]
    return [
        ("split", f"survey {name!r} ({type(survey).__name__}.split): beams "
                  f"{', '.join(model.beams)}"),
        ("spikes", f"survey {name!r} ({type(survey).__name__}.remove_spikes)"),
        ("resample", f"cubic spline onto the model grids ({grids})"),
        ("continuum", "none" if fitter is None else
         f"{fitter.name!r} {fitter.get_config()}"),
        ("network", f"one network per beam ({', '.join(model.beams)}); heads {heads}"),
        ("conflation", "product of the beams' PMFs, renormalized (Hill & Miller 2011)"),
        ("neighbours", f"nearest stored training embeddings (beams {', '.join(embedded)})"
         if embedded else "no stored embeddings"),
    ]


# ------------------------------------------------------------------------ inputs

class _Piece:
    """One spectrum (or one row of a 2-D spectrum) belonging to one star."""

    __slots__ = ("star", "spectrum", "row", "label")

    def __init__(self, star, spectrum, row, label):
        self.star = star
        self.spectrum = spectrum
        self.row = row
        self.label = label


def _check_spectrum(obj, label):
    if not isinstance(obj, spectrum_class()):
        raise TypeError(f"{label}: expected a specutils Spectrum (or Spectrum1D), a "
                        f"SpectrumList or a dict of beam spectra; received "
                        f"{type(obj).__name__}")
    return obj


def _star_pieces(obj, star, label):
    """The pieces of one star given as a Spectrum, SpectrumList or mapping."""
    from specutils import SpectrumList

    if isinstance(obj, (SpectrumList, Mapping)):
        items = list(obj.items()) if isinstance(obj, Mapping) else list(enumerate(obj))
        if not items:
            raise SpectrumError(f"{label}: the {type(obj).__name__} holds no spectra")
        kind = "SpectrumList item" if isinstance(obj, SpectrumList) else "beam"
        pieces = []
        for key, spec in items:
            sub = f"{label} ({kind} {key!r})"
            _check_spectrum(spec, sub)
            if np.ndim(spec.flux) != 1:
                raise SpectrumError(f"{sub}: each spectrum of one star must have 1-D flux; "
                                    f"received shape {np.shape(spec.flux)}")
            pieces.append(_Piece(star, spec, None, sub))
        return pieces
    _check_spectrum(obj, label)
    if np.ndim(obj.flux) != 1:
        raise SpectrumError(f"{label}: a batch item must be one star (1-D flux); received "
                            f"flux of shape {np.shape(obj.flux)}. Pass a 2-D batch directly, "
                            f"not inside a list")
    return [_Piece(star, obj, None, label)]


def _parse(spectrum):
    """Input -> (list of pieces per star, is_batch)."""
    from specutils import SpectrumList

    if isinstance(spectrum, (SpectrumList, Mapping)):
        return [_star_pieces(spectrum, 0, "spectrum")], False
    if isinstance(spectrum, (list, tuple)):
        if not spectrum:
            raise SpectrumError("no spectra to fit: the list is empty")
        return [_star_pieces(item, i, f"spectra[{i}]") for i, item in enumerate(spectrum)], True
    _check_spectrum(spectrum, "spectrum")
    ndim = np.ndim(spectrum.flux)
    if ndim == 1:
        return [[_Piece(0, spectrum, None, "spectrum")]], False
    if ndim == 2:
        n = np.shape(spectrum.flux)[0]
        if n == 0:
            raise SpectrumError("no spectra to fit: the batch has 0 rows")
        return [[_Piece(i, spectrum, i, f"spectrum[{i}]")] for i in range(n)], True
    raise SpectrumError(f"spectrum: the flux has {ndim} dimensions, shape "
                        f"{np.shape(spectrum.flux)}; expected 1 (one star) or 2 (a batch: "
                        f"stars x pixels)")


def _rows_of(spec, rows):
    """A 2-D spectrum of some rows of a 2-D spectrum (same axis, unit, meta)."""
    Spectrum = spectrum_class()
    unc = spec.uncertainty
    mask = None if spec.mask is None else np.asarray(spec.mask)[rows]
    return Spectrum(flux=u.Quantity(spec.flux)[rows], spectral_axis=spec.spectral_axis,
                    uncertainty=None if unc is None else type(unc)(np.asarray(unc.array)[rows],
                                                                   unit=unc.unit),
                    mask=mask, meta=dict(spec.meta or {}))


def _piece_spectrum(piece):
    """The piece as a 1-D spectrum (a row of a 2-D input is cut out)."""
    if piece.row is None:
        return piece.spectrum
    spec = _rows_of(piece.spectrum, piece.row)
    return spec


def _group_key(piece):
    spec = piece.spectrum
    if piece.row is not None:
        return ("rows", id(spec))
    axis = u.Quantity(spec.spectral_axis)
    digest = hashlib.sha1(np.ascontiguousarray(axis.value).tobytes()).hexdigest()
    unc = spec.uncertainty
    return ("axis", digest, axis.unit.to_string(), axis.size, u.Quantity(spec.flux).unit,
            None if unc is None else (type(unc).__name__, str(unc.unit)),
            spec.mask is None, str((spec.meta or {}).get("wavelength_medium")))


def _stack(pieces):
    """One 2-D spectrum from pieces sharing a group key."""
    first = pieces[0].spectrum
    if pieces[0].row is not None:
        return _rows_of(first, [p.row for p in pieces])
    Spectrum = spectrum_class()
    flux = np.stack([np.asarray(u.Quantity(p.spectrum.flux).value) for p in pieces])
    unc = first.uncertainty
    if unc is not None:
        unc = type(unc)(np.stack([np.asarray(p.spectrum.uncertainty.array) for p in pieces]),
                        unit=unc.unit)
    mask = None if first.mask is None else np.stack([np.asarray(p.spectrum.mask)
                                                    for p in pieces])
    medium = (first.meta or {}).get("wavelength_medium")
    return Spectrum(flux=flux * u.Quantity(first.flux).unit, spectral_axis=first.spectral_axis,
                    uncertainty=unc, mask=mask,
                    meta={} if medium is None else {"wavelength_medium": medium})


# ------------------------------------------------------------------------ preprocessing

def _split_group(survey, pieces, stack, notes, timings):
    """Split one stacked group; returns {beam: (stars, 2-D spectrum)} or {} (no overlap)."""
    from .spectra.validation import prepare

    name = pieces[0].label if len(pieces) == 1 else "spectrum"
    t0 = time.perf_counter()
    try:
        parts = survey.split(stack, name=name)
    except NoOverlapError as exc:
        text = str(exc)
        text = text[len(name) + 1:] if text.startswith(name + " ") else text
        for p in pieces:
            notes[p.star].append(f"{p.label} {text}")
        return {}
    except SpectrumError:
        if len(pieces) == 1:
            raise
        for p in pieces:  # find the item at fault and say which it is
            prepare(_piece_spectrum(p), name=p.label)
        raise
    finally:
        timings["split"] += time.perf_counter() - t0
    stars = np.array([p.star for p in pieces], dtype=np.int64)
    return {beam: (stars, spec) for beam, spec in parts.items()}


def _row_arrays(spec):
    flux = np.atleast_2d(np.asarray(u.Quantity(spec.flux).value, dtype=float))
    mask = np.zeros(flux.shape, bool) if spec.mask is None else np.atleast_2d(
        np.asarray(spec.mask, dtype=bool))
    std = None if spec.uncertainty is None else np.atleast_2d(
        np.asarray(spec.uncertainty.array, dtype=float))
    return flux, mask, std


def _merge_duplicates(entries):
    """Merge the parts of stars that reach one beam through several spectra (chunks)."""
    counts = {}
    for stars, _ in entries:
        for s in stars:
            counts[int(s)] = counts.get(int(s), 0) + 1
    dup = {s for s, c in counts.items() if c > 1}
    if not dup:
        return entries
    Spectrum = spectrum_class()
    kept, chunks = [], {}
    for stars, spec in entries:
        is_dup = np.array([int(s) in dup for s in stars])
        flux, mask, std = _row_arrays(spec)
        wave = u.Quantity(spec.spectral_axis).to_value(u.AA)
        unit = u.Quantity(spec.flux).unit
        for r in np.flatnonzero(is_dup):
            chunks.setdefault(int(stars[r]), []).append(
                (wave, flux[r], mask[r], None if std is None else std[r], unit, spec.meta))
        if (~is_dup).any():
            kept.append((stars[~is_dup], _rows_of(spec, np.flatnonzero(~is_dup))))
    for star, parts in sorted(chunks.items()):
        unit = parts[0][4]
        waves, fluxes, masks, stds = [], [], [], []
        for wave, flux, mask, std, unit_k, _ in parts:
            try:
                scale = (1.0 * unit_k).to_value(unit)
            except u.UnitConversionError:
                raise SpectrumError(f"the spectra of star {star} are in incompatible flux "
                                    f"units ({unit} and {unit_k}); they cannot be combined "
                                    f"into one beam") from None
            waves.append(wave)
            fluxes.append(flux * scale)
            masks.append(mask)
            stds.append(None if std is None else std * scale)
        wave = np.concatenate(waves)
        order = np.argsort(wave, kind="stable")
        wave = wave[order]
        keep = np.concatenate([[True], np.diff(wave) > 0])  # drop repeated wavelengths
        sel = order[keep]
        flux = np.concatenate(fluxes)[sel]
        mask = np.concatenate(masks)[sel]
        std = None if any(s is None for s in stds) else np.concatenate(stds)[sel]
        from astropy.nddata import StdDevUncertainty
        merged = Spectrum(flux=flux[None] * unit, spectral_axis=wave[keep] * u.AA,
                          uncertainty=None if std is None else StdDevUncertainty(std[None]
                                                                                 * unit),
                          mask=mask[None], meta=dict(parts[0][5] or {}))
        kept.append((np.array([star], dtype=np.int64), merged))
    return kept


def _usable_rows(spec, beam, stars, labels, notes):
    """Rows a beam part can be processed with; notes for the others."""
    flux, mask, _ = _row_arrays(spec)
    bad = mask | ~np.isfinite(flux)
    npix = flux.shape[1]
    frac = bad.mean(axis=1)
    good = npix - bad.sum(axis=1)
    positive = np.any((flux > 0) & ~bad, axis=1)
    ok = (frac <= MAX_BAD_FRACTION) & (good >= MIN_PIXELS) & positive
    for r in np.flatnonzero(~ok):
        if frac[r] > MAX_BAD_FRACTION:
            why = f"{frac[r]:.0%} of its {npix} pixels are masked or not finite"
        elif good[r] < MIN_PIXELS:
            why = f"only {good[r]} usable pixels"
        else:
            why = "the flux is zero or negative everywhere"
        notes[int(stars[r])].append(f"{labels[int(stars[r])]}: beam {beam} not used: {why}")
    return ok


def _snr(flux, std, mask):
    """SNR per row of normalized spectra: median 1/sigma, or a robust residual estimate."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if std is not None:
            inv = np.where(mask | ~(std > 0), np.nan, 1.0 / std)
            if np.any(np.isfinite(inv)):
                import warnings
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    return np.nanmedian(inv, axis=1)
        resid = flux[:, 1:-1] - 0.5 * (flux[:, :-2] + flux[:, 2:])
        bad = mask[:, 1:-1] | mask[:, :-2] | mask[:, 2:]
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sigma = 1.482602218505602 * np.nanmedian(np.where(bad, np.nan, np.abs(resid)),
                                                     axis=1) / math.sqrt(1.5)
            level = np.nanmedian(np.where(mask, np.nan, flux), axis=1)
        return level / sigma


def _normalize(spec, fitter, rows_label, notes, stars):
    """Normalize a batch; a batch whose fit fails is retried row by row."""
    from .continuum import normalize
    from .continuum.base import ContinuumError

    try:
        return normalize(spec, fitter=fitter), np.ones(len(stars), bool)
    except ContinuumError:
        if len(stars) == 1:
            raise
    flux, mask, std = _row_arrays(spec)
    ok = np.ones(len(stars), bool)
    outs = []
    for r in range(len(stars)):
        try:
            outs.append(normalize(_rows_of(spec, [r]), fitter=fitter))
        except ContinuumError as exc:
            ok[r] = False
            notes[int(stars[r])].append(f"{rows_label[int(stars[r])]}: continuum fit "
                                        f"failed: {exc}")
    if not outs:
        return None, ok
    Spectrum = spectrum_class()
    fl = np.concatenate([np.atleast_2d(o.flux.value) for o in outs])
    mk = np.concatenate([np.atleast_2d(np.asarray(o.mask)) for o in outs])
    un = None
    if outs[0].uncertainty is not None:
        from astropy.nddata import StdDevUncertainty
        un = StdDevUncertainty(np.concatenate([np.atleast_2d(o.uncertainty.array)
                                               for o in outs]))
    return Spectrum(flux=fl * u.one, spectral_axis=outs[0].spectral_axis, uncertainty=un,
                    mask=mk), ok


def _preprocess_beam(model, survey, fitter, beam, stars, spec, labels, notes, timings):
    """Spikes -> resample -> continuum for one beam part; returns (stars, X, snr, masked)."""
    from .augment import resample

    grid = model.wavelength(beam).to_value(u.AA)
    ok = _usable_rows(spec, beam, stars, labels, notes)
    if not ok.any():
        return None
    if not ok.all():
        spec, stars = _rows_of(spec, np.flatnonzero(ok)), stars[ok]

    t0 = time.perf_counter()
    clean = survey.remove_spikes(spec, name=f"beam {beam}")
    t1 = time.perf_counter()
    timings["spikes"] += t1 - t0

    wave = u.Quantity(clean.spectral_axis).to_value(u.AA)
    step = float(np.median(np.diff(grid)))
    if wave.size == grid.size and np.allclose(wave, grid, rtol=0, atol=1e-6 * step):
        inside = np.ones(grid.size, bool)
        resampled = clean
    else:
        inside = (grid >= wave[0]) & (grid <= wave[-1])
        if inside.sum() < MIN_PIXELS:
            for s in stars:
                notes[int(s)].append(f"{labels[int(s)]}: beam {beam} not used: the spectrum "
                                     f"({wave[0]:.6g}-{wave[-1]:.6g} Å) covers only "
                                     f"{int(inside.sum())} pixels of the model grid")
            timings["resample"] += time.perf_counter() - t1
            return None
        resampled = resample(clean, grid[inside] * u.AA)
    t2 = time.perf_counter()
    timings["resample"] += t2 - t1

    norm, ok = _normalize(resampled, fitter, labels, notes, stars)
    if norm is None:
        timings["continuum"] += time.perf_counter() - t2
        return None
    stars = stars[ok]
    flux, mask, std = _row_arrays(norm)
    snr = _snr(flux, std, mask)
    X = np.ones((len(stars), grid.size), dtype=np.float32)
    M = np.ones((len(stars), grid.size), dtype=bool)
    X[:, inside] = flux
    M[:, inside] = mask
    bad_rows = ~np.all(np.isfinite(X), axis=1)
    if bad_rows.any():  # should not happen after prepare's interpolation; never feed NaN
        for s in stars[bad_rows]:
            notes[int(s)].append(f"{labels[int(s)]}: beam {beam} not used: the normalized "
                                 f"flux is not finite")
        stars, X, M, snr = stars[~bad_rows], X[~bad_rows], M[~bad_rows], snr[~bad_rows]
    timings["continuum"] += time.perf_counter() - t2
    return stars, X, snr, M.mean(axis=1)


# ------------------------------------------------------------------------ network etc.

def _predict(model, beam, X):
    """Network outputs for X in fixed blocks of NETWORK_ROWS rows (padded with ones)."""
    outs = []
    for start in range(0, len(X), NETWORK_ROWS):
        block = X[start:start + NETWORK_ROWS]
        k = len(block)
        if k < NETWORK_ROWS:
            block = np.concatenate([block, np.ones((NETWORK_ROWS - k, X.shape[1]),
                                                   np.float32)])
        out = model.predict(beam, block, batch_size=NETWORK_ROWS)
        outs.append({name: v[:k] for name, v in out.items()})
    return {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}


def _far_threshold(model, beam, head):
    """FAR_PERCENTILE of the training set's leave-one-star-out nearest-neighbour distances.

    For every stored training embedding, the distance to the nearest stored
    embedding of a *different* star (different labels: the augmented copies
    of the same label point are left out with it).  Computed once per model,
    beam and head.
    """
    cache = _FAR.setdefault(model, {})
    key = (beam, head)
    if key not in cache:
        record = model.embeddings(beam)
        stored = np.asarray(record["embeddings"][head], dtype=np.float64)
        labels = np.asarray(record["labels"], dtype=np.float64)
        _, star = np.unique(labels, axis=0, return_inverse=True)
        star = np.asarray(star).ravel()
        nearest = np.full(len(stored), np.inf)
        sq = np.einsum("ij,ij->i", stored, stored)
        for start in range(0, len(stored), 512):
            block = stored[start:start + 512]
            d2 = sq[start:start + 512, None] + sq[None, :] - 2.0 * block @ stored.T
            d2[star[start:start + 512, None] == star[None, :]] = np.inf
            nearest[start:start + 512] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
        finite = nearest[np.isfinite(nearest)]
        cache[key] = float(np.percentile(finite, FAR_PERCENTILE)) if finite.size else math.inf
    return cache[key]


def _tension(bins, pmfs):
    """Largest pairwise |median difference| / combined width between beam PMFs, per star."""
    stats = [bins.decode(p) for p in pmfs]
    floor2 = (bins.edges[1] - bins.edges[0]) ** 2 / 12.0
    worst = np.zeros(len(pmfs[0]))
    pair = [None] * len(pmfs[0])
    for a in range(len(pmfs)):
        for b in range(a + 1, len(pmfs)):
            sa, sb = stats[a], stats[b]
            width = np.sqrt(sa["std"] ** 2 + sb["std"] ** 2 + 2 * floor2)
            t = np.abs(sa["median"] - sb["median"]) / width
            t = np.where(np.isfinite(t), t, 0.0)
            for i in np.flatnonzero(t > worst):
                pair[i] = (a, b)
            worst = np.maximum(worst, t)
    return worst, pair, stats


def _check_int(name, value, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; received {name}={value!r}")
    return int(value)


def fit(spectrum, model=None, survey=None, *, k=5, batch_size=256, fitter_options=None,
        progress=False):
    """Stellar parameters, with their probability distributions, from spectra.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`, `specutils.SpectrumList`, dict or list
        * a `~specutils.Spectrum` (or ``Spectrum1D``) with 1-D flux: one star,
          covering one or several beams;
        * a `~specutils.Spectrum` with 2-D flux (stars x pixels): a batch on
          a common wavelength axis;
        * a `~specutils.SpectrumList`, or a dict such as the one
          :func:`remap.examples.load_example` returns: one star, one spectrum
          per beam (or per wavelength chunk; chunks of one beam are joined);
        * a list or tuple of the above: a batch, one star per item.

        Any spectral unit and flux unit; masks and uncertainties are used.
        ``meta["wavelength_medium"]`` (``"air"``/``"vacuum"``) is honoured.
    model : None, str, path or `remap.model.RemapModel`
        None for the default model (:func:`default_model`); a path is loaded
        once per process and cached.
    survey : None, str or survey object
        The survey the spectra come from; by default the model's.
    k : int
        Nearest training spectra to return per beam and parameter.
    batch_size : int
        Stars pre-processed together (memory grows with it).
    fitter_options : dict, optional
        Options overriding the model's continuum-fitter configuration (e.g.
        ``{"mode": "faithful"}``).  The default reproduces the training
        spectra's normalization; changing it makes the inputs differ from them.
    progress : bool
        Show a progress bar (tqdm) over the stars.

    Returns
    -------
    result : `remap.FitResult`
        ``result.is_batch`` is False for a single star.  Stars that no model
        beam covers get NaN values and `remap.Flag.NO_COVERAGE`, with the
        reason in ``result.messages``.

    Raises
    ------
    remap.SpectrumError
        Invalid input: no spectral unit, mostly masked or non-finite flux,
        an empty or too short spectrum, bad shapes.  For a batch the message
        names the item (``spectra[3]``, ``spectrum[3]``).
    TypeError
        An input that is not a spectrum, or a bad ``model``/``survey``.
    ValueError
        Bad ``k`` or ``batch_size``; a model whose beams the survey lacks.
    remap.model.ArtifactError
        The model cannot be loaded.

    Examples
    --------
    >>> import remap
    >>> from remap.examples import load_example
    >>> result = remap.fit(load_example())          # doctest: +SKIP
    >>> result.teff.median, result.flag_names()     # doctest: +SKIP
    (<Quantity 5779.3 K>, [])
    """
    k = _check_int("k", k, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    stars, is_batch = _parse(spectrum)
    model = _resolve_model(model)
    survey = _resolve_survey(survey, model)
    fitter = _fitter(model, fitter_options)
    n = len(stars)
    labels = {i: (pieces[0].label.split(" (")[0]) for i, pieces in enumerate(stars)}
    for beam in model.beams:
        if model.has_embeddings(beam):
            stored = len(model.embeddings(beam)["labels"])
            if k > stored:
                raise ValueError(f"k={k} exceeds the {stored} training embeddings stored for "
                                 f"beam {beam!r}")

    timings = {"split": 0.0, "spikes": 0.0, "resample": 0.0, "continuum": 0.0}
    notes = [[] for _ in range(n)]
    collected = {beam: [] for beam in model.beams}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, unit="stars", desc="remap fit")
    try:
        for start in range(0, n, batch_size):
            chunk = stars[start:start + batch_size]
            groups = {}
            for pieces in chunk:
                for p in pieces:
                    groups.setdefault(_group_key(p), []).append(p)
            per_beam = {beam: [] for beam in model.beams}
            for pieces in groups.values():
                t0 = time.perf_counter()
                stack = _stack(pieces)
                timings["split"] += time.perf_counter() - t0
                for beam, entry in _split_group(survey, pieces, stack, notes, timings).items():
                    if beam in per_beam:
                        per_beam[beam].append(entry)
            for beam, entries in per_beam.items():
                for b_stars, spec in _merge_duplicates(entries):
                    out = _preprocess_beam(model, survey, fitter, beam, b_stars, spec, labels,
                                           notes, timings)
                    if out is not None:
                        collected[beam].append(out)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()

    heads = model.heads
    beam_pmfs = {h.name: {} for h in heads}
    embeddings = {}
    snr, masked, used = {}, {}, {}
    for beam in model.beams:
        parts = collected[beam]
        rows = (np.concatenate([p[0] for p in parts]) if parts
                else np.empty(0, np.int64))
        used[beam] = rows
        snr[beam] = np.full(n, np.nan)
        masked[beam] = np.full(n, np.nan)
        t0 = time.perf_counter()
        if len(rows):
            X = np.concatenate([p[1] for p in parts])
            snr[beam][rows] = np.concatenate([p[2] for p in parts])
            masked[beam][rows] = np.concatenate([p[3] for p in parts])
            out = _predict(model, beam, X)
        else:
            out = {}
        for h in heads:
            pm = np.full((n, h.n_bins), np.nan)
            if len(rows):
                pm[rows] = out[h.name]
            beam_pmfs[h.name][beam] = pm
        embeddings[beam] = {h.name: out.get(f"{h.name}_embedding") for h in heads}
        timings[f"network {beam}"] = time.perf_counter() - t0

    # conflation, decoding and flags
    t0 = time.perf_counter()
    from .labels import conflate

    flags = np.zeros(n, dtype=np.int64)
    beams_used = [tuple(b for b in model.beams if np.any(used[b] == i)) for i in range(n)]
    in_beam = {b: np.zeros(n, bool) for b in model.beams}
    for b in model.beams:
        in_beam[b][used[b]] = True
    none = np.array([len(b) == 0 for b in beams_used])
    for i in np.flatnonzero(none):
        flags[i] |= Flag.NO_COVERAGE
        if not notes[i]:
            notes[i].append(f"{labels[i]}: no beam of the model could be used")
    for b in model.beams:
        miss = ~in_beam[b] & ~none
        flags[miss] |= Flag.MISSING_BEAM
        for i in np.flatnonzero(miss):
            if not any(f"beam {b} " in m for m in notes[i]):
                notes[i].append(f"beam {b} not covered: parameters from beam(s) "
                                f"{', '.join(beams_used[i])} only")
        with np.errstate(invalid="ignore"):
            low = in_beam[b] & (snr[b] < LOW_SNR)
            heavy = in_beam[b] & (masked[b] > MASKED_FRACTION)
        flags[low] |= Flag.LOW_SNR
        flags[heavy] |= Flag.MASKED
        for i in np.flatnonzero(low):
            notes[i].append(f"beam {b}: SNR {snr[b][i]:.1f} < {LOW_SNR:g}")
        for i in np.flatnonzero(heavy):
            notes[i].append(f"beam {b}: {masked[b][i]:.0%} of the pixels masked or not "
                            f"covered (> {MASKED_FRACTION:.0%})")

    pmfs, summaries = {}, {}
    for h in heads:
        bins = model.bins[h.name]
        per_beam = [beam_pmfs[h.name][b] for b in model.beams]
        conf, disjoint = conflate(*per_beam, return_flags=True)
        disjoint = np.atleast_1d(disjoint)
        if disjoint.any():  # no bin in common: report the beams' average, flagged
            with np.errstate(invalid="ignore"):
                stack = np.stack(per_beam)
                mix = np.nanmean(stack, axis=0)
            mix = mix / mix.sum(axis=1, keepdims=True)
            conf[disjoint] = mix[disjoint]
            flags[disjoint] |= Flag.BEAMS_DISAGREE
            for i in np.flatnonzero(disjoint):
                notes[i].append(f"{h.label}: the beams' PMFs share no bin; the reported PMF "
                                f"is their average")
        if len(model.beams) > 1:
            worst, pair, stats = _tension(bins, per_beam)
            tense = (worst > TENSION_SIGMA) & ~disjoint
            flags[tense] |= Flag.BEAMS_DISAGREE
            unit = h.unit.to_string()
            for i in np.flatnonzero(tense):
                a, b = pair[i]
                ba, bb = model.beams[a], model.beams[b]
                notes[i].append(
                    f"{h.label}: beams {ba} and {bb} disagree: {stats[a]['median'][i]:.4g} "
                    f"vs {stats[b]['median'][i]:.4g} {unit} ({worst[i]:.1f} sigma)")
        edge_lo = conf[:, :EDGE_BINS].sum(axis=1)
        edge_hi = conf[:, -EDGE_BINS:].sum(axis=1)
        with np.errstate(invalid="ignore"):
            edge = (edge_lo > EDGE_MASS) | (edge_hi > EDGE_MASS)
        flags[edge] |= Flag.EDGE_PMF
        unit = h.unit.to_string()
        for i in np.flatnonzero(edge):
            side, mass, lim = (("lowest", edge_lo[i], f"below {bins.edges[EDGE_BINS]:.4g}")
                               if edge_lo[i] > EDGE_MASS else
                               ("highest", edge_hi[i], f"above {bins.edges[-EDGE_BINS - 1]:.4g}"))
            notes[i].append(f"{h.label}: {mass:.0%} of the probability in the {side} "
                            f"{EDGE_BINS} bins ({lim} {unit}): probably outside the training "
                            f"domain")
        pmfs[h.name] = conf
        summaries[h.name] = bins.decode(conf)
    timings["conflation"] = time.perf_counter() - t0

    # nearest training spectra in embedding space
    t0 = time.perf_counter()
    from .model.artifact import Neighbours

    neighbours = {}
    for b in model.beams:
        if not model.has_embeddings(b):
            continue
        record = model.embeddings(b)
        names = list(record["label_names"])
        neighbours[b] = {}
        rows = used[b]
        far = np.zeros(n, bool)
        far_text = {}
        for h in heads:
            if h.name not in record["embeddings"]:
                continue
            idx = np.full((n, k), -1, dtype=np.int64)
            dist = np.full((n, k), np.nan)
            lab = np.full((n, k, len(names)), np.nan)
            emb = embeddings[b].get(h.name)
            if len(rows) and emb is not None:
                nb = model.nearest(b, h.name, emb, k=k)
                idx[rows], dist[rows], lab[rows] = nb.indices, nb.distances, nb.labels
                limit = _far_threshold(model, b, h.name)
                beyond = nb.distances[:, 0] > limit
                far[rows] |= beyond
                for r in np.flatnonzero(beyond):
                    far_text.setdefault(int(rows[r]), []).append(
                        f"{h.name} {nb.distances[r, 0]:.3g} > {limit:.3g}")
            neighbours[b][h.name] = Neighbours(idx, dist, lab, names)
        flags[far] |= Flag.FAR_FROM_TRAINING
        for i in np.flatnonzero(far):
            notes[i].append(f"beam {b}: far from the training set (distance to the nearest "
                            f"training embedding beyond the {FAR_PERCENTILE:g}th percentile of "
                            f"the training set's own: {', '.join(far_text[i])})")
    timings["neighbours"] = time.perf_counter() - t0

    from . import __version__
    heads_meta = [{"name": h.name, "label": h.label, "unit": h.unit.to_string(),
                   "edges": model.bins[h.name].edges} for h in heads]
    meta = {"model": str(model.path), "model_name": model.path.name,
            "survey": getattr(survey, "name", None), "remap_version": __version__}
    return FitResult(heads=heads_meta, pmfs=pmfs, summaries=summaries, beam_pmfs=beam_pmfs,
                     beams=model.beams, beams_used=beams_used, snr=snr,
                     masked_fraction=masked, neighbours=neighbours, flags=flags,
                     messages=["; ".join(m) for m in notes], is_batch=is_batch, meta=meta,
                     timings=timings)
