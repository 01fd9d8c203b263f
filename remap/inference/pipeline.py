"""Fit stellar parameters to spectra: :func:`fit`, :func:`fit_iter`, :func:`pipeline`.

:func:`fit_iter` reads the caller's stars from any iterable, a chunk of
``batch_size`` at a time, runs each chunk through the stages of
:mod:`remap.inference.stages` (built once per call from the model's manifest,
:func:`~remap.inference.stages.build_pipeline`) and yields one
`remap.FitResult` per chunk; nothing but small per-model caches outlives a
chunk, so memory does not grow with the number of stars.  :func:`fit` runs
:func:`fit_iter` and concatenates.

Stages work on array batches (`remap.inference.Batch`), not Spectrum
objects: the ``validate`` stage converts each input once, rows sharing a
wavelength grid go through every later stage together whatever the input's
shape, and the networks run in fixed blocks of
:data:`~remap.inference.stages.NETWORK_ROWS`, so a star's result does not
depend on which other stars share its chunk.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
from specutils import SpectrumList

from .. import __version__
from .._util.threads import share as share_threads
from ..catalog import read_spectrum_file
from ..exceptions import SpectrumError
from ..model.cache import DEFAULT_MODEL_PATH, cached_model, default_model, resolve_model
from ..plugins import get_survey
from ..spectra.validation import spectrum_class
from .context import Context
from .result import FitResult
from .stages import NETWORK_ROWS, Item, _Rows, build_pipeline

__all__ = ["DEFAULT_MODEL_PATH", "NETWORK_ROWS", "fit", "fit_iter", "default_model",
           "pipeline", "cached_model", "resolve_survey", "ERRORS", "CHUNKS_IN_FLIGHT"]

#: Values of ``errors=``: ``"flag"`` (a bad item becomes a NaN row flagged
#: BAD_INPUT) or ``"raise"`` (the first bad item raises).
ERRORS = ("flag", "raise")


def resolve_survey(survey, model):
    """The survey a ``survey=`` argument names (None: the model's), checked against the model.

    Raises
    ------
    TypeError
        Not a survey name or survey object.
    ValueError
        The survey lacks a beam of the model.
    remap.UnknownPluginError
        No survey of that name.
    """
    if survey is None:
        survey = model.survey
    if isinstance(survey, str):
        survey = get_survey(survey)
    for attr in ("split", "remove_spikes", "beams", "wavelength_medium"):
        if not hasattr(survey, attr):
            raise TypeError(f"survey must be a survey name or a survey object (with "
                            f"split, remove_spikes, beams and wavelength_medium); received "
                            f"{type(survey).__name__} without {attr!r}")
    missing = [b for b in model.beams if b not in survey.beams]
    if missing:
        raise ValueError(f"the model's beams {missing} are not beams of survey "
                         f"{getattr(survey, 'name', survey)!r} (beams: {list(survey.beams)})")
    return survey


def pipeline(model=None, survey=None, fitter_options=None, **options):
    """The stages :func:`fit` runs with a model, and what each does.

    Parameters
    ----------
    model, survey, fitter_options, **options
        As for :func:`fit`.

    Returns
    -------
    steps : list of (str, str)
        ``(stage, description)`` in order: validate, split, spikes, resample,
        continuum, network, conflation, flags, neighbours (the order of
        :data:`remap.inference.stages.DEFAULT_STAGES`).
    """
    model = resolve_model(model)
    survey = resolve_survey(survey, model)
    return build_pipeline(model, survey, fitter_options=fitter_options, **options).describe()


def _check_int(name, value, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; received {name}={value!r}")
    return int(value)


def _is_star(obj):
    return isinstance(obj, (spectrum_class(), SpectrumList, Mapping))


def _items(stars) -> tuple[Iterator[Item], bool, int | None]:
    """The caller's input as items (one per star), whether it is a batch, and its length."""
    if isinstance(stars, (str, os.PathLike)):
        return iter([Item(0, str(stars), stars)]), False, 1
    if isinstance(stars, spectrum_class()):
        ndim = np.ndim(stars.flux)
        if ndim == 2:
            n = np.shape(stars.flux)[0]
            if n == 0:
                raise SpectrumError("no spectra to fit: the batch has 0 rows")
            rows = _Rows(stars, "spectrum")
            return (Item(i, f"spectrum[{i}]", rows, i) for i in range(n)), True, n
        if ndim != 1:
            raise SpectrumError(f"spectrum: the flux has {ndim} dimensions, shape "
                                f"{np.shape(stars.flux)}; expected 1 (one star) or 2 (a "
                                f"batch: stars x pixels)")
        return iter([Item(0, "spectrum", stars)]), False, 1
    if isinstance(stars, (SpectrumList, Mapping)):
        return iter([Item(0, "spectrum", stars)]), False, 1
    if isinstance(stars, np.ndarray) or not isinstance(stars, Iterable):
        raise TypeError(f"expected a specutils Spectrum (or Spectrum1D), a SpectrumList, a "
                        f"dict of beam spectra, a path, or a list or iterable of those; "
                        f"received {type(stars).__name__}")
    n = len(stars) if hasattr(stars, "__len__") else None
    if n == 0:
        raise SpectrumError("no spectra to fit: the list is empty")
    return (Item(i, f"spectra[{i}]", obj) for i, obj in enumerate(stars)), True, n


def _read(item):
    """A path item read with the catalogue's reader (an error is kept for Validate)."""
    if not isinstance(item.obj, (str, os.PathLike)):
        return item
    label = f"{item.label} ({os.fspath(item.obj)})" if item.label != str(item.obj) \
        else item.label
    try:
        obj = read_spectrum_file(item.obj)
    except (OSError, SpectrumError, ValueError) as exc:
        text = str(exc)
        if item.label != str(item.obj):   # name the item by its place in the input
            text = f"{item.label}: {text}"
        try:
            obj = type(exc)(text)
        except Exception:  # noqa: BLE001 - an exception type with another signature
            obj = SpectrumError(text)
        obj.__cause__ = exc
    return Item(item.index, label, obj, item.row)


def _result(context, model, survey, pipe, is_batch):
    """The FitResult of one chunk from its context."""
    n = context.n
    heads = model.heads
    failed = context.failed
    for h in heads:   # a star given up keeps nothing (NaN rows)
        context.pmfs[h.name][failed] = np.nan
        for key in context.summaries[h.name]:
            context.summaries[h.name][key][failed] = np.nan
    beams_used = [tuple(b for b in model.beams if context.used[b][i]) for i in range(n)]
    heads_meta = [{"name": h.name, "label": h.label, "unit": h.unit.to_string(),
                   "edges": model.bins[h.name].edges} for h in heads]
    meta = {"model": str(model.path), "model_name": model.path.name,
            "survey": getattr(survey, "name", None), "remap_version": __version__}
    return FitResult(heads=heads_meta, pmfs=context.pmfs, summaries=context.summaries,
                     beam_pmfs=context.beam_pmfs, beams=model.beams, beams_used=beams_used,
                     snr=context.snr, masked_fraction=context.masked_fraction,
                     neighbours=context.neighbours, flags=context.flags,
                     messages=context.messages(), is_batch=is_batch, meta=meta,
                     timings=context.timings, values=context.values, columns=context.columns,
                     index=context.index, notes=context.notes_of())


#: Chunks :func:`fit_iter` and :func:`fit` fit at once by default (``chunks_in_flight``).
CHUNKS_IN_FLIGHT = 2


def _fit_chunks(stars, model, survey, batch_size, errors, progress, options,
                chunks_in_flight=1):
    batch_size = _check_int("batch_size", batch_size, 1)
    in_flight = _check_int("chunks_in_flight", chunks_in_flight, 1)
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}; received errors={errors!r}")
    items, is_batch, total = _items(stars)
    model = resolve_model(model)
    survey = resolve_survey(survey, model)
    pipe = build_pipeline(model, survey, **options)
    # a single star has nothing else to keep: its error is raised
    mode = errors if is_batch else "raise"
    if not is_batch or (total is not None and total <= batch_size):
        in_flight = 1       # one chunk: nothing to overlap
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="stars", desc="remap fit")

    def chunks():        # read in the calling thread only (the caller's iterator)
        while True:
            chunk = [_read(it) for it in itertools.islice(items, batch_size)]
            if not chunk:
                return
            yield chunk

    def run(chunk):
        context = Context([it.label for it in chunk], [it.index for it in chunk],
                          model.beams, model.heads, errors=mode)
        # chunks in flight share the kernel threads (on 2 cores: each its own)
        with share_threads(in_flight):
            pipe.run(chunk, context)
        return _result(context, model, survey, pipe, is_batch)

    try:
        if in_flight == 1:
            for chunk in chunks():
                yield run(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            return
        # chunks in threads, results in order: while one chunk is in the single-threaded
        # NumPy parts of a stage, the other keeps the second core busy
        with concurrent.futures.ThreadPoolExecutor(in_flight,
                                                   thread_name_prefix="remap-fit") as pool:
            pending = collections.deque()
            source = chunks()
            try:
                while True:
                    while len(pending) < in_flight:
                        chunk = next(source, None)
                        if chunk is None:
                            break
                        pending.append((len(chunk), pool.submit(run, chunk)))
                    if not pending:
                        return
                    n, future = pending.popleft()
                    yield future.result()
                    if bar is not None:
                        bar.update(n)
            finally:        # an error or a consumer that stops: drop the chunks not started
                for _, future in pending:
                    future.cancel()
    finally:
        if bar is not None:
            bar.close()


def fit_iter(stars, model=None, survey=None, *, batch_size=256, errors="flag", k=5,
             fitter_options=None, progress=False, chunks_in_flight=CHUNKS_IN_FLIGHT,
             **options) -> Iterator[FitResult]:
    """Fit stars from any iterable, yielding one `remap.FitResult` per chunk of stars.

    Memory is bounded by ``batch_size``: the stars are read from ``stars`` a
    chunk at a time, and nothing but small per-model caches is kept between
    chunks.

    Parameters
    ----------
    stars : iterable
        Stars, each a `~specutils.Spectrum` (1-D), a
        `~specutils.SpectrumList` or dict of beam spectra, or a path to a
        spectrum file (read with :func:`remap.read_spectrum_file`); e.g. a
        generator of file paths.  A single star or a 2-D spectrum (one star
        per row) is accepted too.
    model, survey, k, fitter_options, **options
        As for :func:`fit`.
    batch_size : int
        Stars per chunk (per yielded result).
    errors : {"flag", "raise"}
        ``"flag"``: an item that cannot be used gives a NaN row flagged
        `remap.Flag.BAD_INPUT` whose message is the error, and the others
        are fitted; ``"raise"``: the first such item raises.
    progress : bool
        Show a progress bar (tqdm) over the stars.
    chunks_in_flight : int
        Chunks fitted at once, each in a thread of its own (default 2; 1: one
        after the other).  The results and their order are the same; while
        one chunk is in the single-threaded parts of the pipeline the other
        keeps a second core busy (``python -m benchmarks fit``: about 1.2x on
        2 cores).  ``stars`` is read in the calling thread, up to
        ``chunks_in_flight`` chunks ahead of the result being yielded; the
        memory of the intermediate arrays grows with it.

    Yields
    ------
    result : `remap.FitResult`
        A batch; ``result.index`` gives each star's position in ``stars``.

    Raises
    ------
    remap.SpectrumError
        With ``errors="raise"``: an invalid item (the message names it by its
        position in ``stars``: ``spectra[300]``).
    TypeError, ValueError
        Bad arguments (see :func:`fit`).
    """
    yield from _fit_chunks(stars, model, survey, batch_size, errors, progress,
                           {"k": k, "fitter_options": fitter_options, **options},
                           chunks_in_flight)


def fit(spectrum, model=None, survey=None, *, k=5, batch_size=256, fitter_options=None,
        progress=False, errors="flag", chunks_in_flight=CHUNKS_IN_FLIGHT,
        **options) -> FitResult:
    """Stellar parameters, with their probability distributions, from spectra.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`, `specutils.SpectrumList`, dict, path or iterable
        * a `~specutils.Spectrum` (or ``Spectrum1D``) with 1-D flux: one star,
          covering one or several beams;
        * a `~specutils.Spectrum` with 2-D flux (stars x pixels): a batch on
          a common wavelength axis;
        * a `~specutils.SpectrumList`, or a dict such as the one
          :func:`remap.examples.load_example` returns: one star, one spectrum
          per beam (or per wavelength chunk: chunks of one beam that do not
          overlap are joined; spectra of one beam that overlap are an error);
        * a path to a spectrum file: one star;
        * a list, tuple or other iterable of the above: a batch, one star per
          item.

        Any spectral unit and flux unit; masks and uncertainties are used
        (pixels with a zero, negative or non-finite uncertainty are masked;
        an uncertainty that is zero everywhere is taken as not given, with a
        note).  ``meta["wavelength_medium"]`` (``"air"``/``"vacuum"``) is
        honoured.
    model : None, str, path or `remap.model.RemapModel`
        None for the default model (:func:`default_model`); a path is loaded
        once per process and cached.
    survey : None, str or survey object
        The survey the spectra come from; by default the model's.
    k : int
        Nearest training spectra to return per beam and parameter.
    batch_size : int
        Stars processed together (memory grows with it; results do not
        depend on it).
    fitter_options : dict, optional
        Options overriding the model's continuum-fitter configuration (e.g.
        ``{"mode": "faithful"}``).  The default reproduces the training
        spectra's normalization; changing it makes the inputs differ from them.
    progress : bool
        Show a progress bar (tqdm) over the stars.
    errors : {"flag", "raise"}
        For a batch: ``"flag"`` gives a bad item a NaN row flagged
        `remap.Flag.BAD_INPUT` (its message is the error) and fits the
        others; ``"raise"`` raises at the first bad item.  A single star
        always raises.
    chunks_in_flight : int
        Chunks of ``batch_size`` stars fitted at once in threads (see
        :func:`fit_iter`; 1: one after the other).
    **options
        Options of the pipeline's stages (see :func:`pipeline` and
        :mod:`remap.inference.stages`; e.g. ``min_coverage=``).

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
        an empty or too short spectrum, bad shapes, overlapping spectra of
        one beam -- for a single star, or for a batch with
        ``errors="raise"`` (the message names the item by its position in
        the input: ``spectra[3]``, ``spectrum[3]``).
    TypeError
        An input that is not a spectrum (single star or ``errors="raise"``),
        a bad ``model``/``survey``, an unknown option.
    ValueError
        Bad ``k``, ``batch_size`` or ``errors``; a model whose beams the
        survey lacks.
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
    parts = list(_fit_chunks(spectrum, model, survey, batch_size, errors, progress,
                             {"k": k, "fitter_options": fitter_options, **options},
                             chunks_in_flight))
    if len(parts) == 1:
        return parts[0]
    return FitResult.concatenate(parts, is_batch=parts[0].is_batch)
