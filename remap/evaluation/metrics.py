"""Metrics of predicted PMFs against true labels: bias, scatter, coverage, PIT.

Used by :class:`remap.evaluation.EvaluationReport`; see :mod:`remap.evaluation.report`
for what each metric means.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..exceptions import RemapError
from .._util.stats import MAD_TO_SIGMA

__all__ = ["CONFLATED", "DEFAULT_LEVELS", "METRIC_NAMES", "PAPER_TABLE1", "EvaluationError",
           "pit", "coverage", "parameter_metrics"]

#: Name of the source whose PMFs are the conflation of every beam's.
CONFLATED = "conflated"

#: Nominal levels of the central intervals drawn in the calibration figure.
DEFAULT_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.68, 0.7, 0.8, 0.9, 0.95, 0.99)

#: Metrics of one parameter and source, in the order of :meth:`EvaluationReport.to_table`.
METRIC_NAMES = ("n", "bias", "scatter", "mad_scatter", "rms", "coverage_68", "coverage_95",
                "median_sigma")

#: Gilda (2025), Table 1: bias and scatter on the 30 MARVELS calibration stars
#: (both beams conflated), for comparison.
PAPER_TABLE1 = {"teff": {"bias": -10.0, "scatter": 75.0, "unit": "K"},
                "logg": {"bias": 0.02, "scatter": 0.12, "unit": "dex"},
                "feh": {"bias": -0.01, "scatter": 0.08, "unit": "dex"}}


class EvaluationError(RemapError, ValueError):
    """A model and a data set that cannot be evaluated together, or bad options."""


# --------------------------------------------------------------------------- metrics

def _check_pmf(bins, pmf, truth):
    p = np.asarray(pmf, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != bins.n_bins:
        raise ValueError(f"PMFs of head {bins.head.name!r} must have shape (n, {bins.n_bins}); "
                         f"received shape {p.shape}")
    if t.shape != (p.shape[0],):
        raise ValueError(f"truth of head {bins.head.name!r} must have shape ({p.shape[0]},) "
                         f"like the PMFs; received shape {t.shape}")
    return p, t


def _valid_rows(p, t):
    """Stars with a finite true value and a usable PMF (finite, non-negative, sum > 0)."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(t) & np.all(np.isfinite(p), axis=1) & (p.sum(axis=1) > 0)
        ok &= ~np.any(p < 0, axis=1)
    return ok


def pit(bins, pmf, truth):
    """Probability integral transform: each PMF's CDF at the true value.

    The CDF is linear within each bin (the convention of
    :meth:`remap.labels.LabelBins.quantile`), so ``pit`` and the quantiles
    agree: a true value at the PMF's median gives 0.5.  Values below the first
    edge give 0, above the last edge 1.

    Parameters
    ----------
    bins : `remap.labels.LabelBins`
    pmf : array_like, shape (n, n_bins)
    truth : array_like, shape (n,)

    Returns
    -------
    pit : ndarray, shape (n,)
        NaN where the truth or the PMF is missing.
    """
    p, t = _check_pmf(bins, pmf, truth)
    ok = _valid_rows(p, t)
    out = np.full(t.shape, np.nan)
    if not ok.any():
        return out
    pv = p[ok] / p[ok].sum(axis=1, keepdims=True)
    tv = t[ok]
    cdf = np.concatenate([np.zeros((len(pv), 1)), np.cumsum(pv, axis=1)], axis=1)
    edges = bins.edges
    i = np.clip(np.searchsorted(edges, tv, side="right") - 1, 0, bins.n_bins - 1)
    frac = np.clip((tv - edges[i]) / (edges[i + 1] - edges[i]), 0.0, 1.0)
    rows = np.arange(len(pv))
    out[ok] = np.clip(cdf[rows, i] + frac * pv[rows, i], 0.0, 1.0)
    return out


def coverage(bins, pmf, truth, level):
    """Fraction of true values inside the central ``level`` interval of their PMFs.

    The interval of a star runs from the PMF's quantile ``(1 - level) / 2`` to
    its quantile ``(1 + level) / 2`` (``level = 0.68``: the 16th to 84th
    percentile), both ends included.

    Parameters
    ----------
    bins : `remap.labels.LabelBins`
    pmf : array_like, shape (n, n_bins)
    truth : array_like, shape (n,)
    level : float
        Nominal probability, 0 < level < 1.

    Returns
    -------
    coverage : float
        NaN when no star has both a truth and a PMF.
    """
    if not (isinstance(level, numbers.Real) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level must be a probability strictly between 0 and 1; received "
                         f"level={level!r}")
    p, t = _check_pmf(bins, pmf, truth)
    ok = _valid_rows(p, t)
    if not ok.any():
        return math.nan
    lo = bins.quantile(p[ok], 0.5 * (1.0 - float(level)))
    hi = bins.quantile(p[ok], 0.5 * (1.0 + float(level)))
    return float(np.mean((t[ok] >= lo) & (t[ok] <= hi)))


def parameter_metrics(bins, pmf, truth):
    """Bias, scatter, robust scatter, RMS, coverage and size of one parameter's predictions.

    Parameters
    ----------
    bins : `remap.labels.LabelBins`
    pmf : array_like, shape (n, n_bins)
        Predicted PMFs; rows with NaN (no prediction) are left out.
    truth : array_like, shape (n,)
        True values in the head's unit; NaN (unknown) rows are left out.

    Returns
    -------
    metrics : dict
        The keys of :data:`METRIC_NAMES` (see the module docstring for their
        definitions), in the head's unit; NaN values when ``n == 0``.
    """
    p, t = _check_pmf(bins, pmf, truth)
    ok = _valid_rows(p, t)
    n = int(ok.sum())
    out = {"n": n}
    if n == 0:
        out.update({k: math.nan for k in METRIC_NAMES if k != "n"})
        return out
    summary = bins.decode(p[ok])
    diff = summary["median"] - t[ok]
    out["bias"] = float(np.mean(diff))
    out["scatter"] = float(np.std(diff))
    out["mad_scatter"] = float(MAD_TO_SIGMA * np.median(np.abs(diff - np.median(diff))))
    out["rms"] = float(np.sqrt(np.mean(diff ** 2)))
    out["coverage_68"] = coverage(bins, p[ok], t[ok], 0.68)
    out["coverage_95"] = coverage(bins, p[ok], t[ok], 0.95)
    out["median_sigma"] = float(np.median(0.5 * (summary["p84"] - summary["p16"])))
    return out


def _decimals(bins):
    """Decimals that show a value of this head to a tenth of a bin or better (80 K: 0; 0.1: 2)."""
    return max(0, 1 - int(math.floor(math.log10(float(bins.head.bin_width)))))
