"""Compiled kernel: not-a-knot cubic splines of rows that each have their own abscissae.

`scipy.interpolate.make_interp_spline` solves one system for a batch that
shares its abscissae; rows with their own grids (after a per-row velocity
shift) would need one SciPy call each (milliseconds).  This kernel solves the
same not-a-knot conditions per row (the slope formulation of
`scipy.interpolate.CubicSpline`: a tridiagonal system) and evaluates the cubic
Hermite pieces, in one compiled loop over the rows.  It agrees with SciPy to
rounding (tested in ``tests/test_inference.py``).  Imported on first use by
:func:`remap.spectra.resampling.resample_rows` (numba's import costs about a
second).
"""

from __future__ import annotations

import numpy as np

from .._util.jit import njit, uidx
from .._util.threads import over_rows

__all__ = ["spline_rows", "linear_rows", "resample_shared"]


@njit
def _setup(x, y, slope, dx, sub, diag, sup, rhs):
    """The tridiagonal system of the not-a-knot slopes of one row."""
    n = x.size
    for i in range(n - 1):
        dx[i] = x[i + 1] - x[i]
        slope[i] = (y[i + 1] - y[i]) / dx[i]
    # interior rows: dx[i] s[i-1] + 2 (dx[i-1] + dx[i]) s[i] + dx[i-1] s[i+1] = rhs
    for i in range(1, n - 1):
        sub[i] = dx[i]
        diag[i] = 2.0 * (dx[i - 1] + dx[i])
        sup[i] = dx[i - 1]
        rhs[i] = 3.0 * (dx[i] * slope[i - 1] + dx[i - 1] * slope[i])
    # not-a-knot ends (third derivative continuous at x[1] and x[n-2])
    d = x[2] - x[0]
    diag[0] = dx[1]
    sup[0] = d
    rhs[0] = ((dx[0] + 2.0 * d) * dx[1] * slope[0] + dx[0] * dx[0] * slope[1]) / d
    d = x[n - 1] - x[n - 3]
    sub[n - 1] = d
    diag[n - 1] = dx[n - 3]
    rhs[n - 1] = (dx[n - 2] * dx[n - 2] * slope[n - 3]
                  + (2.0 * d + dx[n - 2]) * dx[n - 3] * slope[n - 2]) / d


@njit
def _thomas(n, sub, diag, sup, rhs):
    """Thomas algorithm in place: the slopes in ``rhs``."""
    for i in range(1, n):
        w = sub[i] / diag[i - 1]
        diag[i] -= w * sup[i - 1]
        rhs[i] -= w * rhs[i - 1]
    rhs[n - 1] = rhs[n - 1] / diag[n - 1]
    for i in range(n - 2, -1, -1):
        u = uidx(i)
        rhs[u] = (rhs[u] - sup[u] * rhs[u + 1]) / diag[u]


@njit
def _thomas2(n, sub, diag, sup, rhs, sub2, diag2, sup2, rhs2):
    """`_thomas` on two systems at once: the same operations on each, interleaved, so that
    the processor overlaps their chains of dependent divisions (about 2x)."""
    for i in range(1, n):
        w = sub[i] / diag[i - 1]
        w2 = sub2[i] / diag2[i - 1]
        diag[i] -= w * sup[i - 1]
        diag2[i] -= w2 * sup2[i - 1]
        rhs[i] -= w * rhs[i - 1]
        rhs2[i] -= w2 * rhs2[i - 1]
    rhs[n - 1] = rhs[n - 1] / diag[n - 1]
    rhs2[n - 1] = rhs2[n - 1] / diag2[n - 1]
    for i in range(n - 2, -1, -1):
        u = uidx(i)
        rhs[u] = (rhs[u] - sup[u] * rhs[u + 1]) / diag[u]
        rhs2[u] = (rhs2[u] - sup2[u] * rhs2[u + 1]) / diag2[u]


