"""Compiled kernels of :func:`remap.surveys.base.find_spikes` (numba).

They give the same flags as the SciPy formulation they replace (a grey opening,
a running percentile, a running median and a binary propagation, all along
rows with ``mode="nearest"``), in one pass per row:

* the opening is an erosion over ``[i - m//2, i - m//2 + m - 1]`` followed by a
  dilation over ``[i - (m-1)//2, i + m//2]`` (SciPy's windows for a flat
  element of ``m`` pixels, even ``m`` included), with indices clamped at the
  ends, each by the van Herk / Gil-Werman algorithm;
* the running percentile is needed only where a pixel can be flagged at all,
  i.e. where ``(flux - opening) / sigma`` exceeds ``grow_nsigma`` (the
  baseline is the larger of the opening and the lowered percentile, so the
  excess never exceeds that).  There the test "excess > threshold" is a
  non-increasing function ``P`` of the percentile value ``x`` (every
  floating-point step of ``(f - max(o, x - q s)) / s > t`` is monotone), so
  ``P(x_(r))`` holds for the window's ``r``-th smallest value exactly when
  ``P`` holds for at least ``r + 1`` of the window's values, i.e. when at
  least ``r + 1`` values lie below the exact float bound where ``P`` turns
  false: a count, no sort;
* the running median of the noise estimate keeps the window sorted while it
  slides (remove the outgoing value, insert the incoming one);
* the propagation keeps every run of pixels above ``grow_nsigma`` that holds
  a pixel above ``nsigma``: the kernel looks for the core pixels first (only
  where ``(flux - opening) / sigma > nsigma``, a few pixels per row) and
  grows each run from its core both ways, so that the percentile is counted
  only at the pixels of spikes and their edges.

numba is imported here (about a second); `remap.surveys.base` imports this
module on the first call of :func:`~remap.surveys.base.find_spikes`.
"""

from __future__ import annotations

import numpy as np

from .._util.jit import njit, uidx
from .._util.threads import over_rows

__all__ = ["spike_rows", "running_rank_rows", "fill_rows"]


@njit
def _window_extreme(x, m, lo, take_max, pad, out):
    """``out[i]`` = min (or max) of ``x`` over ``[i + lo, i + lo + m - 1]``, indices clamped.

    On the edge-padded row, one elementwise pass per offset of the element
    (``m`` passes that vectorize; the spikes' elements are ~7 pixels): faster
    here than the van Herk / Gil-Werman prefix and suffix extremes, whose
    short blocks do not.
    """
    n = x.size
    size = n + m - 1
    for k in range(size):
        pad[uidx(k)] = x[uidx(min(max(k + lo, 0), n - 1))]
    for i in range(n):
        out[i] = pad[i]
    if take_max:
        for k in range(1, m):
            for i in range(n):
                v = pad[uidx(i + k)]
                if v > out[i]:
                    out[i] = v
    else:
        for k in range(1, m):
            for i in range(n):
                v = pad[uidx(i + k)]
                if v < out[i]:
                    out[i] = v


