"""Compiled kernel of the ``continuum`` stage's last step: divide by the continuum, measure SNR.

One pass per row (rows split between threads by `remap._util.threads.over_rows`)
instead of the NumPy chain of two full-array divisions, a masked reciprocal and
``numpy.nanmedian`` (which sorts a copy of every row); the median is
`remap._util._median_kernel.median_inplace` (exact, bucket selection).  The SNR of a row with
uncertainties is the median of ``1 / σ`` over its unmasked pixels with ``σ >
0``, as ``numpy.nanmedian`` gives it (the mean of the two middle values for an
even count); rows without usable uncertainties get NaN here and are left to
the robust residual estimate of ``remap.inference.stages._snr``.

Imported on first use (numba's import costs about a second).
"""

from __future__ import annotations

import numpy as np

from .._util._median_kernel import N_BUCKETS, median_inplace
from .._util.jit import njit
from .._util.threads import over_rows

__all__ = ["normalize_rows"]


@njit
def _rows(r0, r1, flux, sigma, mask, cont, snr):
    npix = flux.shape[1]
    buf = np.empty(npix)
    counts = np.empty(N_BUCKETS, dtype=np.int64)
    for r in range(r0, r1):
        k = 0
        finite = True
        for p in range(npix):
            c = cont[r, p]
            flux[r, p] = flux[r, p] / c
            s = sigma[r, p] / c
            sigma[r, p] = s
            if not np.isfinite(s):
                finite = False
            elif not mask[r, p] and s > 0.0:
                buf[k] = 1.0 / s
                k += 1
        snr[r] = median_inplace(buf, k, counts) if finite and k > 0 else np.nan


def normalize_rows(flux, sigma, mask, cont):
    """Divide ``flux`` and ``sigma`` by ``cont`` in place; return each row's SNR (see module).

    Parameters
    ----------
    flux, sigma : float64 (n, npix), C-contiguous, writable
    mask : bool (n, npix)
    cont : float64 (n, npix)

    Returns
    -------
    snr : float64 (n,)
        Median ``1 / σ`` of the normalized row, NaN where a σ is not finite
        (no uncertainty given) or no pixel is usable.
    """
    snr = np.empty(flux.shape[0])
    over_rows(_rows, flux.shape[0], flux, sigma, np.ascontiguousarray(mask),
              np.ascontiguousarray(cont, dtype=np.float64), snr)
    return snr
