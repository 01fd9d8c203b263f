"""Fitting catalogues: many spectrum files, one table, in one process or on a Dask cluster.

:func:`fit_files` fits a list of files in this process; :func:`fit_catalog`
spreads the same work over the workers of a :mod:`dask.distributed` cluster
(a `~distributed.LocalCluster` sized to the machine by default, or an
existing cluster through ``scheduler=`` / ``client=``).  Both return one
`~astropy.table.QTable` with one row per input, in input order:

``file``
    the input's name (the path as given, or ``spectrum[i]`` for in-memory
    spectra without a ``meta["file"]``);
``status``
    ``"ok"`` (a result without flags), ``"flagged"`` (a result with at least
    one :class:`remap.Flag` bit set; see ``flag_names``) or ``"error"`` (no
    result: the file could not be read, the spectrum failed validation, or
    it does not overlap any beam of the model);
``error``
    for ``"error"`` rows the reason, e.g. ``"SpectrumError: ..."``; empty
    otherwise;

followed by the columns of :meth:`remap.FitResult.to_table` (NaN for
``"error"`` rows).  A bad file never stops the run or loses the other rows.

Files that were read successfully are fitted in one pass through
:func:`remap.fit_iter` (chunks of ``batch_size``, so that stars sharing a
wavelength axis go through the pipeline as 2-D arrays), with
``errors="flag"``: a spectrum that fails validation comes back as a NaN row
flagged `remap.Flag.BAD_INPUT` with its error, which becomes that file's
``"error"`` row; the others are fitted normally.

On a cluster each worker process loads the model once (a
`distributed.WorkerPlugin` warms :func:`remap.model.cache.cached_model`, the
per-process cache keyed by the model's path and creation stamp), the inputs
are cut into partitions of ``partition_size`` and each partition is one Dask
task.  With ``output=DIR`` every finished partition is
written atomically to ``DIR/part-NNNNN.ecsv`` (or ``.parquet``), tagged with a
hash of its inputs, the model and the survey; running the same call again
reuses the parts already written (resume).  A worker that dies mid-task is
replaced by its nanny and the task is run again (Dask's
``distributed.scheduler.allowed-failures``), so no rows are lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import re
from pathlib import Path

import numpy as np

from .exceptions import RemapError, SpectrumFileError  # noqa: F401  (re-exported)
from .spectra.medium import declare_medium, validate_medium, warn_medium_assumed
from .spectra.readers import read_spectrum
from .model.cache import DEFAULT_MODEL_PATH, cached_model

# read_spectrum_file and SpectrumFileError stay importable from here; they are documented
# where they live (remap.read_spectrum, remap.SpectrumFileError)
__all__ = ["fit_files", "fit_catalog", "CatalogError", "ModelPreloader", "local_cluster",
           "expand_paths"]

log = logging.getLogger(__name__)

#: Values of the ``status`` column.
STATUSES = ("ok", "flagged", "error")

#: Suffixes of the part files written by :func:`fit_catalog`, by part format.
PART_SUFFIX = {"ecsv": ".ecsv", "parquet": ".parquet"}

_PART_VERSION = 1


class CatalogError(RemapError):
    """A catalogue run cannot go on (bad arguments, a task that failed for good)."""


# ----------------------------------------------------------------------------- reading
#: Former name of :func:`remap.read_spectrum` (the one spectrum-file reader).
read_spectrum_file = read_spectrum


def expand_paths(items):
    """Expand directories into the regular files in them (sorted, no hidden files).

    Parameters
    ----------
    items : iterable of str or path-like

    Returns
    -------
    paths : list of `pathlib.Path`
        Files in the order given, each directory replaced by its files
        (not recursive); paths that do not exist are kept, so that they
        are reported as errors.
    """
    out = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir()
                              if p.is_file() and not p.name.startswith(".")))
        else:
            out.append(path)
    return out


# ------------------------------------------------------------------------------ model
def _model_identity(path):
    """What identifies a model for resuming: its path and its manifest's creation stamp."""
    try:
        with open(Path(path) / "manifest.json", encoding="utf-8") as fh:
            created = json.load(fh).get("created", "")
    except (OSError, ValueError):
        created = ""
    return f"{path}@{created}"