@njit
def _finish(x, y, xq, out, slope, dx, s, c2, c3):
    """The cubic pieces' coefficients (a loop of their own: its divisions vectorize), then
    their evaluation at the (ascending) query points."""
    n = x.size
    for j in range(n - 1):
        h = dx[j]
        c2[j] = (3.0 * slope[j] - 2.0 * s[j] - s[j + 1]) / h
        c3[j] = (s[j] + s[j + 1] - 2.0 * slope[j]) / (h * h)
    j = 0
    for q in range(xq.size):
        xv = xq[q]
        while j < n - 2 and xv > x[j + 1]:
            j += 1
        t = xv - x[j]
        out[q] = y[j] + t * (s[j] + t * (c2[j] + t * c3[j]))


@njit
def _query(xq, r, scale, buf):
    """Query points of row ``r``: its own or the shared ones, times ``scale[r]`` if given."""
    q = xq[0] if xq.shape[0] == 1 else xq[r]
    if scale.size == 0:
        return q
    f = scale[r]
    for i in range(q.size):
        buf[i] = q[i] * f
    return buf


@njit
def _rows(t0, t1, x, y, xq, out, sel, off, scale):
    n = x.shape[1]
    b = np.empty((2, 6, n))    # per row of a pair: slope, dx, sub, diag, sup, rhs
    qbuf = np.empty(xq.shape[1])
    t = t0
    while t < t1:
        pair = t + 1 < t1
        for q in range(2 if pair else 1):
            r = sel[t + q]
            _setup(x[r], y[r], b[q, 0], b[q, 1], b[q, 2], b[q, 3], b[q, 4], b[q, 5])
        if pair:
            _thomas2(n, b[0, 2], b[0, 3], b[0, 4], b[0, 5], b[1, 2], b[1, 3], b[1, 4], b[1, 5])
        else:
            _thomas(n, b[0, 2], b[0, 3], b[0, 4], b[0, 5])
        for q in range(2 if pair else 1):
            r = sel[t + q]
            _finish(x[r], y[r], _query(xq, r, scale, qbuf), out[off + t + q], b[q, 0],
                    b[q, 1], b[q, 5], b[q, 2], b[q, 4])
        t += 2


@njit
def _factor(x, dx, inv_dx, mult, inv_diag, sup):
    """The not-a-knot system of the abscissae ``x`` factored once (`_thomas`'s elimination):
    for rows that share ``x`` only their right-hand sides remain to be swept."""
    n = x.size
    for i in range(n - 1):
        dx[i] = x[i + 1] - x[i]
        inv_dx[i] = 1.0 / dx[i]
    diag = np.empty(n)
    sub = np.empty(n)
    for i in range(1, n - 1):
        sub[i] = dx[i]
        diag[i] = 2.0 * (dx[i - 1] + dx[i])
        sup[i] = dx[i - 1]
    diag[0] = dx[1]
    sup[0] = x[2] - x[0]
    sub[n - 1] = x[n - 1] - x[n - 3]
    diag[n - 1] = dx[n - 3]
    for i in range(1, n):
        mult[i] = sub[i] / diag[i - 1]
        diag[i] -= mult[i] * sup[i - 1]
    for i in range(n):
        inv_diag[i] = 1.0 / diag[i]


