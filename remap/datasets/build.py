"""Building synthetic training sets: label draws, augmentation of each label point, shards.

:func:`build_synthetic` writes a `remap.datasets.Dataset` (:mod:`remap.datasets.format`)
from a synthetic library: every label point is augmented (:func:`remap.augment.augment`),
continuum-normalized and written shard by shard, locally in processes or as Dask tasks.
Each label point has its own seed (:func:`label_point_seed`), so the result does not
depend on the number of workers or on where a build was interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Table
from tqdm import tqdm

from .. import augment as aug
from .._util.validators import check_int, check_real
from ..augment import augment
from ..continuum import normalize
from ..heads import FEH, LOGG, TEFF
from ..model.templates import build_templates, mean_spectra
from ..plugins import get_continuum_fitter
from ..spectra.validation import spectrum_class
from .format import DEFAULT_METADATA_FIELDS, DatasetError, DatasetWriter

__all__ = ["LIBRARY_LABELS", "draw_labels", "grid_labels", "label_point_seed", "build_synthetic",
           "limit_blas_threads"]


#: Columns of the label points of a synthetic set (library parameters).
LIBRARY_LABELS = ("teff", "logg", "feh", "alpha")


def draw_labels(domain, n, seed, *, vary_alpha=False):
    """``n`` label points drawn uniformly inside a library's `~remap.libraries.base.Domain`.

    Parameters
    ----------
    domain : `remap.libraries.base.Domain`
    n : int
    seed : int
        The draws come from ``numpy.random.default_rng(seed)`` in row order,
        so the first ``m`` points of a larger draw are the points of a draw of
        ``m`` with the same seed.
    vary_alpha : bool
        Draw [α/Fe] within the domain too.  By default it is 0 (inside the
        domain's range) or the range's nearest end: the paper trains on the
        solar-scaled PHOENIX subset (METHOD.md lists no [α/Fe] range).

    Returns
    -------
    labels : `~astropy.table.Table`
        Columns ``teff``, ``logg``, ``feh``, ``alpha``.
    """
    n = check_int("n", n, 1)
    lo = np.array([getattr(domain, k)[0] for k in LIBRARY_LABELS], dtype=float)
    hi = np.array([getattr(domain, k)[1] for k in LIBRARY_LABELS], dtype=float)
    values = lo + (hi - lo) * np.random.default_rng(seed).random((int(n), len(LIBRARY_LABELS)))
    if not vary_alpha:
        values[:, LIBRARY_LABELS.index("alpha")] = min(max(0.0, lo[-1]), hi[-1])
    return Table(values, names=LIBRARY_LABELS)


def grid_labels(library):
    """The grid points of a library as a table with columns ``teff, logg, feh, alpha``.

    Raises
    ------
    DatasetError
        The library is not a grid.
    """
    try:
        grid = library.grid
    except NotImplementedError as exc:
        raise DatasetError(f"the {library.name!r} library has no grid points ({exc}); draw "
                           "labels with --n instead") from None
    table = Table()
    for name in LIBRARY_LABELS:
        if name in grid.colnames:
            table[name] = np.asarray(grid[name], dtype=float)
        elif name == "alpha":
            table[name] = np.zeros(len(grid))
        else:
            raise DatasetError(f"the {library.name!r} library grid has no column {name!r}")
    return table


def label_point_seed(seed, index):
    """The integer seed of label point ``index`` of a build with root ``seed``.

    Beam ``b`` (position in the survey's beam order) of that label point is
    augmented with ``SeedSequence(label_point_seed, spawn_key=(b,))``; see
    :func:`remap.augment.augment`.
    """
    return int(np.random.SeedSequence(int(seed), spawn_key=(int(index),))
               .generate_state(1, np.uint64)[0])


#: Spawn key of a label point's microturbulence draw (beams use their position, 0, 1, ...).
_VMICRO_SPAWN_KEY = 1_000_003
#: Floor of a drawn microturbulence, km/s.
VMICRO_MIN = 0.3


def label_point_vmicro(library, labels_row, lp_seed, sigma):
    """The microturbulence (km/s) of a label point with the nuisance draw ``sigma``.

    The library's own value at the labels (its relation or fixed value,
    ``library.vmicro_at``) plus a Gaussian draw of ``sigma`` km/s from
    ``SeedSequence(lp_seed, spawn_key=(_VMICRO_SPAWN_KEY,))``, at least
    :data:`VMICRO_MIN`.  The beams' augmentation seeds are not touched.
    """
    base = float(library.vmicro_at(labels_row["teff"], labels_row["logg"], labels_row["feh"]))
    rng = np.random.default_rng(np.random.SeedSequence(lp_seed, spawn_key=(_VMICRO_SPAWN_KEY,)))
    return max(base + float(sigma) * float(rng.standard_normal()), VMICRO_MIN)


def _augment_label_point(library, survey, beams, labels_row, index, seed, augment_options):
    """Rows of one label point: (flux by beam, mask by beam, samples table, lp seed)."""
    augment_options = dict(augment_options)
    vmicro_sigma = augment_options.pop("vmicro_sigma", 0.0)
    lp_seed = label_point_seed(seed, index)
    extra = {}
    if vmicro_sigma:
        extra["vmicro"] = label_point_vmicro(library, labels_row, lp_seed, vmicro_sigma)
    spec = library.spectrum(**{k: float(labels_row[k]) for k in LIBRARY_LABELS}, **extra)
    flux, mask, samples = {}, {}, None
    for b, beam in enumerate(beams):
        batch, table = augment(spec, survey, beam,
                               seed=np.random.SeedSequence(lp_seed, spawn_key=(b,)),
                               **augment_options)
        flux[beam] = np.asarray(batch.flux.value, dtype=float)  # float32 when stored
        mask[beam] = np.asarray(batch.mask, dtype=bool)
        samples = table if samples is None else samples
    if extra:
        samples["vmicro"] = np.full(len(samples), extra["vmicro"])
    return flux, mask, samples, lp_seed


def _normalize_shard(results, survey, beams, fitter):
    """Continuum-normalize the augmented rows of a shard, one batch per beam.

    ``results`` are :func:`_augment_label_point` tuples; the same tuples come
    back with normalized flux (float32).  Uses :func:`remap.normalize`, the
    routine applied to observed spectra.
    """
    Spectrum = spectrum_class()
    out = [(dict(f), dict(m), s, sd) for f, m, s, sd in results]
    for beam in beams:
        flux = np.concatenate([r[0][beam] for r in results])
        mask = np.concatenate([r[1][beam] for r in results])
        batch = Spectrum(flux=flux * u.dimensionless_unscaled,
                         spectral_axis=u.Quantity(survey.grid(beam)).to(u.AA),
                         mask=mask)
        normed = normalize(batch, fitter=fitter)
        nflux = np.asarray(normed.flux.value, dtype=np.float32)
        nmask = np.asarray(normed.mask, dtype=bool)
        start = 0
        for r in out:
            n = r[0][beam].shape[0]
            r[0][beam] = nflux[start:start + n]
            r[1][beam] = nmask[start:start + n]
            start += n
    return out


_WORKER = {}


def limit_blas_threads(n):
    """Context manager capping the BLAS/OpenMP threads of numpy and scipy at ``n``.

    The pipeline works on many small arrays, where a multi-threaded BLAS
    costs more in synchronisation than it gains, badly so when the cores are
    shared (Algorithm 1 on 90 spectra measured 0.20 s with one OpenBLAS
    thread and 1.85 s with two on a loaded 2-core machine).  Uses
    `threadpoolctl` when it is installed; otherwise (or for ``n=None``) it
    changes nothing.
    """
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n))


def _worker_init(library, survey, beams, seed, options, blas_threads):
    _WORKER.update(library=library, survey=survey, beams=beams, seed=seed, options=options,
                   limits=limit_blas_threads(blas_threads))


def _worker_point(args):
    i, row = args
    w = _WORKER
    return _augment_label_point(w["library"], w["survey"], w["beams"], row, i, w["seed"],
                                w["options"])


def _shard_rows(k, shard_size, n_points, per_point):
    """Samples in shard ``k``."""
    return (min((k + 1) * shard_size, n_points) - k * shard_size) * per_point


def _dask_shard(library, survey, beams, rows, seed, options, fitter, blas_threads):
    """Dask task: augment the label points ``rows`` (``[(index, labels), ...]``) of one
    shard and normalize them, exactly as :func:`build_synthetic` does in-process."""
    with limit_blas_threads(blas_threads):
        results = [_augment_label_point(library, survey, beams, row, i, seed, options)
                   for i, row in rows]
        if fitter is not None:
            results = _normalize_shard(results, survey, beams, fitter)
    return results


class _DaskShards:
    """Shards of a :func:`build_synthetic` run computed on a Dask cluster, in a window."""

    def __init__(self, client, library, survey, beams, seed, options, fitter, blas_threads,
                 label_rows, shard_size, n_points, todo):
        self.client = client
        self.todo = list(todo)
        self.futures = {}
        self.args = (beams, seed, options)
        self.blas_threads = blas_threads
        self.label_rows, self.shard_size, self.n_points = label_rows, shard_size, n_points
        # the library (line lists, grids) goes to every worker once, not with each task
        self.shared = client.scatter([library, survey, fitter], broadcast=True, hash=False)
        threads = sum(client.nthreads().values()) or 1
        self.window = 2 * threads
        self._fill()

    def _fill(self):
        while self.todo and len(self.futures) < self.window:
            k = self.todo.pop(0)
            points = range(k * self.shard_size, min((k + 1) * self.shard_size, self.n_points))
            rows = [(i, self.label_rows[i]) for i in points]
            beams, seed, options = self.args
            library, survey, fitter = self.shared
            self.futures[k] = self.client.submit(
                _dask_shard, library, survey, beams, rows, seed, options, fitter,
                self.blas_threads, pure=False, retries=2)

    def result(self, k):
        """The normalized rows of shard ``k`` (waits for its task)."""
        future = self.futures.pop(k)
        try:
            return future.result()
        finally:
            future.release()
            self._fill()

    def cancel(self):
        """Cancel the tasks still queued or running."""
        for future in self.futures.values():
            future.cancel()
        self.futures.clear()
        self.todo.clear()


def build_synthetic(directory, library, survey, labels, *, seed=0, shard_size=20,
                    beams=None, resolutions=None, noise_levels=None, draws=None,
                    fitter="algorithm1", fitter_options=None, config=None, overwrite=False,
                    progress=False, compression="gzip", workers=1, on_shard=None,
                    blas_threads=1, client=None, coverage=None, vmicro_sigma=0.0):
    """Build (or resume) a synthetic training set: library → augment → normalize → shards.

    Parameters
    ----------
    directory : str or path
    library : `remap.libraries.base.SyntheticLibrary`
    survey : survey object
        E.g. ``remap.get_survey("marvels")``.
    labels : `~astropy.table.Table`
        Label points (:func:`draw_labels` or :func:`grid_labels`).
    seed : int
        Root seed; label point ``i`` uses :func:`label_point_seed` ``(seed, i)``,
        so the result does not depend on the sharding or on resuming.
    shard_size : int
        Label points per shard (each gives ``len(resolutions) * len(noise_levels)
        * draws`` samples, 45 by default).
    beams : sequence of str, optional
        Default: all beams of the survey.
    resolutions, noise_levels, draws : optional
        Augmentation settings (defaults of :func:`remap.augment.augment`).
    fitter : str or None
        Continuum fitter; `None` stores un-normalized spectra.
    fitter_options : dict, optional
    config : dict, optional
        Extra JSON values recorded in the manifest's ``config``.
    overwrite : bool
        Replace a different set in ``directory``.
    progress : bool
        Show a tqdm progress bar (on stderr).
    compression : {"gzip", "lzf", None}
    workers : int
        Processes computing label points in parallel (1: in this process).
        The result does not depend on it: every label point has its own seed
        and the rows are written in label-point order.
    on_shard : callable, optional
        Called as ``on_shard(index, written)`` after each shard (``written``
        False when it was already complete), e.g. to watch memory.
    blas_threads : int or None
        BLAS threads per process while building (:func:`limit_blas_threads`);
        `None` leaves the library default.
    coverage : dict, optional
        Partial-coverage augmentation (:func:`remap.augment.drop_coverage`,
        after normalization; needs a fitter): ``{"probability": p,
        "max_fraction": f}``.  Dropped pixels are in-painted with the mean of
        the library's templates (:func:`remap.model.build_templates`), which is
        what the model's artifact stores and the pipeline fills uncovered
        pixels with.
    vmicro_sigma : float
        Microturbulence as a nuisance dimension (km/s): each label point is
        synthesized with the library's microturbulence at its labels plus a
        Gaussian draw of this width (:func:`label_point_vmicro`; seeded by the
        label point, recorded in the ``vmicro`` metadata field).  0 (default)
        keeps the library's own value and leaves the set as without it.  Needs
        a library whose ``spectrum`` takes ``vmicro`` (the ``linelist`` library).
    client : `distributed.Client`, optional
        Compute the shards as tasks on this Dask cluster (``workers`` is then
        ignored): each task augments and normalizes one shard's label points
        and sends the arrays back; this process writes the shards in order,
        as without Dask, so the data set is identical and resumable.  At most
        two shards per worker thread are in flight.

    Returns
    -------
    summary : dict
        ``n_label_points``, ``n_samples``, ``shards_written``, ``shards_skipped``,
        ``seconds`` (of this call) and ``samples_per_second``.
    """
    shard_size = check_int("shard_size", shard_size, 1)
    beams = list(survey.beams) if beams is None else list(beams)
    for beam in beams:
        if beam not in survey.beams:
            raise DatasetError(f"survey {survey.name!r} has no beam {beam!r}; beams: "
                               f"{list(survey.beams)}")
    workers = check_int("workers", workers, 1)
    options = {"resolutions": list(aug.DEFAULT_RESOLUTIONS if resolutions is None
                                   else resolutions),
               "noise_levels": list(aug.DEFAULT_NOISE_LEVELS if noise_levels is None
                                    else noise_levels),
               "draws": int(aug.DEFAULT_DRAWS if draws is None else draws)}
    fitter_obj = None
    if fitter is not None:
        fitter_obj = (get_continuum_fitter(fitter, **(fitter_options or {}))
                      if isinstance(fitter, str) else fitter)
    fitter_record = None if fitter_obj is None else {
        "name": fitter if isinstance(fitter, str) else type(fitter_obj).__name__,
        **fitter_obj.get_config()}
    vmicro_sigma = check_real("vmicro_sigma", vmicro_sigma, 0.0, 5.0)
    metadata_fields = dict(DEFAULT_METADATA_FIELDS)
    if vmicro_sigma:
        if (not hasattr(library, "vmicro_at")
                or "vmicro" not in inspect.signature(library.spectrum).parameters):
            raise DatasetError(f"vmicro_sigma needs a library whose spectrum() takes vmicro= "
                               f"(the linelist library); {library.name!r} does not")
        options["vmicro_sigma"] = vmicro_sigma
        metadata_fields["vmicro"] = "float32"
    per_point = len(options["resolutions"]) * len(options["noise_levels"]) * options["draws"]
    heads = (TEFF, LOGG, FEH)
    label_values = np.column_stack([np.asarray(labels[h.name], dtype=float) for h in heads])
    label_sigma = np.array([h.synthetic_sigma for h in heads])
    n_points = len(labels)
    if n_points == 0:
        raise DatasetError("no label points to build")
    fill = None
    if coverage is not None:
        if fitter_obj is None:
            raise ValueError("the partial-coverage augmentation needs a continuum fitter (it "
                             "in-paints normalized spectra)")
        coverage = {k: float(coverage[k]) for k in ("probability", "max_fraction")}
        fill = mean_spectra(build_templates(library, survey, beams, fitter=fitter_obj,
                                            resolution=float(np.median(options["resolutions"]))))
    # the library's physics version (e.g. linelist "v3"), when it has one: a default that
    # changes between remap versions must not make two training sets look alike
    physics = getattr(library, "physics", None)
    full_config = {"kind": "synthetic", "library": library.name, "seed": int(seed),
                   **({} if physics is None else {"library_physics": str(physics)}),
                   "shard_size": int(shard_size), "n_label_points": n_points,
                   "labels_sha256": hashlib.sha256(np.column_stack(
                       [np.asarray(labels[k], dtype="<f8") for k in LIBRARY_LABELS])
                       .tobytes()).hexdigest(),
                   "samples_per_label_point": per_point, **options, "fitter": fitter_record,
                   **({} if coverage is None else {"coverage": coverage}), **(config or {})}
    # augmentation runs per label point without normalization; the continuum is
    # fitted once per shard and beam on the whole batch (the fitters treat each
    # row independently, and the vectorized ones are several times faster per
    # spectrum on batches of hundreds than on 45 rows)
    options["fitter"] = None
    writer = DatasetWriter(directory, survey=survey.name,
                           grids={b: survey.grid(b) for b in beams},
                           label_names=[h.name for h in heads],
                           label_units=[h.unit.to_string() for h in heads],
                           wavelength_medium=survey.wavelength_medium, config=full_config,
                           overwrite=overwrite, compression=compression,
                           metadata_fields=metadata_fields)
    n_shards = -(-n_points // shard_size)
    label_rows = [{k: float(labels[k][i]) for k in LIBRARY_LABELS} for i in range(n_points)]
    start = time.perf_counter()
    written = skipped = rows_written = 0
    bar = tqdm(total=n_points * per_point, unit="spectra", disable=not progress,
               desc=f"building {Path(directory).name}")
    pool = None
    remote = None
    if client is not None:
        remote = _DaskShards(client, library, survey, beams, seed, options, fitter_obj,
                             blas_threads, label_rows, shard_size, n_points,
                             [k for k in range(n_shards)
                              if not writer.has_shard(k, _shard_rows(k, shard_size, n_points,
                                                                     per_point))])
    elif workers > 1:
        import concurrent.futures
        import multiprocessing
        pool = concurrent.futures.ProcessPoolExecutor(
            int(workers), mp_context=multiprocessing.get_context("fork"),
            initializer=_worker_init,
            initargs=(library, survey, beams, seed, options, blas_threads))
    limits = limit_blas_threads(blas_threads)
    try:
        for k in range(n_shards):
            points = range(k * shard_size, min((k + 1) * shard_size, n_points))
            n_rows = len(points) * per_point
            if writer.has_shard(k, n_rows):
                skipped += 1
                bar.update(n_rows)
                if on_shard is not None:
                    on_shard(k, False)
                continue
            if remote is not None:
                results = remote.result(k)
            else:
                if pool is None:
                    results = (_augment_label_point(library, survey, beams, label_rows[i], i,
                                                    seed, options) for i in points)
                else:
                    results = pool.map(_worker_point, [(i, label_rows[i]) for i in points])
                results = list(results)
                if fitter_obj is not None:
                    results = _normalize_shard(results, survey, beams, fitter_obj)
            if coverage is not None:
                results = aug.drop_coverage_results(list(results), beams, fill, **coverage)
            with writer.shard(k, n_rows) as shard:
                for i, (flux, mask, samples, lp_seed) in zip(points, results):
                    shard.append(
                        flux=flux, mask=mask,
                        labels=np.repeat(label_values[i:i + 1], per_point, axis=0),
                        label_uncertainty=np.repeat(label_sigma[None], per_point, axis=0),
                        metadata={"resolution": samples["resolution"],
                                  "sigma": samples["sigma"], "draw": samples["draw"],
                                  "seed": np.full(per_point, lp_seed, dtype=np.uint64),
                                  "label_point": np.full(per_point, i),
                                  "source": np.full(per_point, library.name),
                                  **({"vmicro": samples["vmicro"]} if vmicro_sigma else {})})
                    bar.update(per_point)
            written += 1
            rows_written += n_rows
            if on_shard is not None:
                on_shard(k, True)
    finally:
        bar.close()
        limits.__exit__(None, None, None)
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if remote is not None:
            remote.cancel()
    seconds = time.perf_counter() - start
    summary = {"n_label_points": n_points, "n_samples": int(writer.manifest["n_samples"]),
               "shards": n_shards}
    writer.finish(**summary)
    summary.update(shards_written=written, shards_skipped=skipped,
                   samples_written=rows_written, seconds=seconds,
                   samples_per_second=rows_written / seconds if seconds > 0 else 0.0)
    return summary