def _model_path(model):
    """Resolved path string of a model argument (None, a path, or a loaded model)."""
    if model is None:
        return str(DEFAULT_MODEL_PATH.resolve())
    if isinstance(model, (str, os.PathLike)):
        return str(Path(model).expanduser().resolve())
    path = getattr(model, "path", None)
    if path is None:
        raise TypeError("model must be None, a path to a model directory or a RemapModel; "
                        f"received {type(model).__name__}")
    return str(Path(path).resolve())


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - dask is a dependency, but stay importable
    _WorkerPlugin = object


class ModelPreloader(_WorkerPlugin):
    """Worker plugin loading a remap model into each worker's per-process cache.

    Registered by :func:`fit_catalog`; it runs on every worker, also on
    those that join (or are restarted) later, so each worker process loads
    the model exactly once, before its first task.

    Parameters
    ----------
    path : str
        Resolved model directory (as seen from the workers).
    """

    def __init__(self, path):
        self.path = str(path)
        self.name = "remap-model-" + hashlib.sha1(self.path.encode()).hexdigest()[:12]

    def setup(self, worker):
        """Load the model (see :func:`cached_model`).

        A model that cannot be loaded is only logged here, so that the worker
        still starts; the tasks then fail with the loader's error.
        """
        try:
            cached_model(self.path)
        except Exception as exc:  # noqa: BLE001 - reported by the tasks
            log.warning("worker %s cannot load the model %s: %s", getattr(worker, "address", ""),
                        self.path, _error_text(exc))


# ------------------------------------------------------------------------ fitting files
class _Item:
    """One input: a display name, a path or spectrum, and the plot file stem."""

    __slots__ = ("name", "source", "stem")

    def __init__(self, name, source, stem):
        self.name, self.source, self.stem = name, source, stem

    def __getstate__(self):
        return (self.name, self.source, self.stem)

    def __setstate__(self, state):
        self.name, self.source, self.stem = state


