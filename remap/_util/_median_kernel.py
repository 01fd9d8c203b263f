"""An exact median for the compiled kernels, about twice as fast as numba's ``np.median``.

numba's ``np.median`` copies its input and runs a quickselect whose
comparisons the processor cannot predict (about 47 µs for 4,500 values here).
:func:`median_inplace` finds the same order statistics by bucket selection
instead: a histogram of the values over ``[min, max]``, then only the bucket
that holds the middle rank is kept, and so on until 32 values are left, which
are sorted; the passes are branch-light and run at memory speed (about 20 µs
for 4,500 values; ``benchmarks/fit.py``'s continuum and SNR steps take one per
row).  The bucket index ``int((v - min) * scale)`` never decreases with ``v``
(IEEE subtraction and multiplication by a positive number are monotonic), so
the kept bucket holds exactly the values of those ranks, and the result is the
median bit for bit (the mean of the two middle values for an even count, as
NumPy and numba compute it: ``(a + b) / 2``), checked against ``np.median`` in
``tests/test_util.py``.  Values spread over many orders of magnitude fall back
to a sort after a few rounds, so no input is slower than a sort.

Imported by the kernel modules (numba's import costs about a second).
"""

from __future__ import annotations

import numpy as np

from .jit import njit, uidx

__all__ = ["median_inplace", "N_BUCKETS"]

#: Buckets of one selection round.
N_BUCKETS = 1024

# fewest values selected by bucket rounds (below: insertion sort), most rounds before a sort
_SMALL = 32
_MAX_ROUNDS = 6


@njit
def _insertion_sort(a, n):
    for p in range(1, n):
        v = a[p]
        q = p
        while q > 0 and a[q - 1] > v:
            a[q] = a[q - 1]
            q -= 1
        a[q] = v


@njit
def median_inplace(a, n, counts):
    """The median of ``a[:n]`` (finite float64 values, ``n >= 1``); ``a[:n]`` is overwritten.

    ``counts`` is an int64 work array of any size >= 2 (:data:`N_BUCKETS`),
    allocated once by the caller for all its rows.
    """
    k = n // 2                 # the upper middle rank (the median itself for odd n)
    even = n % 2 == 0
    j = k                      # that rank among the values still kept
    low_max = -np.inf          # the largest value dropped below the kept ones
    rounds = 0
    nb = counts.size
    while n > _SMALL:
        lo = a[0]
        hi = a[0]
        for p in range(1, n):
            v = a[p]
            lo = min(lo, v)
            hi = max(hi, v)
        if lo == hi:           # every kept value equal
            return (((lo if j >= 1 else low_max) + lo) / 2) if even else lo
        width = hi - lo
        rounds += 1
        if not width < np.inf or rounds > _MAX_ROUNDS:
            break
        scale = nb / width
        for b in range(nb):
            counts[b] = 0
        for p in range(n):
            counts[uidx(min(np.int64((a[p] - lo) * scale), nb - 1))] += 1
        below = 0
        keep = 0
        while below + counts[keep] <= j:
            below += counts[keep]
            keep += 1
        m = 0
        for p in range(n):
            v = a[p]
            b = min(np.int64((v - lo) * scale), nb - 1)
            if b == keep:
                a[m] = v
                m += 1
            elif b < keep and v > low_max:
                low_max = v
        j -= below
        n = m
    if n > _SMALL:
        a[:n] = np.sort(a[:n])
    else:
        _insertion_sort(a, n)
    upper = a[j]
    if not even:
        return upper
    return ((a[j - 1] if j >= 1 else low_max) + upper) / 2