@njit
def _opening(f, m, ero, pad, out):
    """Grey opening of the row ``f`` with a flat element of ``m`` pixels (SciPy's windows)."""
    _window_extreme(f, m, -(m // 2), False, pad, ero)
    _window_extreme(ero, m, -((m - 1) // 2), True, pad, out)


@njit
def _x_bound(fi, si, oi, qs, t):
    """Smallest float ``x`` for which ``(fi - max(oi, x - qs)) / si > t`` is false.

    The test is non-increasing in ``x`` (each floating-point step is monotone),
    so it holds exactly for ``x`` below the returned value; ``-inf`` when it
    fails already at ``x - qs <= oi``.
    """
    if not (fi - oi) / si > t:
        return -np.inf
    # m_b: smallest float m with (fi - m) / si > t false (m > oi here)
    m = fi - t * si
    if (fi - m) / si > t:
        while (fi - m) / si > t:
            m = np.nextafter(m, np.inf)
    else:
        while not (fi - np.nextafter(m, -np.inf)) / si > t:
            m = np.nextafter(m, -np.inf)
    # x_b: smallest float x with x - qs >= m (the test on x fails from there: oi < m)
    x = m + qs
    if x - qs >= m:
        while np.nextafter(x, -np.inf) - qs >= m:
            x = np.nextafter(x, -np.inf)
    else:
        while not x - qs >= m:
            x = np.nextafter(x, np.inf)
    return x


def spike_rows(flux, sigma, max_width, window, rank, q, nsigma, grow_nsigma, out):
    """Flag the spikes of each row of ``flux`` (see the module docstring).

    Parameters
    ----------
    flux, sigma : float64 (n, npix)
        Finite flux and positive noise.
    max_width, window, rank : int
        Widest spike; width of the running percentile and its rank (0-based,
        as `scipy.ndimage.percentile_filter` computes it).
    q : float
        ``ndtri(percentile / 100)``: the percentile is lowered by ``q * sigma``.
    nsigma, grow_nsigma : float
        Detection and growth thresholds.
    out : bool (n, npix)
        Output: True at spike pixels.
    """
    over_rows(_spike_rows, flux.shape[0], flux, sigma, max_width, window, rank, q, nsigma,
              grow_nsigma, out)


@njit
def _spike_rows(r0, r1, flux, sigma, max_width, window, rank, q, nsigma, grow_nsigma, out):
    """Rows ``r0:r1`` of `spike_rows` (one thread's share)."""
    n, npix = flux.shape
    m = max_width + 1
    ero = np.empty(npix)
    opening = np.empty(npix)
    pad = np.empty(npix + m)
    lo = -(window // 2)
    core = nsigma * (1.0 - 1e-9)
    for row in range(r0, r1):
        f = flux[row]
        s = sigma[row]
        o = out[row]
        _opening(f, m, ero, pad, opening)
        for i in range(npix):
            o[i] = False
        # a spike is a run of "grow" pixels holding a "core" pixel: find the cores (a
        # core pixel has (f - opening) / sigma > nsigma, a cheap necessary condition:
        # the baseline is never below the opening; tested here as a product with a
        # margin of 1e-9, which every pixel passing the quotient passes), then grow each
        # run both ways
        for i in range(npix):
            if o[i] or not f[i] - opening[i] > core * s[i]:
                continue
            if not _passes(f, s, opening, i, lo, window, rank, q, nsigma):
                continue
            o[i] = True
            j = i - 1
            while j >= 0 and not o[j] and _passes(f, s, opening, j, lo, window, rank, q,
                                                  grow_nsigma):
                o[j] = True
                j -= 1
            j = i + 1
            while j < npix and _passes(f, s, opening, j, lo, window, rank, q, grow_nsigma):
                o[j] = True
                j += 1


@njit
def _passes(f, s, opening, i, lo, window, rank, q, t):
    """Whether pixel ``i`` exceeds its baseline (the larger of the opening and the lowered
    running percentile) by more than ``t`` sigma.

    The test on a window value x is "(fi - max(oi, x - qs)) / si > t": true below an
    exact bound on x (every step is monotone), found by stepping through the floats
    next to the real-valued bound (`_x_bound`); the percentile passes when more than
    ``rank`` window values lie below it: a count, no sort.
    """
    fi = f[i]
    si = s[i]
    oi = opening[i]
    if not (fi - oi) / si > t:
        return False
    xb = _x_bound(fi, si, oi, q * si, t)
    npix = f.size
    count = 0
    a = i + lo
    if a >= 0 and a + window <= npix:
        for p in range(uidx(a), uidx(a + window)):
            count += f[p] < xb
    else:
        for p in range(a, a + window):
            count += f[uidx(min(max(p, 0), npix - 1))] < xb
    return count > rank


def running_rank_rows(x, window, rank, out):
    """Running ``rank``-th smallest value over ``window`` pixels along each row (mode nearest).

    The window of output ``i`` is ``[i - window//2, i - window//2 + window - 1]``
    with indices clamped at the ends, as `scipy.ndimage.rank_filter`; the
    values must not be NaN.
    """
    over_rows(_running_rank_rows, x.shape[0], x, window, rank, out)


@njit
def _running_rank_rows(r0, r1, x, window, rank, out):
    """Rows ``r0:r1`` of `running_rank_rows` (one thread's share)."""
    n, npix = x.shape
    buf = np.empty(window)
    lo = -(window // 2)
    hi = lo + window - 1
    for row in range(r0, r1):
        r = x[row]
        for o in range(window):
            buf[o] = r[min(max(o + lo, 0), npix - 1)]
        buf.sort()
        out[row, 0] = buf[rank]
        for i in range(1, npix):
            old = r[min(max(i - 1 + lo, 0), npix - 1)]
            new = r[min(i + hi, npix - 1)]
            if old != new:
                # position of one instance of ``old`` (binary search), then slide the values
                # between it and the place of ``new``
                a = 0
                b = window
                while a < b:
                    c = (a + b) // 2
                    if buf[c] < old:
                        a = c + 1
                    else:
                        b = c
                p = a
                if new > old:
                    while p + 1 < window and buf[p + 1] < new:
                        buf[p] = buf[p + 1]
                        p += 1
                else:
                    while p > 0 and buf[p - 1] > new:
                        buf[p] = buf[p - 1]
                        p -= 1
                buf[p] = new
            out[row, i] = buf[rank]


@njit
def _fill_rows(r0, r1, flux, spikes, mask, status):
    """Rows ``r0:r1`` of `fill_rows`."""
    npix = flux.shape[1]
    ref = np.empty(npix, dtype=np.bool_)
    for r in range(r0, r1):
        n_spikes = 0
        n_good = 0
        for p in range(npix):
            n_spikes += spikes[r, p]
            n_good += (not spikes[r, p]) and (not mask[r, p])
        status[r] = 0
        if n_spikes == 0:
            continue
        use_good = n_good >= 2
        n_ref = 0
        for p in range(npix):
            ref[p] = (not spikes[r, p]) and (use_good and not mask[r, p] or not use_good)
            n_ref += ref[p]
        if n_ref == 0:
            status[r] = 1     # no pixel to interpolate from: left to the caller
            continue
        first = -1
        last = -1
        for p in range(npix):
            if ref[p]:
                if first < 0:
                    first = p
                last = p
        left = -1
        p = 0
        while p < npix:
            if ref[p]:
                left = p
                p += 1
                continue
            if not spikes[r, p]:
                p += 1
                continue
            if left < 0:                      # before the first reference pixel
                flux[r, p] = flux[r, first]
                p += 1
                continue
            right = p + 1
            while right < npix and not ref[right]:
                right += 1
            if right >= npix:                 # after the last reference pixel
                for q in range(p, npix):
                    if spikes[r, q]:
                        flux[r, q] = flux[r, last]
                break
            # numpy.interp between the reference pixels ``left`` and ``right``
            fl = flux[r, left]
            fr = flux[r, right]
            slope = (fr - fl) / (right - left)
            for q in range(p, right):
                if spikes[r, q]:
                    v = slope * (q - left) + fl
                    if np.isnan(v):
                        v = slope * (q - right) + fr
                        if np.isnan(v) and fl == fr:
                            v = fl
                    flux[r, q] = v
            p = right


def fill_rows(flux, spikes, mask):
    """`remap.surveys.base.fill_spikes` row by row in a compiled pass (``numpy.interp``'s formula).

    Parameters
    ----------
    flux : float64 (n, npix), C-contiguous
        Changed in place at the spike pixels.
    spikes, mask : bool (n, npix)

    Returns
    -------
    status : int64 (n,)
        1 for a row with spikes and no pixel to interpolate from (left as it
        is), else 0.
    """
    status = np.zeros(flux.shape[0], dtype=np.int64)
    over_rows(_fill_rows, flux.shape[0], flux, np.ascontiguousarray(spikes),
              np.ascontiguousarray(mask), status)
    return status
