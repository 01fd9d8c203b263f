"""Small robust statistics shared by remap's modules."""

from __future__ import annotations

import numpy as np

__all__ = ["MAD_TO_SIGMA", "mad_sigma"]

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