@njit
def _rows_shared_x(t0, t1, x, y, xq, out, sel, off, scale, sigma, mask, out_sigma, out_mask,
                   with_sigma, with_mask):
    """Rows ``sel[t0:t1]`` of `spline_rows` when every row has the abscissae ``x[0]``: the
    system is factored once, each row only sweeps its right-hand side (no divisions), two
    rows at a time (each row's result is the same as alone).  With ``with_sigma`` /
    ``with_mask`` the rows' `linear_rows` outputs are written in the same pass over the
    query points (the same values: the piece found for the spline is the linear one's, or
    its left neighbour with weight exactly 1 at a knot)."""
    xs = x[0]
    n = xs.size
    dx = np.empty(n)
    inv_dx = np.empty(n)
    mult = np.empty(n)
    inv_diag = np.empty(n)
    sup = np.empty(n)
    _factor(xs, dx, inv_dx, mult, inv_diag, sup)
    inv_h2 = np.empty(n)
    for j in range(n - 1):
        inv_h2[j] = inv_dx[j] * inv_dx[j]
    d0 = xs[2] - xs[0]
    d1 = xs[n - 1] - xs[n - 3]
    shared_q = xq.shape[0] == 1 and scale.size == 0
    m = xq.shape[1]
    qbuf = np.empty(m)
    # the piece and offset of each query point, when they are the same for every row
    jq = np.empty(m, dtype=np.int64)
    tq = np.empty(m)
    wq = np.empty(m)
    if shared_q:
        j = 0
        for q in range(m):
            xv = xq[0, q]
            while j < n - 2 and xv > xs[j + 1]:
                j += 1
            jq[q] = j
            tq[q] = xv - xs[j]
            wq[q] = min(max(tq[q] / dx[j], 0.0), 1.0)
    slope = np.empty((2, n))
    s = np.empty((2, n))
    c2 = np.empty(n)
    c3 = np.empty(n)
    t = t0
    while t < t1:
        k = 2 if t + 1 < t1 else 1     # rows swept two at a time: their chains overlap
        for p in range(k):
            yr = y[sel[t + p]]
            sl = slope[p]
            sp = s[p]
            for i in range(n - 1):
                sl[i] = (yr[i + 1] - yr[i]) * inv_dx[i]
            for i in range(1, n - 1):
                sp[i] = 3.0 * (dx[i] * sl[i - 1] + dx[i - 1] * sl[i])
            sp[0] = ((dx[0] + 2.0 * d0) * dx[1] * sl[0] + dx[0] * dx[0] * sl[1]) / d0
            sp[n - 1] = (dx[n - 2] * dx[n - 2] * sl[n - 3]
                         + (2.0 * d1 + dx[n - 2]) * dx[n - 3] * sl[n - 2]) / d1
        if k == 2:
            sa = s[0]
            sb = s[1]
            for i in range(1, n):
                sa[i] -= mult[i] * sa[i - 1]
                sb[i] -= mult[i] * sb[i - 1]
            sa[n - 1] = sa[n - 1] * inv_diag[n - 1]
            sb[n - 1] = sb[n - 1] * inv_diag[n - 1]
            for i in range(n - 2, -1, -1):
                u = uidx(i)
                sa[u] = (sa[u] - sup[u] * sa[u + 1]) * inv_diag[u]
                sb[u] = (sb[u] - sup[u] * sb[u + 1]) * inv_diag[u]
        else:
            sa = s[0]
            for i in range(1, n):
                sa[i] -= mult[i] * sa[i - 1]
            sa[n - 1] = sa[n - 1] * inv_diag[n - 1]
            for i in range(n - 2, -1, -1):
                u = uidx(i)
                sa[u] = (sa[u] - sup[u] * sa[u + 1]) * inv_diag[u]
        for p in range(k):
            r = sel[t + p]
            yr = y[r]
            sl = slope[p]
            sp = s[p]
            for j in range(n - 1):
                c2[j] = (3.0 * sl[j] - 2.0 * sp[j] - sp[j + 1]) * inv_dx[j]
                c3[j] = (sp[j] + sp[j + 1] - 2.0 * sl[j]) * inv_h2[j]
            o = out[off + t + p]
            if not shared_q:
                xqr = _query(xq, r, scale, qbuf)
                j = 0
                for q in range(m):
                    xv = xqr[q]
                    while j < n - 2 and xv > xs[j + 1]:
                        j += 1
                    jq[q] = j
                    tq[q] = xv - xs[j]
            for q in range(m):
                j = jq[q]
                tv = tq[q]
                o[q] = yr[j] + tv * (sp[j] + tv * (c2[j] + tv * c3[j]))
            if with_sigma or with_mask:
                o_row = off + t + p
                for q in range(m):
                    j = jq[q]
                    w = wq[q] if shared_q else min(max(tq[q] / dx[j], 0.0), 1.0)
                    if with_sigma:
                        out_sigma[o_row, q] = sigma[r, j] * (1.0 - w) + sigma[r, j + 1] * w
                    if with_mask:
                        out_mask[o_row, q] = ((mask[r, j] and w < 1.0)
                                              or (mask[r, j + 1] and w > 0.0))
        t += k


def _selection(n, rows, out, shape, dtype, offset):
    """Row selection (int64), output array and offset of the row kernels."""
    sel = np.arange(n, dtype=np.int64) if rows is None else np.ascontiguousarray(rows, np.int64)
    if out is None:
        out = np.empty((sel.size,) + shape, dtype=dtype)
        offset = 0
    elif out.shape[1:] != shape or out.shape[0] < offset + sel.size:
        raise ValueError(f"out has shape {out.shape}; expected at least "
                         f"({offset + sel.size}, {shape[0]})")
    return sel, out, int(offset)