def _make_items(inputs):
    """`_Item` per input (paths or spectra), with unique plot stems."""
    from .spectra.validation import is_spectrum

    items, seen = [], {}
    for i, obj in enumerate(inputs):
        if isinstance(obj, (str, os.PathLike)):
            name, source = str(obj), str(obj)
            stem = Path(str(obj)).stem or "spectrum"
        elif is_spectrum(obj) or _is_spectrum_list(obj):
            meta = getattr(obj, "meta", None) or {}
            if _is_spectrum_list(obj):  # the file its spectra (beams) came from, if one
                files = {str((s.meta or {}).get("file") or "") for s in obj}
                meta = {"file": files.pop()} if len(files) == 1 else {}
            name = str(meta.get("file") or f"spectrum[{i}]")
            source = obj
            stem = Path(name).stem if meta.get("file") else f"spectrum-{i}"
        else:
            raise TypeError(f"input {i} is a {type(obj).__name__}; expected a path, a "
                            "specutils Spectrum or a SpectrumList")
        seen[stem] = seen.get(stem, 0) + 1
        items.append(_Item(name, source, stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"))
    return items


def _is_spectrum_list(obj):
    from specutils import SpectrumList
    return isinstance(obj, SpectrumList)


def _error_text(exc):
    return f"{type(exc).__name__}: {exc}"


#: How remap.fit names its input (one spectrum, or an item of a batch) in its messages.
_BATCH_LABEL = re.compile(r"^(spectra\[\d+\]|spectrum)(?= )")

#: A batch label anywhere in a message, and the label a note starts with.
_BATCH_INDEX = re.compile(r"\bspectra\[\d+\]")
_NOTE_LABEL = re.compile(r"(^|; )(?:spectra\[\d+\]|spectrum)(?=[: ])")

#: The note of remap.fit that says which range a star covers (and that no beam is in it).
_COVERAGE_NOTE = re.compile(r"(spectra\[\d+\]|spectrum) covers .*$")


def _bad_input_error(result, j):
    """The error of star ``j`` of a FitResult, flagged BAD_INPUT, as ``"Type: message"``.

    The type comes from the star's ``bad_input`` note (`remap.inference.Note.error`).
    `remap.inference.Context.fail` writes a `remap.SpectrumError` as its
    message alone, which names the star by its label (``spectra[12]``), and
    any other error as ``"Type: message"``; the label becomes "spectrum": one
    row is one star.
    """
    note = next((n for n in result.notes[j] if n.code == "bad_input"), None)
    if note is None:
        return _BATCH_INDEX.sub("spectrum", result.messages[j] if len(result.messages) > j
                                else "")
    text = note.message
    if note.error == "SpectrumError":
        label = f"spectra[{int(result.index[j])}]"
        if text.startswith(label):
            text = "spectrum" + text[len(label):]
        text = f"SpectrumError: {text}"
    return _BATCH_INDEX.sub("spectrum", text)


def _status_of(result, j):
    """(status, error) of star ``j`` of a FitResult."""
    from .inference.flags import Flag

    flags = int(np.asarray(result.flags).reshape(-1)[j])
    if flags & int(Flag.BAD_INPUT):
        return "error", _bad_input_error(result, j)
    if flags & int(Flag.NO_COVERAGE):
        message = result.messages[j] if len(result.messages) > j else ""
        # the star's notes are joined with "; "; the reason is the one about its coverage
        coverage = _COVERAGE_NOTE.search(message)
        message = _BATCH_LABEL.sub("the spectrum", coverage.group(0) if coverage else message)
        return "error", f"NoCoverage: {message or 'the spectrum overlaps no beam of the model'}"
    return ("flagged" if flags else "ok"), ""


def _survey_medium(survey, model):
    """(medium, description) of the survey the spectra are fitted against."""
    from .plugins import get_survey

    if survey is None:
        survey = getattr(model, "survey", None)
    if isinstance(survey, str):
        try:
            survey = get_survey(survey)
        except Exception:  # noqa: BLE001 - remap.fit reports a bad survey itself
            return "air", f"survey {survey!r}"
    medium = getattr(survey, "wavelength_medium", "air")
    return medium, f"the medium of survey {getattr(survey, 'name', survey)!r}"


def _fit_items(items, model, survey, fmt, batch_size, plot_dir=None, on_progress=None,
               medium=None, fit_options=None):
    """Read and fit ``items`` (list of `_Item`) in this process; return the QTable.

    Every spectrum gets a declared wavelength medium (``medium``, its own, or
    the survey's); the names of those for which the survey's was assumed are
    in ``meta["medium_assumed"]``.
    """
    from astropy.table import QTable

    # remap.inference.pipeline imports this module (read_spectrum_file): imported on use
    from .inference.pipeline import fit_iter

    n = len(items)
    status = ["error"] * n
    errors = [""] * n
    rows = [None] * n          # (table, row index) per good input
    readable = []              # (index, spectrum)
    assumed = []
    default, _ = _survey_medium(survey, model)
    for i, item in enumerate(items):
        try:
            if isinstance(item.source, str):
                spectrum = read_spectrum(item.source, format=fmt, medium=medium)
            else:
                spectrum = item.source
            spectrum, was_assumed = declare_medium(spectrum, medium, default)
        except Exception as exc:  # noqa: BLE001 - recorded per file
            errors[i] = _error_text(exc)
            continue
        readable.append((i, spectrum))
        if was_assumed:
            assumed.append(item.name)
    failed_reads = n - len(readable)
    if on_progress is not None and failed_reads:
        on_progress(failed_reads)
    # one pass: a spectrum that fails validation is a BAD_INPUT row of its chunk
    chunks = fit_iter([s for _, s in readable], model=model, survey=survey,
                      batch_size=batch_size, errors="flag", **(fit_options or {})) \
        if readable else ()
    for result in chunks:
        table = result.to_table()
        for j, position in enumerate(result.index):
            i = readable[position][0]
            status[i], errors[i] = _status_of(result, j)
            if status[i] != "error":
                rows[i] = (table, j)
                if plot_dir is not None:
                    _write_plot(result[j], Path(plot_dir) / f"{items[i].stem}.png", errors, i)
        if on_progress is not None:
            on_progress(len(result))
    template = next((r[0] for r in rows if r is not None), None)
    if template is None:
        template = _template_table(model)
    table = _assemble(rows, template)
    out = QTable()
    out["file"] = [it.name for it in items]
    out["status"] = status
    out["error"] = errors
    for name in table.colnames:
        out[name] = table[name]
    if "message" in out.colnames and len(out):
        # one row is one star: its place in a batch ("spectra[3]") means nothing here
        out["message"] = [_BATCH_INDEX.sub("the spectrum",
                                           _NOTE_LABEL.sub(r"\1the spectrum", str(m)))
                          for m in out["message"]]
    out.meta.update(table.meta)
    out.meta["medium_assumed"] = assumed
    return out


def _write_plot(result, path, errors, i):
    """Write ``result.plot()`` to ``path`` atomically; a failure is noted, not raised."""
    from ._util.fs import atomic_path

    try:
        fig = result.plot()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    except Exception as exc:  # noqa: BLE001 - the fit itself is fine
        errors[i] = f"plot failed: {_error_text(exc)}"


def _template_table(model):
    """An empty table with the columns of ``FitResult.to_table()`` for ``model``.

    Used when no input of a group gave a result, so that every partition has
    the same columns.
    """
    import astropy.units as u
    from astropy.table import QTable

    t = QTable()
    for head in model.heads:
        unit = u.Unit(head.unit)
        for suffix in ("", "_p16", "_p84", "_mean", "_std"):
            t[head.name + suffix] = u.Quantity(np.zeros(0), unit)
    t["flags"] = np.zeros(0, dtype=np.int64)
    t["flag_names"] = np.zeros(0, dtype=str)
    t["beams"] = np.zeros(0, dtype=str)
    for beam in model.beams:
        t[f"snr_{beam}"] = np.zeros(0)
    t["message"] = np.zeros(0, dtype=str)
    return t


def _fill_column(col, n):
    """A column like ``col`` of length ``n`` filled with its missing value."""
    import astropy.units as u

    if isinstance(col, u.Quantity):
        return u.Quantity(np.full((n,) + col.shape[1:], np.nan), col.unit)
    arr = np.asarray(col)
    if arr.dtype.kind == "f":
        return np.full((n,) + arr.shape[1:], np.nan)
    if arr.dtype.kind in "iu":
        return np.zeros((n,) + arr.shape[1:], dtype=arr.dtype)
    if arr.dtype.kind == "b":
        return np.zeros((n,) + arr.shape[1:], dtype=bool)
    return np.full((n,) + arr.shape[1:], "", dtype=object)


def _assemble(rows, template):
    """Gather rows ``(table, index)`` (None = missing) into a table with ``template``'s columns."""
    import astropy.units as u
    from astropy.table import QTable

    n = len(rows)
    groups = {}                # id(table) -> (table, output rows, table rows)
    for i, row in enumerate(rows):
        if row is not None:
            entry = groups.setdefault(id(row[0]), (row[0], [], []))
            entry[1].append(i)
            entry[2].append(row[1])
    out = QTable(meta=dict(template.meta))
    for name in template.colnames:
        col = _fill_column(template[name], n)
        for table, dest, src in groups.values():
            if name not in table.colnames:
                continue
            values = table[name][src]
            col[dest] = values.to(col.unit) if isinstance(col, u.Quantity) else values
        if isinstance(col, np.ndarray) and col.dtype == object:
            col = np.asarray(col.tolist(), dtype=str) if n else np.zeros(0, dtype=str)
        out[name] = col
    return out


def _align(table, template):
    """``table`` with ``template``'s columns in its order (missing ones filled)."""
    from astropy.table import QTable

    if table.colnames == template.colnames:
        return table
    out = QTable(meta=dict(table.meta))
    for name in template.colnames:
        out[name] = table[name] if name in table.colnames else _fill_column(template[name],
                                                                            len(table))
    return out


def _check_fit_options(fit_options):
    """``fit_options`` as a dict of keyword arguments of :func:`remap.fit`."""
    if fit_options is None:
        return {}
    if not isinstance(fit_options, dict) or not all(isinstance(k, str) for k in fit_options):
        raise TypeError(f"fit_options must be a dict of keyword arguments of remap.fit; "
                        f"received {fit_options!r}")
    reserved = {"model", "survey", "batch_size", "errors"} & set(fit_options)
    if reserved:
        raise ValueError(f"fit_options cannot set {sorted(reserved)}: they are arguments of "
                         f"the catalogue functions themselves")
    return dict(fit_options)


def _check_batch_size(batch_size):
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; received {batch_size!r}")
    return int(batch_size)


def fit_files(paths, model=None, survey=None, *, format=None, medium=None, batch_size=256,
              progress=False, plot_dir=None, fit_options=None):
    """Fit many spectrum files in this process; one table row per file.

    Parameters
    ----------
    paths : sequence of str, path-like, `specutils.Spectrum` or `specutils.SpectrumList`
        The inputs, each one star (directories are not expanded here; see
        :func:`expand_paths`).  In-memory spectra are fitted as they are.
    model : None, str, path or `remap.model.RemapModel`
        Default: the shipped default model.  A path is loaded once per process.
    survey : str or survey object, optional
        Default: the model's survey.
    format : str or callable, optional
        Reader format of the files (see :func:`remap.read_spectrum`).
    medium : {"air", "vacuum"}, optional
        Wavelength medium of every input, overriding what the files declare.
        Inputs that declare none are taken in the survey's medium, with one
        `remap.MediumAssumedWarning` for the whole call.
    batch_size : int
        Spectra per :func:`remap.fit` call (and per network batch).
    progress : bool
        Show a tqdm progress bar on stderr.
    plot_dir : str or path, optional
        Write ``result.plot()`` of every fitted file to ``plot_dir/<stem>.png``.
    fit_options : dict, optional
        Options of the pipeline's stages passed on to :func:`remap.fit`, e.g.
        ``{"rv": 0}`` (the spectra are at rest) or ``{"resolution": 60000}``.

    Returns
    -------
    table : `~astropy.table.QTable`
        One row per input in input order: ``file``, ``status``
        (``"ok"``/``"flagged"``/``"error"``), ``error``, then the columns of
        :meth:`remap.FitResult.to_table` (NaN where ``status`` is ``"error"``).
        ``meta`` holds the model's table meta, ``n_ok``/``n_flagged``/``n_error``
        and ``n_medium_assumed``.

    Warns
    -----
    remap.MediumAssumedWarning
        Some inputs declare no wavelength medium (once per call).

    Examples
    --------
    >>> import remap
    >>> table = remap.fit_files(["star1.fits", "star2.fits"])  # doctest: +SKIP
    >>> table["file", "status", "teff", "teff_p16", "teff_p84"]  # doctest: +SKIP
    """
    from tqdm import tqdm

    batch_size = _check_batch_size(batch_size)
    medium = None if medium is None else validate_medium(medium, "medium")
    fit_options = _check_fit_options(fit_options)
    items = _make_items(list(paths))
    loaded = cached_model(_model_path(model)) if not hasattr(model, "predict") else model
    if plot_dir is not None:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(items), unit="file", desc="remap fit", disable=not progress) as bar:
        table = _fit_items(items, loaded, survey, format, batch_size, plot_dir, bar.update,
                           medium=medium, fit_options=fit_options)
    _warn_assumed([table], survey, loaded)
    _summarize(table)
    return table


def _warn_assumed(tables, survey, model):
    """One MediumAssumedWarning for the inputs of ``tables`` whose medium was assumed."""
    names = []
    for t in tables:
        names.extend(str(n) for n in (t.meta.pop("medium_assumed", None) or []))
    if tables:
        tables[0].meta["n_medium_assumed"] = len(names)
    if names:
        medium, source = _survey_medium(survey, model)
        warn_medium_assumed(names, medium, source, stacklevel=3)


def _summarize(table):
    status = np.asarray(table["status"])
    for s in STATUSES:
        table.meta[f"n_{s}"] = int(np.count_nonzero(status == s))


# -------------------------------------------------------------------------- on Dask
def local_cluster(n_workers=None, *, threads_per_worker=1, **kwargs):
    """A `distributed.LocalCluster` of worker processes set up for remap.

    Parameters
    ----------
    n_workers : int, optional
        Default: the number of CPU cores this process may use.
    threads_per_worker : int
        Threads per worker process (TensorFlow's intra-op threads and the
        compiled stages' threads, ``REMAP_NUM_THREADS``, are limited to the
        same number, so that workers do not oversubscribe the cores).
    **kwargs
        Passed on to `~distributed.LocalCluster` (defaults:
        ``dashboard_address=None``, no dashboard; ``host="127.0.0.1"``,
        reachable from this machine only).

    Returns
    -------
    cluster : `distributed.LocalCluster`
    """
    from distributed import LocalCluster

    if n_workers is None:
        try:
            n_workers = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            n_workers = os.cpu_count() or 1
    if not isinstance(n_workers, numbers.Integral) or n_workers < 1:
        raise ValueError(f"n_workers must be an integer >= 1; received {n_workers!r}")
    env = {"TF_NUM_INTRAOP_THREADS": str(threads_per_worker), "TF_NUM_INTEROP_THREADS": "1",
           "REMAP_NUM_THREADS": str(threads_per_worker),  # the compiled stages' threads
           "TF_CPP_MIN_LOG_LEVEL": "2", **kwargs.pop("env", {})}
    kwargs.setdefault("dashboard_address", None)
    kwargs.setdefault("host", "127.0.0.1")  # reachable from this machine only
    return LocalCluster(n_workers=int(n_workers), threads_per_worker=int(threads_per_worker),
                        processes=True, env=env, **kwargs)


def _item_identity(item):
    """A string identifying an input's content for resuming (path + size + mtime, or hash)."""
    if isinstance(item.source, str):
        try:
            st = os.stat(item.source)
            return f"file:{os.path.abspath(item.source)}:{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return f"file:{os.path.abspath(item.source)}:missing"
    h = hashlib.sha256()
    spectra = item.source if _is_spectrum_list(item.source) else [item.source]
    for s in spectra:
        for arr in (s.spectral_axis, s.flux):
            h.update(str(getattr(arr, "unit", "")).encode())
            h.update(np.ascontiguousarray(np.asarray(arr)).tobytes())
        if s.uncertainty is not None:
            h.update(np.ascontiguousarray(np.asarray(s.uncertainty.array)).tobytes())
        if s.mask is not None:
            h.update(np.ascontiguousarray(np.asarray(s.mask)).tobytes())
    return f"spectrum:{item.name}:{h.hexdigest()}"


def _part_key(items, model_id, survey, fmt, medium=None, fit_options=None):
    """SHA-256 naming what a part holds: its inputs, the model, the survey, format and medium."""
    survey_name = survey if survey is None or isinstance(survey, str) else \
        getattr(survey, "name", repr(survey))
    fmt_name = getattr(fmt, "__qualname__", None) if callable(fmt) else fmt
    record = {"version": _PART_VERSION, "model": model_id, "survey": survey_name,
              "format": fmt_name, "items": [_item_identity(it) for it in items]}
    if medium is not None:
        record["medium"] = medium
    if fit_options:
        record["fit_options"] = {k: repr(v) for k, v in sorted(fit_options.items())}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _part_path(directory, index, part_format):
    return Path(directory) / f"part-{index:05d}{PART_SUFFIX[part_format]}"


def _read_part(path, key, n_rows, part_format):
    """The table of a finished part, or None when it is missing, stale or unreadable."""
    from astropy.table import QTable

    if not path.is_file():
        return None
    try:
        if part_format == "ecsv":
            # fill_values=[]: an empty string stays "" instead of becoming masked
            table = QTable.read(path, format="ascii.ecsv", fill_values=[])
        else:
            table = QTable.read(path, format="parquet")
    except Exception as exc:  # noqa: BLE001 - a broken part is recomputed
        log.warning("recomputing %s: cannot read it (%s)", path, _error_text(exc))
        return None
    if table.meta.get("remap_part_key") != key or len(table) != n_rows:
        log.info("recomputing %s: it holds other inputs", path)
        return None
    return table


def _write_part(table, path, key, part_format):
    """Write a partition's table atomically, tagged with its key."""
    from ._util.fs import atomic_path

    table = table.copy(copy_data=False)
    table.meta["remap_part_key"] = key
    with atomic_path(path) as tmp:
        if part_format == "ecsv":
            table.write(tmp, format="ascii.ecsv")
        else:
            table.write(tmp, format="parquet")


def _fit_partition(items, model_path, survey, fmt, batch_size, plot_dir, medium=None,
                   fit_options=None):
    """Dask task: fit one partition of inputs on a worker (model from the process cache)."""
    from .datasets import limit_blas_threads

    model = cached_model(model_path)
    # the cluster runs a task per core already: one chunk at a time per task
    options = {"chunks_in_flight": 1, **(fit_options or {})}
    with limit_blas_threads(1):
        return _fit_items(items, model, survey, fmt, batch_size, plot_dir, medium=medium,
                          fit_options=options)


def _make_client(client, scheduler, n_workers):
    """(client, things to close): the given client, one for ``scheduler``, or a LocalCluster."""
    if client is not None:
        if scheduler is not None or n_workers is not None:
            raise CatalogError("give client= alone: scheduler= and n_workers= would make "
                               "another cluster")
        return client, []
    from distributed import Client

    if scheduler is not None:
        if n_workers is not None:
            raise CatalogError("n_workers= sizes a new LocalCluster; it cannot be combined "
                               "with scheduler= (size that cluster where it is started)")
        try:
            c = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise CatalogError(f"cannot connect to the Dask scheduler at {scheduler!r}: "
                               f"{exc}") from None
        return c, [c]
    cluster = local_cluster(n_workers)
    c = Client(cluster)
    return c, [c, cluster]


def fit_catalog(paths_or_spectra, model=None, survey=None, *, client=None, scheduler=None,
                n_workers=None, partition_size=64, output=None, format=None, medium=None,
                progress=False, batch_size=256, plot_dir=None, part_format="ecsv", retries=2,
                fit_options=None):
    """Fit a catalogue on a Dask cluster; one table row per input, in input order.

    Parameters
    ----------
    paths_or_spectra : sequence of str, path-like, `specutils.Spectrum` or `specutils.SpectrumList`
        The inputs, each one star.  Paths must be readable by the workers
        (a shared file system on a multi-machine cluster); spectra are sent
        to the workers.
    model : None, str, path or `remap.model.RemapModel`
        Default: the shipped default model.  Workers load it from its path
        (which they must see), once per worker process.
    survey : str or survey object, optional
        Default: the model's survey.
    client : `distributed.Client`, optional
        Use this client's cluster (it is left open).
    scheduler : str, optional
        Address of a running scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    n_workers : int, optional
        Workers of the `~distributed.LocalCluster` started when neither
        ``client`` nor ``scheduler`` is given (default: one per CPU core;
        see :func:`local_cluster`).  That cluster is closed at the end.
    partition_size : int
        Inputs per Dask task (and per part file).
    output : str or path, optional
        Directory for the part files; a re-run with the same directory and
        inputs reuses the parts already there (resume).
    format : str or callable, optional
        Reader format of the files (see :func:`remap.read_spectrum`).
    medium : {"air", "vacuum"}, optional
        Wavelength medium of every input (see :func:`fit_files`).
    progress : bool
        Show a tqdm progress bar (files done) on stderr.
    batch_size : int
        Spectra per :func:`remap.fit` call inside a partition.
    plot_dir : str or path, optional
        Workers write ``result.plot()`` of every fitted input to
        ``plot_dir/<stem>.png`` (a directory they can all write to).
    part_format : {"ecsv", "parquet"}
        Format of the part files.
    retries : int
        Extra attempts of a task that raised (a task whose worker died is
        rescheduled anyway, up to ``distributed.scheduler.allowed-failures``
        times).
    fit_options : dict, optional
        Options passed on to :func:`remap.fit` (see :func:`fit_files`); part
        of the identity of a part file.

    Returns
    -------
    table : `~astropy.table.QTable`
        As :func:`fit_files`; ``meta["n_parts_reused"]`` counts the parts
        read back from ``output``.

    Raises
    ------
    CatalogError
        Conflicting cluster arguments, an unreachable scheduler, or a
        partition that failed for another reason than its inputs (e.g. the
        model cannot be loaded); parts already written are kept.

    Notes
    -----
    Rows of a partition whose worker died more often than the scheduler
    allows (`distributed.KilledWorker`, e.g. a file that crashes the
    reader) are recorded as errors and not written to ``output``, so a
    re-run tries them again.
    """
    from astropy.table import vstack
    from tqdm import tqdm

    batch_size = _check_batch_size(batch_size)
    if not isinstance(partition_size, numbers.Integral) or partition_size < 1:
        raise ValueError(f"partition_size must be an integer >= 1; received {partition_size!r}")
    if part_format not in PART_SUFFIX:
        raise ValueError(f"part_format must be one of {sorted(PART_SUFFIX)}; received "
                         f"{part_format!r}")
    medium = None if medium is None else validate_medium(medium, "medium")
    items = _make_items(list(paths_or_spectra))
    model_path = _model_path(model)
    model_id = _model_identity(model_path)
    partitions = [items[i:i + partition_size] for i in range(0, len(items), partition_size)]
    fit_options = _check_fit_options(fit_options)
    keys = [_part_key(p, model_id, survey, format, medium, fit_options) for p in partitions]
    tables = [None] * len(partitions)
    reused = 0
    if output is not None:
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        for k, part in enumerate(partitions):
            tables[k] = _read_part(_part_path(output, k, part_format), keys[k], len(part),
                                   part_format)
            reused += tables[k] is not None
    if plot_dir is not None:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
        plot_dir = str(plot_dir)
    todo = [k for k, t in enumerate(tables) if t is None]
    bar = tqdm(total=len(items), unit="file", desc="remap fit", disable=not progress)
    bar.update(sum(len(partitions[k]) for k, t in enumerate(tables) if t is not None))
    try:
        if todo:
            _run_partitions(todo, partitions, keys, tables, model_path, survey, format,
                            batch_size, plot_dir, output, part_format, retries, bar,
                            client, scheduler, n_workers, medium, fit_options)
    finally:
        bar.close()
    template = next((t for t in tables if t is not None and np.any(t["status"] != "error")),
                    tables[0] if tables else None)
    if template is None:
        return _empty_result(model_path)
    assumed = [n for t in tables for n in (t.meta.get("medium_assumed") or [])]
    table = vstack([_align(t, template) for t in tables], metadata_conflicts="silent")
    table.meta = {k: v for k, v in template.meta.items() if k != "remap_part_key"}
    table.meta["medium_assumed"] = assumed
    _warn_assumed([table], survey, _ManifestSurvey(model_path))
    table.meta["n_parts_reused"] = reused
    _summarize(table)
    return table


class _ManifestSurvey:
    """Stands for a model in :func:`_survey_medium`: its survey name read from the manifest."""

    def __init__(self, model_path):
        try:
            with open(Path(model_path) / "manifest.json", encoding="utf-8") as fh:
                self.survey = json.load(fh).get("survey")
        except (OSError, ValueError):
            self.survey = None


def _empty_result(model_path):
    from astropy.table import QTable

    out = QTable()
    out["file"] = np.zeros(0, dtype=str)
    out["status"] = np.zeros(0, dtype=str)
    out["error"] = np.zeros(0, dtype=str)
    table = _template_table(cached_model(model_path))
    for name in table.colnames:
        out[name] = table[name]
    _summarize(out)
    return out


def _run_partitions(todo, partitions, keys, tables, model_path, survey, fmt, batch_size,
                    plot_dir, output, part_format, retries, bar, client, scheduler, n_workers,
                    medium=None, fit_options=None):
    """Submit the partitions in ``todo``, collect (and write) them as they finish."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    client, owned = _make_client(client, scheduler, n_workers)
    try:
        client.register_plugin(ModelPreloader(model_path))
        futures = {}
        for k in todo:
            fut = client.submit(_fit_partition, partitions[k], model_path, survey, fmt,
                                batch_size, plot_dir, medium, fit_options, retries=int(retries),
                                pure=False,
                                key=f"remap-fit-part-{k}-{keys[k][:16]}-{os.urandom(4).hex()}")
            futures[fut] = k
        for fut in as_completed(list(futures)):
            k = futures.pop(fut)
            try:
                table = fut.result()
            except KilledWorker as exc:
                table = _killed_rows(partitions[k], exc)
            except Exception as exc:
                for other in futures:
                    other.cancel()
                raise CatalogError(f"partition {k} (inputs {partitions[k][0].name} ... "
                                   f"{partitions[k][-1].name}) failed: {_error_text(exc)}"
                                   ) from exc
            else:
                if output is not None:
                    _write_part(table, _part_path(output, k, part_format), keys[k],
                                part_format)
            tables[k] = table
            bar.update(len(partitions[k]))
            fut.release()
    finally:
        for thing in reversed(owned):
            thing.close()


def _killed_rows(items, exc):
    """Error rows for a partition whose worker kept dying."""
    from astropy.table import QTable

    out = QTable()
    out["file"] = [it.name for it in items]
    out["status"] = ["error"] * len(items)
    out["error"] = [f"KilledWorker: the worker fitting this partition died too often "
                    f"({exc}); re-run to try again"] * len(items)
    return out
