"""How well a model recovers known labels: bias, scatter, calibration, embeddings.

:func:`evaluate` runs a model on a labelled data set (a `remap.datasets.Dataset`
of continuum-normalized spectra on the beams' grids, such as a simulated
survey set from ``remap dataset simulate``), conflates the beams' PMFs of each
star (Hill & Miller 2011; Gilda 2025, Eq. 6) and compares the predictions with
the labels.  The :class:`EvaluationReport` holds, per parameter, for every beam
alone and for the conflated PMFs:

``bias``
    mean of (predicted median - true), the :math:`\\mu_\\Delta` of Gilda (2025),
    Table 1;
``scatter``
    standard deviation of those differences (:math:`\\sigma_\\Delta`, Table 1;
    population standard deviation, ``ddof=0``);
``mad_scatter``
    1.4826 x the median absolute deviation of the differences from their
    median: the standard deviation for Gaussian residuals, insensitive to a few
    outliers;
``rms``
    root mean square of the differences (bias and scatter together);
``coverage_68``, ``coverage_95``
    fraction of stars whose true value lies in the central 68 % (16th-84th
    percentile) or 95 % (2.5th-97.5th) interval of its PMF; a calibrated model
    gives 0.68 and 0.95, an over-confident one less, an under-confident one more;
``median_sigma``
    median of the predicted half-widths (p84 - p16) / 2: the typical quoted
    uncertainty, to compare with ``scatter``;
``n``
    stars with both a finite true value and a prediction from that source.

The probability integral transform (PIT) of a star is the predicted CDF at its
true value (:func:`pit`); for a calibrated model it is uniform on [0, 1], which
the calibration figure shows as a histogram (:meth:`EvaluationReport.calibration`).

The metrics themselves are in :mod:`remap.evaluation.metrics`;
:func:`remap.evaluation.embed` (:mod:`remap.evaluation.embedding`) projects a
network's embeddings to two dimensions with t-SNE (van der Maaten & Hinton
2008), coloured by the labels, like Gilda (2025), Figs. 2-3.
"""

from __future__ import annotations

import math
from pathlib import Path

import astropy.units as u
import numpy as np

from .._util.validators import check_int
from ..datasets import Dataset
from ..labels import LabelBins, conflate
from ..model.cache import resolve_model as _resolve_model
from .metrics import (CONFLATED, DEFAULT_LEVELS, METRIC_NAMES, PAPER_TABLE1, EvaluationError,
                      _check_pmf, _decimals, coverage, parameter_metrics, pit)

__all__ = ["EvaluationReport", "evaluate", "resolve_model", "resolve_dataset"]

_READ_BLOCK = 1024


# --------------------------------------------------------------------------- report