def _scale(scale):
    """The per-row query factors as the kernels take them (empty: none)."""
    return np.zeros(0) if scale is None else np.ascontiguousarray(scale, dtype=np.float64)


def spline_rows(x, y, xq, rows=None, out=None, offset=0, scale=None):
    """Not-a-knot cubic spline of each row of ``y`` on its abscissae, evaluated at ``xq``.

    Parameters
    ----------
    x : ndarray, shape (n, npix) or (npix,)
        Strictly increasing abscissae per row (npix >= 4), or one set for
        every row (then the spline system is factored once for all rows).
    y : ndarray, shape (n, npix)
    xq : ndarray, shape (n, m) or (m,)
        Ascending query points per row (or one set for every row), inside
        ``[x[r, 0], x[r, -1]]``.
    rows : ndarray of int, optional
        Only these rows (in this order); default all.
    out : ndarray, shape (>= offset + len(rows), m), optional
        Where to write the result (rows ``offset ...``); default a new array.
    offset : int
    scale : ndarray, shape (n,), optional
        Row ``r`` is evaluated at ``xq * scale[r]`` (default: at ``xq``).

    Returns
    -------
    values : ndarray, shape (len(rows), m), or ``out``
    """
    x = np.atleast_2d(np.ascontiguousarray(x, dtype=np.float64))
    y = np.atleast_2d(np.ascontiguousarray(y, dtype=np.float64))
    xq = np.atleast_2d(np.ascontiguousarray(xq, dtype=np.float64))
    if x.shape[0] == 1 and y.shape[0] > 1:
        return resample_shared(x, y, xq, rows=rows, out=out, offset=offset, scale=scale)[0]
    sel, res, off = _selection(y.shape[0], rows, out, (xq.shape[1],), np.float64, offset)
    over_rows(_rows, sel.size, x, y, xq, res, sel, off, _scale(scale))
    return res


def _linear_inputs(sigma, mask):
    """``(with_sigma, with_mask, sigma, mask)`` as the kernels take them (1 x 1 dummies)."""
    with_sigma, with_mask = sigma is not None, mask is not None
    sig = (np.atleast_2d(np.ascontiguousarray(sigma, dtype=np.float64)) if with_sigma
           else np.zeros((1, 1)))
    msk = (np.atleast_2d(np.ascontiguousarray(mask, dtype=np.bool_)) if with_mask
           else np.zeros((1, 1), dtype=np.bool_))
    return with_sigma, with_mask, sig, msk


def resample_shared(x, y, xq, sigma=None, mask=None, rows=None, out=None, out_sigma=None,
                    out_mask=None, offset=0, scale=None):
    """`spline_rows` and `linear_rows` of rows sharing the abscissae ``x`` (1-D), in one pass.

    The same values as the two functions (tested); the arguments are theirs.

    Returns
    -------
    values, sigma, mask : ndarray, or the given output arrays (None where not given)
    """
    x = np.atleast_2d(np.ascontiguousarray(x, dtype=np.float64))
    y = np.atleast_2d(np.ascontiguousarray(y, dtype=np.float64))
    xq = np.atleast_2d(np.ascontiguousarray(xq, dtype=np.float64))
    m = xq.shape[1]
    sel, res, off = _selection(y.shape[0], rows, out, (m,), np.float64, offset)
    with_sigma, with_mask, sig, msk = _linear_inputs(sigma, mask)
    out_s = _selection(y.shape[0], rows, out_sigma, (m,), np.float64, offset)[1] \
        if with_sigma else np.zeros((1, 1))
    out_m = _selection(y.shape[0], rows, out_mask, (m,), np.bool_, offset)[1] \
        if with_mask else np.zeros((1, 1), np.bool_)
    over_rows(_rows_shared_x, sel.size, x, y, xq, res, sel, off, _scale(scale), sig, msk,
              out_s, out_m, with_sigma, with_mask)
    return res, (out_s if with_sigma else None), (out_m if with_mask else None)


