"""Small robust statistics shared by remap's modules."""

from __future__ import annotations

import numpy as np

__all__ = ["MAD_TO_SIGMA", "mad_sigma", "nanmedian_rows"]

#: 1 / Phi^-1(3/4): the median absolute deviation times this is the standard
#: deviation of a Gaussian.
MAD_TO_SIGMA = 1.482602218505602


def mad_sigma(values, axis=None):
    """``MAD_TO_SIGMA`` x the median absolute deviation from the median (NaNs ignored).

    Parameters
    ----------
    values : array_like
    axis : int, optional

    Returns
    -------
    sigma : float or ndarray
        NaN where no finite value is given.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0 or not np.isfinite(x).any():
        return np.nan if axis is None else np.full(np.delete(x.shape, axis), np.nan)
    med = np.nanmedian(x, axis=axis, keepdims=True)
    out = MAD_TO_SIGMA * np.nanmedian(np.abs(x - med), axis=axis)
    return float(out) if axis is None else out


def nanmedian_rows(x, keepdims=False):
    """`numpy.nanmedian` along the last axis, NaN for a slice without values, and no warning.

    The same values as ``numpy.nanmedian(x, axis=-1)`` (which warns "All-NaN
    slice" for empty slices): without ``warnings.catch_warnings``, whose
    changes to the process-wide warning filters are not thread-safe.

    Parameters
    ----------
    x : array_like, shape (..., n)
    keepdims : bool

    Returns
    -------
    median : ndarray, shape (...) (or (..., 1) with ``keepdims``)
    """
    x = np.asarray(x, dtype=float)
    has = ~np.all(np.isnan(x), axis=-1)
    out = np.full(x.shape[:-1], np.nan)
    if has.all():
        out = np.asarray(np.nanmedian(x, axis=-1), dtype=float)
    elif has.any():
        out[has] = np.nanmedian(x[has], axis=-1)
    return out[..., None] if keepdims else out