class EvaluationReport:
    """Predictions of a model on labelled stars, with metrics and figures.

    Made by :func:`evaluate`; it can also be built from PMFs directly.

    Parameters
    ----------
    bins : dict of str to `remap.labels.LabelBins`
        One entry per parameter (head), in display order.
    truth : dict of str to array_like, shape (n,)
        True values per parameter in the head's unit (NaN = unknown).
    pmfs : dict of str to dict of str to array_like, shape (n, n_bins)
        ``{source: {parameter: pmf}}``; the sources are the beams and
        :data:`CONFLATED`.  A row of NaN means that source has no prediction
        for that star.
    meta : dict, optional
        Free-form description (model, data set, truth kind, ...); copied into
        the tables.

    Attributes
    ----------
    parameters : list of str
    sources : list of str
    n_stars : int
    metrics : dict
        ``{source: {parameter: {metric: value}}}`` (see :data:`METRIC_NAMES`).
    """

    def __init__(self, bins, truth, pmfs, *, meta=None):
        if not bins:
            raise ValueError("an evaluation report needs at least one parameter")
        if not pmfs:
            raise ValueError("an evaluation report needs the PMFs of at least one source")
        self.bins = dict(bins)
        self.parameters = list(self.bins)
        for name, b in self.bins.items():
            if not isinstance(b, LabelBins):
                raise TypeError(f"bins[{name!r}] must be a remap.labels.LabelBins; received "
                                f"{type(b).__name__}")
        missing = [p for p in self.parameters if p not in truth]
        if missing:
            raise ValueError(f"no true values for parameter(s) {missing}")
        self.truth = {p: np.asarray(truth[p], dtype=np.float64) for p in self.parameters}
        sizes = {p: v.shape for p, v in self.truth.items()}
        shape = next(iter(sizes.values()))
        if len(shape) != 1 or any(s != shape for s in sizes.values()):
            raise ValueError(f"true values must be 1-D arrays of one length; received shapes "
                             f"{sizes}")
        self.n_stars = int(shape[0])
        self.sources = list(pmfs)
        self.pmfs = {}
        for source, by_param in pmfs.items():
            absent = [p for p in self.parameters if p not in by_param]
            if absent:
                raise ValueError(f"source {source!r} has no PMFs for parameter(s) {absent}")
            self.pmfs[source] = {p: _check_pmf(self.bins[p], by_param[p], self.truth[p])[0]
                                 for p in self.parameters}
        self.meta = dict(meta or {})
        self.metrics = {s: {p: parameter_metrics(self.bins[p], self.pmfs[s][p], self.truth[p])
                            for p in self.parameters} for s in self.sources}
        self._summaries = {}

    def __repr__(self):
        return (f"<EvaluationReport: {self.n_stars} stars, parameters {self.parameters}, "
                f"sources {self.sources}>")

    @property
    def default_source(self):
        """:data:`CONFLATED` when present, else the first source."""
        return CONFLATED if CONFLATED in self.sources else self.sources[0]

    def _check_source(self, source):
        source = self.default_source if source is None else source
        if source not in self.sources:
            raise EvaluationError(f"the report has no source {source!r}; sources: "
                                  f"{self.sources}")
        return source

    def summary(self, source=None, parameter=None):
        """Decoded predictions (``median``, ``p16``, ``p84``, ``mean``, ``std``) of one source.

        Parameters
        ----------
        source : str, optional
            Default :attr:`default_source`.
        parameter : str, optional
            One parameter; by default a dict over all parameters.
        """
        source = self._check_source(source)
        if source not in self._summaries:
            self._summaries[source] = {p: self.bins[p].decode(self.pmfs[source][p])
                                       for p in self.parameters}
        if parameter is None:
            return self._summaries[source]
        if parameter not in self.parameters:
            raise EvaluationError(f"the report has no parameter {parameter!r}; parameters: "
                                  f"{self.parameters}")
        return self._summaries[source][parameter]

    def pit(self, source=None):
        """PIT values (:func:`pit`) per parameter of one source, shape (n_stars,) each."""
        source = self._check_source(source)
        return {p: pit(self.bins[p], self.pmfs[source][p], self.truth[p])
                for p in self.parameters}

    def coverage_curve(self, source=None, levels=DEFAULT_LEVELS):
        """Coverage of the central intervals at several nominal ``levels``, per parameter.

        Returns
        -------
        curve : dict of str to ndarray, shape (len(levels),)
        """
        source = self._check_source(source)
        return {p: np.array([coverage(self.bins[p], self.pmfs[source][p], self.truth[p], lv)
                             for lv in levels]) for p in self.parameters}

    # -------------------------------------------------------------- tables
    def to_table(self):
        """The metrics as an astropy `~astropy.table.QTable`, one row per source and parameter.

        Columns: ``source``, ``parameter``, ``label``, ``unit`` and the
        metrics of :data:`METRIC_NAMES` (values in the row's ``unit``;
        coverages are fractions).  ``meta`` holds :attr:`meta`.
        """
        from astropy.table import QTable
        rows = []
        for s in self.sources:
            for p in self.parameters:
                head = self.bins[p].head
                m = self.metrics[s][p]
                rows.append([s, p, head.label, head.unit.to_string()]
                            + [m[k] for k in METRIC_NAMES])
        names = ["source", "parameter", "label", "unit", *METRIC_NAMES]
        table = QTable(rows=rows, names=names)
        for k in METRIC_NAMES:
            table[k].description = _METRIC_DESCRIPTIONS[k]
        table.meta.update(self.meta)
        table.meta["n_stars"] = self.n_stars
        return table

    def predictions_table(self):
        """One row per star: true values and predictions with units.

        Columns per parameter ``p``: ``p_true``; ``p``, ``p_p16``, ``p_p84``
        and ``p_pit`` of the default source (conflated); ``p_<beam>`` (the
        median) of each other source.
        """
        from astropy.table import QTable
        table = QTable()
        table["index"] = np.arange(self.n_stars)
        main = self.default_source
        for p in self.parameters:
            unit = self.bins[p].head.unit
            summary = self.summary(main, p)
            table[f"{p}_true"] = self.truth[p] * unit
            table[p] = summary["median"] * unit
            table[f"{p}_p16"] = summary["p16"] * unit
            table[f"{p}_p84"] = summary["p84"] * unit
            table[f"{p}_pit"] = self.pit(main)[p]
            for s in self.sources:
                if s != main:
                    table[f"{p}_{s}"] = self.summary(s, p)["median"] * unit
        table.meta.update(self.meta)
        table.meta["source"] = main
        return table

    def to_markdown(self):
        """The metrics as Markdown: a Table-1-style table per source, then the paper's numbers."""
        lines = []
        title = self.meta.get("title")
        if title:
            lines += [f"# {title}", ""]
        described = [(k, self.meta[k]) for k in ("model", "data", "truth") if k in self.meta]
        if described:
            lines += ["; ".join(f"{k}: `{v}`" for k, v in described), ""]
        for s in self.sources:
            name = (f"Conflated ({' + '.join(x for x in self.sources if x != CONFLATED)})"
                    if s == CONFLATED else f"Beam {s}")
            lines += [f"## {name}", ""]
            lines += ["| Parameter | n | Bias μ_Δ | Scatter σ_Δ | Robust scatter | RMS "
                      "| Median σ | 68 % coverage | 95 % coverage |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for p in self.parameters:
                head = self.bins[p].head
                m = self.metrics[s][p]
                d = _decimals(self.bins[p])
                unit = head.unit.to_string()

                def fmt(v, signed=False, d=d, unit=unit):
                    if not np.isfinite(v):
                        return "–"
                    return f"{v:{'+' if signed else ''}.{d}f} {unit}".strip()

                def frac(v):
                    return f"{v:.2f}" if np.isfinite(v) else "–"

                lines.append(f"| {head.label} ({unit}) | {m['n']} | {fmt(m['bias'], True)} | "
                             f"{fmt(m['scatter'])} | {fmt(m['mad_scatter'])} | {fmt(m['rms'])} "
                             f"| {fmt(m['median_sigma'])} | {frac(m['coverage_68'])} | "
                             f"{frac(m['coverage_95'])} |")
            lines.append("")
        paper = [p for p in self.parameters if p in PAPER_TABLE1]
        if paper:
            lines += ["Gilda (2025), Table 1, 30 MARVELS calibration stars, both beams "
                      "conflated: "
                      + "; ".join(f"{self.bins[p].head.label} bias "
                                  f"{PAPER_TABLE1[p]['bias']:+g} {PAPER_TABLE1[p]['unit']}, "
                                  f"scatter {PAPER_TABLE1[p]['scatter']:g} "
                                  f"{PAPER_TABLE1[p]['unit']}" for p in paper) + ".", ""]
        lines += ["Bias: mean of (predicted median − true). Scatter: standard deviation of "
                  "the differences. Robust scatter: 1.4826 × median absolute deviation. "
                  "Median σ: median of the predicted (p84 − p16)/2. Coverage: fraction of "
                  "true values inside the central 68 % / 95 % interval of the PMF.", ""]
        return "\n".join(lines)

    # -------------------------------------------------------------- figures
    def one_to_one(self, source=None, *, figsize=None):
        """Predicted median against true value, with 16th-84th percentile error bars.

        Gilda (2025), Fig. 4: one column per parameter, the one-to-one line
        dashed, the residuals (predicted - true) in a panel below each; bias
        and scatter in the legend.

        Parameters
        ----------
        source : str, optional
            Default :attr:`default_source` (the conflated PMFs).
        figsize : (float, float), optional

        Returns
        -------
        fig : `matplotlib.figure.Figure`
        """
        from matplotlib.figure import Figure
        source = self._check_source(source)
        ncol = len(self.parameters)
        fig = Figure(figsize=figsize or (4.2 * ncol, 5.6), layout="constrained")
        axes = fig.subplots(2, ncol, squeeze=False, sharex="col",
                            gridspec_kw={"height_ratios": [3, 1]})
        for j, p in enumerate(self.parameters):
            head = self.bins[p].head
            unit = head.unit.to_string()
            s = self.summary(source, p)
            t = self.truth[p]
            ok = np.isfinite(t) & np.isfinite(s["median"])
            m = self.metrics[source][p]
            top, bottom = axes[0, j], axes[1, j]
            d = _decimals(self.bins[p])
            label = (f"bias {m['bias']:+.{d}f} {unit}\nscatter {m['scatter']:.{d}f} {unit}\n"
                     f"n = {m['n']}") if m["n"] else "no predictions"
            yerr = np.vstack([s["median"][ok] - s["p16"][ok], s["p84"][ok] - s["median"][ok]])
            top.errorbar(t[ok], s["median"][ok], yerr=np.clip(yerr, 0, None), fmt="o", ms=3.5,
                         color="C0", ecolor="C0", elinewidth=0.8, alpha=0.85, label=label)
            if ok.any():
                lo = min(t[ok].min(), s["p16"][ok].min())
                hi = max(t[ok].max(), s["p84"][ok].max())
                pad = 0.05 * (hi - lo or 1.0)
                line = np.array([lo - pad, hi + pad])
                top.plot(line, line, "--", color="C3", lw=1.0)
                top.set_xlim(line)
                top.set_ylim(line)
            top.set_ylabel(f"predicted {head.label} [{unit}]")
            top.legend(loc="upper left", fontsize="small", handlelength=0.8)
            bottom.errorbar(t[ok], s["median"][ok] - t[ok], yerr=np.clip(yerr, 0, None),
                            fmt="o", ms=3.5, color="C0", ecolor="C0", elinewidth=0.8,
                            alpha=0.85)
            bottom.axhline(0.0, ls="--", color="C3", lw=1.0)
            bottom.set_xlabel(f"true {head.label} [{unit}]")
            bottom.set_ylabel(f"Δ [{unit}]")
        fig.suptitle(self._figure_title(source))
        return fig

    def calibration(self, source=None, *, levels=DEFAULT_LEVELS, pit_bins=10, figsize=None):
        """Coverage against nominal level, and PIT histograms, per parameter.

        Top row: the fraction of true values inside each central interval
        against its nominal probability (a calibrated model lies on the
        diagonal; below it the PMFs are too narrow), for ``source`` (thick) and
        each other source (thin).  Bottom row: histogram of the PIT values of
        ``source`` with the uniform expectation and its ±1σ binomial band.

        Parameters
        ----------
        source : str, optional
            Default :attr:`default_source`.
        levels : sequence of float
            Nominal levels, each in (0, 1).
        pit_bins : int
            Bins of the PIT histogram.
        figsize : (float, float), optional

        Returns
        -------
        fig : `matplotlib.figure.Figure`
        """
        from matplotlib.figure import Figure
        source = self._check_source(source)
        pit_bins = check_int("pit_bins", pit_bins, 2)
        levels = np.asarray(levels, dtype=float)
        ncol = len(self.parameters)
        fig = Figure(figsize=figsize or (4.0 * ncol, 7.0), layout="constrained")
        axes = fig.subplots(2, ncol, squeeze=False)
        curves = {s: self.coverage_curve(s, levels) for s in self.sources}
        pits = self.pit(source)
        for j, p in enumerate(self.parameters):
            head = self.bins[p].head
            top, bottom = axes[0, j], axes[1, j]
            top.plot([0, 1], [0, 1], "--", color="0.5", lw=1.0, label="calibrated")
            for k, s in enumerate(self.sources):
                main = s == source
                name = "conflated" if s == CONFLATED else f"beam {s}"
                top.plot(levels, curves[s][p], "o-" if main else "-", ms=3,
                         lw=2.0 if main else 1.0, alpha=1.0 if main else 0.7,
                         color="C0" if main else f"C{k + 1}", label=name)
            top.set_xlim(0, 1)
            top.set_ylim(0, 1)
            top.set_aspect("equal")
            top.set_xlabel("nominal level of the central interval")
            top.set_ylabel("fraction of true values inside")
            top.set_title(f"{head.label}")
            top.legend(loc="upper left", fontsize="small")
            values = pits[p][np.isfinite(pits[p])]
            edges = np.linspace(0.0, 1.0, int(pit_bins) + 1)
            counts, _ = np.histogram(values, bins=edges)
            n = values.size
            if n:
                expect = n / pit_bins
                band = math.sqrt(n * (1.0 / pit_bins) * (1.0 - 1.0 / pit_bins))
                bottom.axhspan(max(expect - band, 0.0), expect + band, color="0.85",
                               zorder=0, label="uniform ±1σ")
                bottom.axhline(expect, color="0.3", lw=1.0, ls="--", zorder=3)
            bottom.stairs(counts, edges, fill=True, alpha=0.75, color="C0", zorder=2,
                          label=f"PIT, n = {n}")
            bottom.set_xlim(0, 1)
            top_count = max(counts.max(initial=0), (n / pit_bins + band) if n else 1.0)
            bottom.set_ylim(0, 1.35 * top_count)          # room for the legend
            bottom.set_xlabel(f"PIT = predicted CDF at true {head.label}")
            bottom.set_ylabel("stars")
            bottom.legend(loc="upper center", fontsize="small")
        fig.suptitle(self._figure_title(source))
        return fig

    def _figure_title(self, source):
        which = "conflated beams" if source == CONFLATED else f"beam {source}"
        data = self.meta.get("data_name") or self.meta.get("data")
        return f"{data}: {which}" if data else which


_METRIC_DESCRIPTIONS = {
    "n": "stars with a finite true value and a prediction",
    "bias": "mean of (predicted median - true)",
    "scatter": "standard deviation of (predicted median - true)",
    "mad_scatter": "1.4826 x median absolute deviation of (predicted median - true)",
    "rms": "root mean square of (predicted median - true)",
    "coverage_68": "fraction of true values within the PMF's 16th-84th percentiles",
    "coverage_95": "fraction of true values within the PMF's 2.5th-97.5th percentiles",
    "median_sigma": "median of the predicted (p84 - p16) / 2",
}


# --------------------------------------------------------------------------- inputs

def resolve_model(model=None):
    """A `~remap.model.RemapModel` from a model, an artifact path, or None (the default).

    The rules of :func:`remap.fit`: None gives :func:`remap.default_model`, a
    path is loaded once per process (:func:`remap.model.cache.cached_model`).
    """
    return _resolve_model(model)


def resolve_dataset(data):
    """A `~remap.datasets.Dataset` from a data set or its directory; empty sets are refused."""
    if isinstance(data, (str, Path)):
        data = Dataset(data)
    elif not isinstance(data, Dataset):
        raise TypeError(f"data must be a remap.datasets.Dataset or its directory; received "
                        f"{type(data).__name__}")
    if len(data) == 0:
        raise EvaluationError(f"the data set {str(data.directory)!r} is empty (0 samples"
                              f"{'' if data.complete else '; its build has not finished'})")
    return data


def _check_beams(model, data, beams):
    """The beams to use: checked to exist in both and to have the model's grid."""
    if beams is None:
        beams = [b for b in model.beams if b in data.beams]
        if not beams:
            raise EvaluationError(f"the data set has none of the model's beams (model: "
                                  f"{model.beams}; data set: {data.beams})")
    else:
        beams = [beams] if isinstance(beams, str) else list(beams)
        if not beams:
            raise EvaluationError("beams is empty; give at least one beam or None for all")
        for b in beams:
            if b not in model.beams:
                raise EvaluationError(f"the model has no beam {b!r}; its beams: {model.beams}")
            if b not in data.beams:
                raise EvaluationError(f"the data set has no beam {b!r}; its beams: "
                                      f"{data.beams}")
    for b in beams:
        want = model.wavelength(b).to_value(u.AA)
        have = data.grid(b).to_value(u.AA)
        step = model.grid(b)["sampling"]
        if have.shape != want.shape or not np.allclose(have, want, rtol=0, atol=1e-3 * step):
            raise EvaluationError(
                f"the data set's beam {b} grid ({have.size} px, {have[0]:.3f}-{have[-1]:.3f} Å) "
                f"does not match the model's ({want.size} px, {want[0]:.3f}-{want[-1]:.3f} Å, "
                f"step {step:g} Å); build the data set on the model's grid (survey "
                f"{model.survey!r})")
    return beams


def _truth_columns(model, data, truth):
    """{head: (n,) true values} for the heads that the data set has labels of."""
    if truth not in ("labels", "true"):
        raise EvaluationError(f"truth must be 'labels' (the data set's labels) or 'true' (the "
                              f"noiseless values a simulated set keeps as metadata); received "
                              f"truth={truth!r}")
    table = data.labels
    out = {}
    for head in model.heads:
        col = head.name if truth == "labels" else f"{head.name}_true"
        if col in table.colnames:
            column = table[col]
            if column.unit is not None:
                values = u.Quantity(column).to_value(head.unit)
            else:
                values = np.asarray(column)
            out[head.name] = np.asarray(values, dtype=np.float64)
    if not out:
        cols = [h.name if truth == "labels" else f"{h.name}_true" for h in model.heads]
        hint = (" (only simulated sets store the true values; use truth='labels')"
                if truth == "true" else "")
        raise EvaluationError(f"the data set has none of the columns {cols}{hint}; its "
                              f"columns: {table.colnames}")
    return out


def _fill_bad_pixels(flux, mask):
    """Interpolate non-finite pixels; rows with no usable pixel are returned in ``dead``."""
    flux = np.array(flux, dtype=np.float32)
    finite = np.isfinite(flux)
    dead = ~np.any(finite & ~mask, axis=1)
    x = np.arange(flux.shape[1])
    for i in np.flatnonzero(~np.all(finite, axis=1) & ~dead):
        good = finite[i]
        flux[i, ~good] = np.interp(x[~good], x[good], flux[i, good])
    flux[dead] = 1.0
    return flux, dead


def _predict_dataset(model, data, beam, indices, batch_size, outputs):
    """Run one beam's network over the data set in blocks; collect the named outputs."""
    parts = {k: [] for k in outputs}
    for start in range(0, indices.size, _READ_BLOCK):
        idx = indices[start:start + _READ_BLOCK]
        flux, mask, _, _ = data.read_arrays(idx, beam)
        flux, dead = _fill_bad_pixels(flux, mask)
        out = model.predict(beam, flux, batch_size=batch_size)
        for k in outputs:
            if k not in out:
                raise EvaluationError(f"the network of beam {beam!r} has no output {k!r}; "
                                      f"outputs: {sorted(out)}")
            arr = np.asarray(out[k], dtype=np.float64)
            arr[dead] = np.nan
            parts[k].append(arr)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _indices(data, indices):
    if indices is None:
        return np.arange(len(data))
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise TypeError("indices must be a 1-D sequence of integers")
    if idx.size == 0:
        raise EvaluationError("indices selects no star")
    n = len(data)
    if idx.min() < -n or idx.max() >= n:
        raise EvaluationError(f"indices out of range for a data set of {n} samples")
    return np.where(idx < 0, idx + n, idx).astype(np.int64)


def evaluate(model, data, *, beams=None, batch_size=256, truth="labels", indices=None):
    """Predict a labelled data set, conflate the beams, and compare with the labels.

    Parameters
    ----------
    model : `~remap.model.RemapModel`, str, path or None
        A loaded model, an artifact directory, or None for the default model.
    data : `~remap.datasets.Dataset`, str or path
        Continuum-normalized spectra on the model's beam grids, with labels
        (e.g. ``remap dataset simulate`` or
        :func:`remap.simulate.build_simulated`).  Row ``i`` of every beam is
        star ``i``.
    beams : sequence of str, optional
        Beams to use; by default every beam of the model that the data set
        has.  The conflated PMF of a star combines these beams.
    batch_size : int
        Spectra per forward pass.
    truth : {"labels", "true"}
        Compare with the data set's labels (default; for a simulated set these
        carry the survey-like label errors, like literature values do) or with
        the noiseless ``<head>_true`` values a simulated set stores as metadata.
    indices : sequence of int, optional
        Evaluate only these stars (e.g. the rows not used for fine-tuning).

    Returns
    -------
    report : `EvaluationReport`
        Sources: each beam, and :data:`CONFLATED`.

    Raises
    ------
    EvaluationError
        An empty data set; a beam that the model or the data set lacks; a
        beam grid that differs from the model's; no label column for any of
        the model's heads.

    Notes
    -----
    Non-finite flux values are interpolated linearly from their neighbours;
    a star whose spectrum in a beam has no finite, unmasked pixel gets no
    prediction from that beam (its conflated PMF comes from the other beams).
    """
    batch_size = check_int("batch_size", batch_size, 1)
    data = resolve_dataset(data)
    model = resolve_model(model)
    beams = _check_beams(model, data, beams)
    true_all = _truth_columns(model, data, truth)
    idx = _indices(data, indices)
    params = [h.name for h in model.heads if h.name in true_all]
    pmfs = {b: _predict_dataset(model, data, b, idx, batch_size, params) for b in beams}
    pmfs[CONFLATED] = {p: conflate(*[pmfs[b][p] for b in beams]) for p in params}
    meta = {"model": str(model.path), "data": str(data.directory),
            "data_name": data.directory.name, "truth": truth, "beams": ",".join(beams),
            "survey": data.survey}
    return EvaluationReport({p: model.bins[p] for p in params},
                            {p: true_all[p][idx] for p in params}, pmfs, meta=meta)
