"""Compiled kernel of :func:`remap.spectra.validation.check_rows`: the per-row pixel rules.

One pass per row (two over the uncertainty row) instead of about ten NumPy
passes over the whole ``(n, npix)`` block: bad pixels (non-finite flux or
masked; zero, negative or non-finite uncertainty in rows that give one),
the standard deviations kept (NaN where negative), whether a row's
uncertainty is zero everywhere (then taken as not given), the number of bad
pixels and whether any good pixel has a positive flux.  The results equal
the NumPy formulation of ``check_rows`` exactly (tested in
``tests/test_spectra.py``).  Imported on first use by ``check_rows`` (numba's
import costs about a second).
"""

from __future__ import annotations

import numpy as np

from .._util.jit import njit
from .._util.threads import over_rows

__all__ = ["scan_rows"]


@njit
def _scan(r0, r1, flux, std, mask, given, use_mask, use_std, bad, sigma, nbad, positive,
          zero_row):
    npix = flux.shape[1]
    for i in range(r0, r1):
        with_std = use_std and given[i]
        all_zero = True
        any_finite = False
        if with_std:
            for j in range(npix):
                s = std[i, j]
                if s >= 0.0 and np.isfinite(s):      # NaN and inf fail isfinite
                    any_finite = True
                    if s != 0.0:
                        all_zero = False
                        break                        # (then any_finite too: decided)
        zero = with_std and all_zero and any_finite
        zero_row[i] = zero
        use = with_std and not zero
        count = 0
        pos = False
        for j in range(npix):
            f = flux[i, j]
            b = not np.isfinite(f)
            if use_mask and mask[i, j]:
                b = True
            if use:
                s = std[i, j]
                if s >= 0.0:
                    sigma[i, j] = s
                    if not (np.isfinite(s) and s > 0.0):
                        b = True
                else:                                # negative or NaN: invalid
                    sigma[i, j] = np.nan
                    b = True
            else:
                sigma[i, j] = np.nan
            bad[i, j] = b
            if b:
                count += 1
            elif f > 0.0:
                pos = True
        nbad[i] = count
        positive[i] = pos


def scan_rows(flux, std, mask, given):
    """The pixel rules of ``check_rows`` on a block of rows.

    Parameters
    ----------
    flux : float (n, npix)
    std : float (n, npix) or None
    mask : bool (n, npix) or None
        True = bad.
    given : bool (n,)
        Rows that were given an uncertainty (ignored when ``std`` is None).

    Returns
    -------
    bad : bool (n, npix)
    sigma : float (n, npix)
        The standard deviations of the rows that use them (NaN where
        negative or NaN), NaN rows elsewhere.
    nbad : int (n,)
    positive : bool (n,)
        Some good pixel has a flux > 0.
    zero_row : bool (n,)
        The row's uncertainty is zero everywhere it is finite (and finite
        somewhere): taken as not given.
    """
    flux = np.ascontiguousarray(flux)
    n, npix = flux.shape
    use_std = std is not None
    use_mask = mask is not None
    # sigma keeps the uncertainty's floating type (as np.where(std >= 0, std, nan) does)
    dtype = np.result_type(np.asarray(std).dtype, np.float32) if use_std else np.float64
    std_a = np.ascontiguousarray(std, dtype=dtype) if use_std else np.zeros((1, 1))
    mask_a = np.ascontiguousarray(mask, dtype=np.bool_) if use_mask else np.zeros((1, 1), bool)
    given_a = (np.ascontiguousarray(given, dtype=np.bool_) if given is not None
               else np.ones(n, bool))
    bad = np.empty((n, npix), bool)
    sigma = np.empty((n, npix), dtype=dtype)
    nbad = np.empty(n, np.int64)
    positive = np.empty(n, bool)
    zero_row = np.empty(n, bool)
    over_rows(_scan, n, flux, std_a, mask_a, given_a, use_mask, use_std, bad, sigma, nbad,
              positive, zero_row)
    return bad, sigma, nbad, positive, zero_row