@njit
def _linear_rows(t0, t1, x, xq, sigma, mask, out_sigma, out_mask, with_sigma, with_mask, sel,
                 off, scale):
    """Rows ``sel[t0:t1]`` of `linear_rows`."""
    n = x.shape[1]
    m = xq.shape[1]
    one_x = x.shape[0] == 1
    one_q = xq.shape[0] == 1 and scale.size == 0
    qbuf = np.empty(m)
    # the knot and weight of each query point, when they are the same for every row
    jq = np.empty(m if one_x and one_q else 0, dtype=np.int64)
    wq = np.empty(jq.size)
    if jq.size:
        _linear_weights(x[0], xq[0], n, jq, wq)
    jr = np.empty(0 if jq.size else m, dtype=np.int64)
    wr = np.empty(jr.size)
    for t in range(t0, t1):
        r = sel[t]
        o = off + t
        if jq.size:
            jj, ww = jq, wq
        else:
            _linear_weights(x[0] if one_x else x[r], _query(xq, r, scale, qbuf), n, jr, wr)
            jj, ww = jr, wr
        for q in range(m):
            j = jj[q]
            w = ww[q]
            if with_sigma:
                out_sigma[o, q] = sigma[r, j] * (1.0 - w) + sigma[r, j + 1] * w
            if with_mask:
                out_mask[o, q] = (mask[r, j] and w < 1.0) or (mask[r, j + 1] and w > 0.0)


@njit
def _linear_weights(xr, xqr, n, jj, ww):
    """Per query point: the last knot <= it (within [0, n - 2]) and its weight, clipped to
    [0, 1]."""
    j = 0
    for q in range(xqr.size):
        xv = xqr[q]
        while j < n - 2 and xr[j + 1] <= xv:
            j += 1
        w = (xv - xr[j]) / (xr[j + 1] - xr[j])
        jj[q] = j
        ww[q] = min(max(w, 0.0), 1.0)


def linear_rows(x, xq, sigma=None, mask=None, rows=None, out_sigma=None, out_mask=None,
                offset=0, scale=None):
    """Linear interpolation of ``sigma`` and the mask rule of `resample_arrays`, row by row.

    Equal to :func:`remap.spectra.resampling.linear_weights` /
    ``apply_linear`` applied to each row (the same clipping and formula).

    Parameters
    ----------
    x : ndarray, shape (n, npix) or (npix,)
        Strictly increasing abscissae per row (or one set for every row).
    xq : ndarray, shape (n, m) or (m,)
        Ascending query points per row (or one set for every row).
    sigma : ndarray, shape (n, npix), optional
    mask : ndarray of bool, shape (n, npix), optional
    rows : ndarray of int, optional
        Only these rows (in this order); default all.
    out_sigma, out_mask : ndarray, optional
        Where to write (rows ``offset ...``), as for `spline_rows`.
    offset : int
    scale : ndarray, shape (n,), optional
        Row ``r`` is evaluated at ``xq * scale[r]``, as for `spline_rows`.

    Returns
    -------
    sigma, mask : ndarray, shape (len(rows), m), or None where not given
    """
    x = np.atleast_2d(np.ascontiguousarray(x, dtype=np.float64))
    xq = np.atleast_2d(np.ascontiguousarray(xq, dtype=np.float64))
    m = xq.shape[1]
    with_sigma, with_mask, sig, msk = _linear_inputs(sigma, mask)
    n_rows = sig.shape[0] if with_sigma else msk.shape[0] if with_mask else x.shape[0]
    sel = np.arange(n_rows, dtype=np.int64) if rows is None else None
    off = 0
    out_s = np.zeros((1, 1))
    out_m = np.zeros((1, 1), np.bool_)
    if with_sigma:
        sel, out_s, off = _selection(n_rows, rows, out_sigma, (m,), np.float64, offset)
    if with_mask:
        sel, out_m, off = _selection(n_rows, rows, out_mask, (m,), np.bool_, offset)
    if sel is None:
        sel = np.ascontiguousarray(rows, np.int64)
    over_rows(_linear_rows, sel.size, x, xq, sig, msk, out_s, out_m, with_sigma, with_mask,
              sel, off, _scale(scale))
    return (out_s if with_sigma else None), (out_m if with_mask else None)
