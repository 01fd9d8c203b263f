"""Results of :func:`remap.fit`: per-star PMFs, summaries, neighbours and flags.

A `FitResult` holds the outcome for one star or a batch of stars in the same
storage (arrays with one row per star).  For each network head (``teff``,
``logg``, ``feh``) a `ParameterResult` gives the conflated probability mass
function (PMF) over the head's bins, its median, 16th/84th percentiles, mean
and standard deviation as `~astropy.units.Quantity`, and the PMF of every
beam.  `Flag` bits say what to be careful about; `FitResult.messages` says why.

The flags, their thresholds and rules are in :mod:`remap.inference.flags`.
Values that pipeline stages add per star (declared as a `Column`, e.g. a
radial velocity) are in `FitResult.values` and in the table.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import astropy.units as u
import numpy as np

from .flags import Flag, flag_names

__all__ = ["ParameterResult", "FitResult", "Column"]


class Column(NamedTuple):
    """A per-star output column declared by a pipeline stage (e.g. ``rv``).

    Attributes
    ----------
    unit : str
        Unit of the values (``""`` for plain numbers).
    description : str
        One line for the documentation and the table meta.
    stage : str
        Name of the stage that declares it.
    """

    unit: str
    description: str
    stage: str


def _head_unit(unit):
    return u.Unit(unit)


class ParameterResult:
    """The fitted distribution of one parameter (one network head) for one star or a batch.

    Made by `FitResult`; not meant to be built directly.

    Parameters
    ----------
    name : str
        Head name (``"teff"``).
    label : str
        Human-readable label (``"T_eff"``).
    unit : `astropy.units.UnitBase`
        Unit of the values.
    edges : ndarray, shape (n_bins + 1,)
        Bin edges in ``unit`` values.
    pmf : ndarray, shape (n, n_bins)
        Conflated PMFs (NaN rows for stars without a result).
    summary : dict of ndarray
        ``median``, ``p16``, ``p84``, ``mean``, ``std``, each of shape (n,).
    beam_pmfs : dict of str to ndarray
        Per-beam PMFs, shape (n, n_bins), NaN rows where the beam was not used.
    is_batch : bool
        False for a single star: accessors return scalars and 1-D PMFs.
    """

    def __init__(self, name, label, unit, edges, pmf, summary, beam_pmfs, is_batch):
        self.name = name
        self.label = label
        self.unit = _head_unit(unit)
        self._edges = np.asarray(edges, dtype=np.float64)
        self._pmf = pmf
        self._summary = summary
        self._beam_pmfs = beam_pmfs
        self.is_batch = bool(is_batch)

    def __repr__(self):
        if self.is_batch:
            return f"<ParameterResult {self.name!r}: {len(self._pmf)} stars>"
        return (f"<ParameterResult {self.name!r}: {self.median:.4g} "
                f"(16-84%: {self.p16.value:.4g}-{self.p84.value:.4g})>")

    def __len__(self):
        return len(self._pmf)

    def _value(self, key):
        values = self._summary[key]
        return (values if self.is_batch else values[0]) * self.unit

    @property
    def median(self):
        """Median of the PMF (`~astropy.units.Quantity`; CDF linear within bins)."""
        return self._value("median")

    @property
    def p16(self):
        """16th percentile (`~astropy.units.Quantity`)."""
        return self._value("p16")

    @property
    def p84(self):
        """84th percentile (`~astropy.units.Quantity`)."""
        return self._value("p84")

    @property
    def mean(self):
        """Mean of the PMF over the bin centres (`~astropy.units.Quantity`)."""
        return self._value("mean")

    @property
    def std(self):
        """Standard deviation of the PMF over the bin centres (`~astropy.units.Quantity`)."""
        return self._value("std")

    @property
    def pmf(self):
        """The conflated PMF: ndarray of shape (n, n_bins), or (n_bins,) for one star."""
        return self._pmf if self.is_batch else self._pmf[0]

    @property
    def bin_edges(self):
        """Bin edges (`~astropy.units.Quantity`, n_bins + 1)."""
        return self._edges * self.unit

    @property
    def bin_centers(self):
        """Bin centres (`~astropy.units.Quantity`, n_bins)."""
        return 0.5 * (self._edges[:-1] + self._edges[1:]) * self.unit

    @property
    def beam_pmfs(self):
        """Per-beam PMFs: dict beam -> ndarray (n, n_bins) or (n_bins,); NaN where unused."""
        if self.is_batch:
            return dict(self._beam_pmfs)
        return {beam: p[0] for beam, p in self._beam_pmfs.items()}


class FitResult:
    """The result of :func:`remap.fit` for one star or a batch of stars.

    A single-star input gives ``is_batch == False``: parameter accessors then
    return scalar quantities and 1-D PMFs.  ``result[i]`` is star ``i`` as a
    single-star result, ``result[a:b]`` a smaller batch; iterating yields
    single-star results.

    Parameters
    ----------
    heads : list of dict
        Per head: ``name``, ``label``, ``unit``, ``edges``.
    pmfs : dict of str to ndarray
        Conflated PMFs per head, shape (n, n_bins).
    summaries : dict of str to dict
        Per head: ``median``, ``p16``, ``p84``, ``mean``, ``std`` arrays (n,).
    beam_pmfs : dict of str to dict of str to ndarray
        Per head, per beam: PMFs (n, n_bins), NaN rows where the beam was not used.
    beams : list of str
        The model's beams.
    beams_used : list of tuple of str
        Beams used for each star.
    snr, masked_fraction : dict of str to ndarray
        Per beam, shape (n,); NaN where the beam was not used.
    neighbours : dict of str to dict of str to `remap.model.Neighbours`
        Per beam and head, with arrays of n rows (-1 / NaN rows where the beam
        was not used).
    flags : ndarray of int, shape (n,)
        `Flag` bits.
    messages : list of str
        One per star; empty when there is nothing to say.
    is_batch : bool
    meta : dict
        Model path and name, survey, remap version.
    timings : dict of str to float, optional
        Seconds spent in each pipeline stage (whole call, not per star).
    values : dict of str to ndarray, optional
        Per-star values added by pipeline stages, shape (n,), NaN where a
        star has none; each described in ``columns``.
    columns : dict of str to `Column`, optional
        Unit, description and stage of each entry of ``values``.
    index : ndarray of int, optional
        Position of each star in the caller's input (default ``0 … n-1``).
    notes : list of tuple, optional
        Per star, the structured notes (`remap.inference.Note` records: star,
        stage, code, message, beam) that ``messages`` are made of.

    Attributes
    ----------
    is_batch : bool
    beams_used : list of tuple of str
    snr : dict of str to ndarray
    masked_fraction : dict of str to ndarray
    flags : ndarray of int
    messages : list of str
    meta : dict
    timings : dict of str to float
    index : ndarray of int
    notes : list of tuple
    columns : dict of str to `Column`
    """

    def __init__(self, *, heads, pmfs, summaries, beam_pmfs, beams, beams_used, snr,
                 masked_fraction, neighbours, flags, messages, is_batch, meta, timings=None,
                 values=None, columns=None, index=None, notes=None):
        self._heads = [dict(h) for h in heads]
        self._pmfs = pmfs
        self._summaries = summaries
        self._beam_pmfs = beam_pmfs
        self.beams = list(beams)
        self._n = len(flags)
        self.beams_used = [tuple(b) for b in beams_used]
        self._snr = snr
        self._masked = masked_fraction
        self._neighbours = neighbours
        self._flags = np.asarray(flags, dtype=np.int64)
        self.messages = list(messages)
        self.is_batch = bool(is_batch)
        if not self.is_batch and self._n != 1:
            raise ValueError(f"a single-star FitResult needs exactly one row; received "
                             f"{self._n}")
        self.meta = dict(meta)
        self.timings = dict(timings or {})
        self.columns = dict(columns or {})
        self._values = {name: np.asarray(v, dtype=np.float64) for name, v in
                        (values or {}).items()}
        for name in self.columns:
            self._values.setdefault(name, np.full(self._n, np.nan))
        for name in self._values:
            if name not in self.columns:
                raise ValueError(f"value {name!r} has no column description")
            if self._values[name].shape != (self._n,):
                raise ValueError(f"value {name!r} has shape {self._values[name].shape}; "
                                 f"expected ({self._n},)")
        self.index = (np.arange(self._n, dtype=np.int64) if index is None
                      else np.asarray(index, dtype=np.int64))
        if self.index.shape != (self._n,):
            raise ValueError(f"index has shape {self.index.shape}; expected ({self._n},)")
        self.notes = [tuple(n) for n in notes] if notes is not None else [()] * self._n
        if len(self.notes) != self._n or len(self.messages) != self._n:
            raise ValueError(f"messages and notes need one entry per star ({self._n})")

    # ---------------------------------------------------------------- container
    def __len__(self):
        return self._n

    def __repr__(self):
        what = f"{self._n} stars" if self.is_batch else "1 star"
        bad = int(np.count_nonzero(self._flags))
        return (f"<FitResult: {what}, parameters {self.parameters}, beams {self.beams}, "
                f"{bad} flagged>")

    def _take(self, rows, is_batch):
        rows = np.asarray(rows, dtype=np.int64)
        neighbours = {}
        for beam, per_head in self._neighbours.items():
            neighbours[beam] = {h: type(nb)(nb.indices[rows], nb.distances[rows],
                                            nb.labels[rows], list(nb.label_names))
                                for h, nb in per_head.items()}
        return FitResult(
            heads=self._heads, pmfs={h: p[rows] for h, p in self._pmfs.items()},
            summaries={h: {k: v[rows] for k, v in s.items()}
                       for h, s in self._summaries.items()},
            beam_pmfs={h: {b: p[rows] for b, p in per.items()}
                       for h, per in self._beam_pmfs.items()},
            beams=self.beams, beams_used=[self.beams_used[i] for i in rows],
            snr={b: v[rows] for b, v in self._snr.items()},
            masked_fraction={b: v[rows] for b, v in self._masked.items()},
            neighbours=neighbours, flags=self._flags[rows],
            messages=[self.messages[i] for i in rows], is_batch=is_batch, meta=self.meta,
            timings=self.timings, values={k: v[rows] for k, v in self._values.items()},
            columns=self.columns, index=self.index[rows], notes=[self.notes[i] for i in rows])

    @classmethod
    def concatenate(cls, results, *, is_batch=True):
        """One result holding the stars of several results, in order.

        Parameters
        ----------
        results : sequence of `FitResult`
            Results of the same model (same heads, beams, neighbours and
            value columns), e.g. the batches :func:`remap.fit_iter` yields.
        is_batch : bool
            False only to make a single-star result of one star.

        Returns
        -------
        result : `FitResult`
            ``timings`` are summed; ``meta`` is the first result's.

        Raises
        ------
        ValueError
            No results, or results of different models.
        """
        results = list(results)
        if not results:
            raise ValueError("no results to concatenate")
        first = results[0]
        for r in results[1:]:
            if (r.parameters != first.parameters or r.beams != first.beams
                    or set(r._values) != set(first._values)
                    or {b: set(h) for b, h in r._neighbours.items()}
                    != {b: set(h) for b, h in first._neighbours.items()}):
                raise ValueError("cannot concatenate results of different models (heads, "
                                 "beams, neighbours or value columns differ)")

        def cat(get):
            return np.concatenate([get(r) for r in results])

        neighbours = {}
        for beam, per_head in first._neighbours.items():
            neighbours[beam] = {}
            for h, nb in per_head.items():
                neighbours[beam][h] = type(nb)(
                    cat(lambda r: r._neighbours[beam][h].indices),
                    cat(lambda r: r._neighbours[beam][h].distances),
                    cat(lambda r: r._neighbours[beam][h].labels), list(nb.label_names))
        timings = {}
        for r in results:
            for key, sec in r.timings.items():
                timings[key] = timings.get(key, 0.0) + sec
        names = first.parameters
        return cls(
            heads=first._heads, pmfs={h: cat(lambda r: r._pmfs[h]) for h in names},
            summaries={h: {k: cat(lambda r: r._summaries[h][k]) for k in first._summaries[h]}
                       for h in names},
            beam_pmfs={h: {b: cat(lambda r: r._beam_pmfs[h][b]) for b in first._beam_pmfs[h]}
                       for h in names},
            beams=first.beams, beams_used=[b for r in results for b in r.beams_used],
            snr={b: cat(lambda r: r._snr[b]) for b in first._snr},
            masked_fraction={b: cat(lambda r: r._masked[b]) for b in first._masked},
            neighbours=neighbours, flags=cat(lambda r: r._flags),
            messages=[m for r in results for m in r.messages], is_batch=is_batch,
            meta=first.meta, timings=timings,
            values={k: cat(lambda r: r._values[k]) for k in first._values},
            columns=first.columns, index=cat(lambda r: r.index),
            notes=[n for r in results for n in r.notes])

    def _index(self, i):
        if not isinstance(i, numbers.Integral) or isinstance(i, bool):
            raise TypeError(f"star index must be an integer; received {i!r}")
        j = int(i) + self._n if i < 0 else int(i)
        if not 0 <= j < self._n:
            raise IndexError(f"star index {i} out of range for {self._n} star(s)")
        return j

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._parameter(key)
        if isinstance(key, slice):
            return self._take(np.arange(self._n)[key], True)
        return self._take([self._index(key)], False)

    def __iter__(self):
        for i in range(self._n):
            yield self._take([i], False)

    def __getattr__(self, name):
        heads = self.__dict__.get("_heads", ())
        if any(h["name"] == name for h in heads):
            return self._parameter(name)
        if name in self.__dict__.get("_values", {}):
            return self.values[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self.parameters))

    # ---------------------------------------------------------------- accessors
    @property
    def parameters(self):
        """Names of the parameters (network heads), e.g. ``["teff", "logg", "feh"]``."""
        return [h["name"] for h in self._heads]

    def _head(self, name):
        for h in self._heads:
            if h["name"] == name:
                return h
        raise KeyError(f"no parameter {name!r}; parameters: {', '.join(self.parameters)}")

    def _parameter(self, name):
        h = self._head(name)
        return ParameterResult(h["name"], h["label"], h["unit"], h["edges"], self._pmfs[name],
                               self._summaries[name], self._beam_pmfs[name], self.is_batch)

    @property
    def flags(self):
        """`Flag` bits per star: int ndarray (n,), or an int for one star."""
        return self._flags.copy() if self.is_batch else int(self._flags[0])

    @property
    def snr(self):
        """Signal-to-noise estimate per beam: dict beam -> (n,) float (NaN where unused)."""
        return {b: (v.copy() if self.is_batch else float(v[0])) for b, v in self._snr.items()}

    @property
    def masked_fraction(self):
        """Masked fraction of the model grid per beam: dict beam -> (n,) (NaN where unused)."""
        return {b: (v.copy() if self.is_batch else float(v[0]))
                for b, v in self._masked.items()}

    @property
    def values(self):
        """Per-star values added by pipeline stages: dict name -> `~astropy.units.Quantity`.

        Shape (n,) for a batch, scalar for one star; NaN where a star has
        none.  `columns` describes each (unit, description, stage).
        """
        out = {}
        for name, v in self._values.items():
            q = u.Quantity(v if self.is_batch else v[0], u.Unit(self.columns[name].unit))
            out[name] = q
        return out

    @property
    def neighbours(self):
        """Nearest training spectra: dict beam -> dict head -> `remap.model.Neighbours`.

        Arrays have a leading star axis for a batch (``indices`` (n, k),
        ``distances`` (n, k), ``labels`` (n, k, n_labels)) and none for one
        star; rows of unused beams hold -1 / NaN.
        """
        out = {}
        for beam, per_head in self._neighbours.items():
            out[beam] = {}
            for h, nb in per_head.items():
                if self.is_batch:
                    out[beam][h] = nb
                else:
                    out[beam][h] = type(nb)(nb.indices[0], nb.distances[0], nb.labels[0],
                                            list(nb.label_names))
        return out

    def flag_names(self, i=0):
        """Names of the flags set for star ``i`` (e.g. ``["MISSING_BEAM"]``)."""
        return flag_names(self._flags[self._index(i)])

    # ---------------------------------------------------------------- tables
    def to_table(self, pmfs=False):
        """One row per star as an astropy `~astropy.table.QTable`.

        Parameters
        ----------
        pmfs : bool
            Also add ``<head>_pmf`` columns holding each conflated PMF (arrays
            of n_bins values; the bin edges are in the table meta).

        Returns
        -------
        table : `~astropy.table.QTable`
            Columns, for every head: ``<head>`` (median), ``<head>_p16``,
            ``<head>_p84``, ``<head>_mean``, ``<head>_std`` with units; then
            ``flags`` (int), ``flag_names`` (comma-separated), ``beams``
            (comma-separated beams used), ``snr_<beam>`` per model beam, the
            per-star values the pipeline's stages declare (`values`, with
            their units) and ``message``.  ``meta`` holds ``model``, ``model_name``, ``survey``,
            ``remap_version``, ``bin_edges`` ({head: list}) and ``flag_bits``.
        """
        from astropy.table import QTable

        table = QTable()
        for h in self._heads:
            name, unit = h["name"], _head_unit(h["unit"])
            s = self._summaries[name]
            table[name] = s["median"] * unit
            for key in ("p16", "p84", "mean", "std"):
                table[f"{name}_{key}"] = s[key] * unit
            if pmfs:
                table[f"{name}_pmf"] = np.asarray(self._pmfs[name], dtype=np.float64)
        table["flags"] = self._flags.copy()
        table["flag_names"] = np.array([",".join(flag_names(f)) for f in self._flags],
                                       dtype=str)
        table["beams"] = np.array([",".join(b) for b in self.beams_used], dtype=str)
        for beam in self.beams:
            table[f"snr_{beam}"] = np.asarray(self._snr[beam], dtype=np.float64)
        for name, col in self.columns.items():
            unit = u.Unit(col.unit)
            values = self._values[name].copy()
            table[name] = values * unit if unit != u.dimensionless_unscaled else values
            table[name].info.description = col.description
        table["message"] = np.array(self.messages, dtype=str)
        table.meta.update(self.meta)
        table.meta["bin_edges"] = {h["name"]: [float(e) for e in h["edges"]]
                                   for h in self._heads}
        table.meta["flag_bits"] = {f.name: int(f) for f in Flag}
        return table

    def neighbour_table(self, i=0, head=None):
        """The k nearest training spectra of star ``i`` in each used beam's embedding spaces.

        Parameters
        ----------
        i : int
            Star index.
        head : str, optional
            Only this head's embedding space (default: every head).

        Returns
        -------
        table : `~astropy.table.QTable`
            One row per (beam, head, rank): ``beam``, ``head``, ``rank`` (1 =
            nearest), ``index`` (row of the stored training embeddings),
            ``distance`` and the neighbour's labels (with units where a
            label is a head).  Empty when no embeddings are stored.
        """
        from astropy.table import QTable

        j = self._index(i)
        if head is not None:
            self._head(head)
        units = {h["name"]: _head_unit(h["unit"]) for h in self._heads}
        rows = {"beam": [], "head": [], "rank": [], "index": [], "distance": []}
        label_names = []
        labels = []
        for beam, per_head in self._neighbours.items():
            if beam not in self.beams_used[j]:
                continue
            for h, nb in per_head.items():
                if head is not None and h != head:
                    continue
                label_names = list(nb.label_names)
                for r in range(nb.indices.shape[1]):
                    rows["beam"].append(beam)
                    rows["head"].append(h)
                    rows["rank"].append(r + 1)
                    rows["index"].append(int(nb.indices[j, r]))
                    rows["distance"].append(float(nb.distances[j, r]))
                    labels.append(nb.labels[j, r])
        table = QTable()
        table["beam"] = np.array(rows["beam"], dtype=str)
        table["head"] = np.array(rows["head"], dtype=str)
        table["rank"] = np.array(rows["rank"], dtype=np.int64)
        table["index"] = np.array(rows["index"], dtype=np.int64)
        table["distance"] = np.array(rows["distance"], dtype=np.float64)
        values = np.array(labels, dtype=np.float64).reshape(len(labels), len(label_names))
        for c, name in enumerate(label_names):
            col = values[:, c]
            table[name] = col * units[name] if name in units else col
        return table

    # ---------------------------------------------------------------- figure
    def plot(self, i=0, ax=None):
        """Plot the PMFs of star ``i``: one panel per parameter.

        Each panel shows the conflated PMF (steps), the per-beam PMFs (thin
        lines), the median (solid vertical line) and the 16th/84th percentiles
        (dashed).

        Parameters
        ----------
        i : int
            Star index.
        ax : sequence of `matplotlib.axes.Axes`, optional
            One axes per parameter; by default a new figure with one row of
            panels is made (`matplotlib.figure.Figure`, no pyplot state).

        Returns
        -------
        figure : `matplotlib.figure.Figure`
        """
        from matplotlib.figure import Figure

        j = self._index(i)
        n_heads = len(self._heads)
        if ax is None:
            fig = Figure(figsize=(4.0 * n_heads, 3.2), layout="constrained")
            axes = fig.subplots(1, n_heads, squeeze=False)[0]
        else:
            axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
            if len(axes) != n_heads:
                raise ValueError(f"ax must hold {n_heads} axes (one per parameter); received "
                                 f"{len(axes)}")
            fig = axes[0].figure
        for a, h in zip(axes, self._heads):
            name, unit = h["name"], _head_unit(h["unit"])
            edges = np.asarray(h["edges"], dtype=float)
            pmf = self._pmfs[name][j]
            unit_text = unit.to_string()
            if np.all(np.isfinite(pmf)):
                a.stairs(pmf, edges, color="k", lw=1.5, label="conflated")
                for k, (beam, bp) in enumerate(self._beam_pmfs[name].items()):
                    row = bp[j]
                    if np.all(np.isfinite(row)):
                        a.stairs(row / row.sum(), edges, color=f"C{k}", lw=0.8,
                                 label=f"beam {beam}")
                s = self._summaries[name]
                a.axvline(s["median"][j], color="C3", lw=1.2, label="median")
                for key in ("p16", "p84"):
                    a.axvline(s[key][j], color="C3", lw=0.8, ls="--",
                              label="16/84 %" if key == "p16" else None)
                lo = max(edges[0], s["p16"][j] - 4 * (s["median"][j] - s["p16"][j]) - 3 * (
                    edges[1] - edges[0]))
                hi = min(edges[-1], s["p84"][j] + 4 * (s["p84"][j] - s["median"][j]) + 3 * (
                    edges[1] - edges[0]))
                if hi > lo:
                    a.set_xlim(lo, hi)
            else:
                a.text(0.5, 0.5, "no result", ha="center", va="center",
                       transform=a.transAxes)
            a.set_xlabel(f"{h['label']} [{unit_text}]" if unit_text else h["label"])
            a.set_ylabel("probability")
        axes[0].legend(fontsize="small", loc="upper left")
        title = ", ".join(self.beams_used[j]) or "no beam"
        flags = self.flag_names(j)
        fig.suptitle(f"star {j}: beams {title}" + (f"; flags {', '.join(flags)}"
                                                   if flags else ""), fontsize="medium")
        return fig
