"""Compiled kernel of `Algorithm1`'s ``fast`` mode: exact event-driven synchronous passes.

The ``fast`` mode lowers every still-floating bin centre of a stage together,
once per pass, until no bin floats (see `remap.continuum.Algorithm1`).  While
the set ``F`` of floating centres does not change, ``t`` more passes multiply
every centre in ``F`` by ``step**t``, so the continuum at pixel ``j`` is
``A_j step**t + D_j`` (``A_j`` the part of ``C_j`` carried by the centres in
``F``, ``D_j`` the rest) and pixel ``j`` changes side at a number of passes
solved from one logarithm:

* below the continuum and ``A_j > 0``: above after the first ``t`` with
  ``step**t < (z_j - D_j) / A_j``;
* above it and ``A_j < 0`` (possible in the polynomial stages, whose basis
  has negative lobes): below from the first ``t`` with ``step**t <= (D_j -
  z_j) / -A_j``.

A bin changes state (floating while at most ``a`` of its usable pixels lie
above) at the first ``t`` at which its count of pixels above crosses ``a``:
the ``(a + 1 - count)``-th earliest crossing when no pixel of the bin can
cross downwards (always so in the interpolation stages, whose basis is
non-negative), else the first crossing of the running count over the sorted
crossings.  The next event of the stage is the earliest such ``t`` over the
bins; the centres in ``F`` jump straight to it, the bins whose state changes
are re-evaluated directly, and only the bins whose continuum depends on a
centre that changed state are solved again.  The result is that of the
pass-by-pass process (up to the rounding of ``step**t``).

Solving a bin does not visit all its pixels: a full pass over a bin (`_build`)
keeps a shortlist of the pixels nearest to changing side, measured by how far
the continuum must move to reach them, and a horizon: the number of passes
for which no other pixel can change side whatever the centres do (they only
fall, by a factor ``step`` per pass).  Until the horizon the bin is solved
from its shortlist alone (`_solve`), and a bin of an interpolation stage with
more than ``a`` pixels above is never solved again.  A stage thus costs one
pass over its pixels plus a few re-scans of the bins whose horizon is reached
(in the polynomial stages, where a bin can stop and restart many times),
instead of one evaluation per ``step`` multiplication.  The first stage starts
flat above the flux with every centre floating, so it stays flat until its
first bin stops: one pass (`_first_stop`) finds that pass from each bin's
``(a + 1)``-th highest pixel and the centres jump to just before it (instead of
the shortlist re-scans a descent from ~11 times the continuum would need).

numba is imported here (about a second); `remap.continuum.algorithm1` imports
this module on the first ``fast`` fit.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .._util._median_kernel import N_BUCKETS as _MEDIAN_BUCKETS, median_inplace
from .._util.jit import njit
from .._util.jit import uidx as _u
from .._util.threads import over_rows

__all__ = ["prepare_rows", "solve_stages", "combine", "NEVER", "WIDTH"]

_STATS_LOCK = threading.Lock()

#: Event time meaning "never" (no crossing).
NEVER = np.iinfo(np.int64).max

#: Weights per pixel in the packed stage bases (the centres ``base_j .. base_j + 3``).
WIDTH = 4

# distance histogram of `_build`: float64 bits >> 50 (exponent and two mantissa bits,
# 4 buckets per octave) from 2**-30 (bucket 0 holds everything below) to 1 (the last
# bucket: distances >= 1, never crossed)
_ABS = np.int64(0x7FFFFFFFFFFFFFFF)
_SHIFT = 50
_KEY0 = (1023 - 30) << 2
N_BUCKETS = (1023 << 2) - _KEY0 + 1


@njit
def _dot(w, base, j, x):
    j = _u(j)
    b = _u(base[j])
    return w[0, j] * x[b] + w[1, j] * x[b + 1] + w[2, j] * x[b + 2] + w[3, j] * x[b + 3]


@njit
def _sort_desc(x, n):
    """Sort ``x[:n]`` in place, largest first (insertion sort: n is a shortlist, <= 100s)."""
    for p in range(1, n):
        v = x[p]
        q = p
        while q > 0 and x[q - 1] < v:
            x[q] = x[q - 1]
            q -= 1
        x[q] = v


@njit
def _up_time(r, log_s):
    """Passes until ``step**t < r`` (0 < r <= 1): a pixel below rises above."""
    return max(np.int64(np.floor(np.log(r) / log_s)) + 1, np.int64(1))


@njit
def _down_time(q, log_s):
    """Passes until ``step**t <= q`` (0 < q < 1): a pixel above falls below."""
    return max(np.int64(np.ceil(np.log(q) / log_s)), np.int64(1))


@njit
def _first_crossing(T, count, a_k, ups, nu, downs, nd, log_s):
    """First pass > ``T`` at which ``count`` crosses ``a_k`` given up/down ratios (sorted here)."""
    floating = count <= a_k
    # the count only rises through the ups and falls through the downs: out of reach
    if (floating and count + nu <= a_k) or (not floating and count - nd > a_k):
        return NEVER
    _sort_desc(ups, nu)     # largest ratio = earliest crossing
    _sort_desc(downs, nd)
    iu = 0
    idn = 0
    c = count
    while iu < nu or idn < nd:
        tu = _up_time(ups[iu], log_s) if iu < nu else NEVER
        td = _down_time(downs[idn], log_s) if idn < nd else NEVER
        t = min(tu, td)
        while iu < nu and _up_time(ups[iu], log_s) == t:
            c += 1
            iu += 1
        while idn < nd and _down_time(downs[idn], log_s) == t:
            c -= 1
            idn += 1
        if (c <= a_k) != floating:
            return T + t
    return NEVER


@njit
def _solve(k, T, ef, ed, zt, w, base, pix, npx, out_above, a_k, log_s, ups, downs, top):
    """``(count, tau)`` of bin ``k`` over the pixels ``pix[:npx]`` (the rest: ``out_above``).

    ``tau`` is the absolute pass (> ``T``) at which the bin's floating state
    (``count <= a_k``) changes if the centres of ``ef`` (floating, their
    values; zero elsewhere) keep being lowered and those of ``ed`` stay,
    `NEVER` if it never does.
    """
    count = out_above
    nu = 0
    nd = 0
    for p in range(npx):   # branch-free: every pixel's ratio, kept where it is a crossing
        j = _u(pix[p])
        z = zt[j]
        b = _u(base[j])
        w0 = w[0, j]
        w1 = w[1, j]
        w2 = w[2, j]
        w3 = w[3, j]
        A = w0 * ef[b] + w1 * ef[b + 1] + w2 * ef[b + 2] + w3 * ef[b + 3]
        D = w0 * ed[b] + w1 * ed[b + 1] + w2 * ed[b + 2] + w3 * ed[b + 3]
        zd = z - D
        above = z > A + D
        r = zd / A
        count += above
        downs[nd] = r
        nd += above and A < 0.0 and zd < 0.0
        ups[nu] = r
        nu += (not above) and A > 0.0 and zd > 0.0
    if nd == 0:
        if count > a_k:
            return count, NEVER
        need = a_k + 1 - count
        if nu < need:
            return count, NEVER
        # the need-th largest ratio
        ntop = 0
        for p in range(nu):
            r = ups[p]
            if ntop < need or r > top[need - 1]:
                q = ntop if ntop < need else need - 1
                if ntop < need:
                    ntop += 1
                while q > 0 and top[q - 1] < r:
                    top[q] = top[q - 1]
                    q -= 1
                top[q] = r
        return count, T + _up_time(top[need - 1], log_s)
    return count, _first_crossing(T, count, a_k, ups, nu, downs, nd, log_s)


@njit
def _build(k, e, zt, w, base, seg_end, edges, mono, a_k, log_s, gbuf, hist, idx):
    """Full pass over bin ``k``: its count above and its shortlist of pixels nearest the continuum.

    The shortlist ``idx`` (at most ``L = idx.size`` pixels) holds the usable
    pixels nearest to changing side: the centres only fall, so after ``t`` more passes of any
    centres ``C_j`` has fallen by at most ``P_j (1 - step**t)`` and risen by at
    most ``N_j (1 - step**t)`` (``P_j``, ``N_j``: the sums of the positive and
    of the negative terms ``|b_ji| e_i``), and the pixels kept are those with
    the smallest ``(C_j - z_j) / P_j`` (below) or ``(z_j - C_j) / N_j``
    (above), up to the largest edge of the distance histogram ``hist`` that
    leaves at most ``L`` pixels below it.  No pixel outside the shortlist
    changes side for ``horizon`` passes.  Returns ``(count, n_short,
    above_outside, horizon)``; ``horizon`` is -1 when every pixel that can
    change side is in the shortlist (no limit).  In a monotone stage a bin
    with more than ``a_k`` pixels above never floats again: it gets no
    shortlist.
    """
    L = idx.size
    j0 = edges[k]
    j1 = edges[k + 1]
    above = 0
    j = j0
    while j < j1:  # runs of pixels weighed by the same centres: signed distances
        stop = min(seg_end[j], j1)
        b = base[j]
        e0 = e[b]
        e1 = e[b + 1]
        e2 = e[b + 2]
        e3 = e[b + 3]
        if mono:  # C only falls, by at most C (1 - step**t): a pixel above stays above
            for p in range(_u(j), _u(stop)):
                c = w[0, p] * e0 + w[1, p] * e1 + w[2, p] * e2 + w[3, p] * e3
                d = c - zt[p]
                above += d < 0.0
                gbuf[p] = d / c if d >= 0.0 else -np.inf   # +inf at masked pixels
        else:  # C falls by at most P (1 - step**t) and rises by at most N (1 - step**t)
            for p in range(_u(j), _u(stop)):
                t0 = w[0, p] * e0
                t1 = w[1, p] * e1
                t2 = w[2, p] * e2
                t3 = w[3, p] * e3
                c = t0 + t1 + t2 + t3
                pos = max(t0, 0.0) + max(t1, 0.0) + max(t2, 0.0) + max(t3, 0.0)
                d = c - zt[p]
                gbuf[p] = d / pos if d >= 0.0 else d / (pos - c)  # pos - c = N >= 0
        j = stop
    if mono and above > a_k:
        return above, 0, above, np.int64(-1)
    # count above, and keep the pixels nearest to changing side: a histogram of the
    # distances on a log scale (their float bits: 4 buckets per octave) gives the largest
    # bucket edge below which at most L pixels lie; a distance >= 1 is never crossed
    bits = gbuf.view(np.int64)
    for q in range(hist.size):
        hist[q] = 0
    count = 0
    for p in range(_u(j0), _u(j1)):
        v = bits[p]
        count += v < 0
        key = ((v & _ABS) >> _SHIFT) - _KEY0
        hist[min(max(key, 0), hist.size - 1)] += 1
    cut = 0
    n = 0
    while cut < hist.size - 1 and n + hist[cut] <= L:
        n += hist[cut]
        cut += 1
    unlimited = cut == hist.size - 1
    # bits of the bucket edge (none kept if the lowest bucket alone holds more than L)
    limit = (cut + _KEY0) << _SHIFT if cut > 0 else np.int64(0)
    q = 0
    for p in range(_u(j0), _u(j1)):
        if (bits[p] & _ABS) < limit:
            idx[q] = p
            q += 1
    inside = 0
    for q in range(n):
        p = _u(idx[q])
        inside += zt[p] > _dot(w, base, p, e)
    if unlimited:
        return count, n, count - inside, np.int64(-1)
    # the float of those bits, without an array to view them through: the bucket edge is
    # 2**(exponent - 1023) * (1 + mantissa / 4) (0.0 for limit 0)
    key = limit >> _SHIFT
    g_l = math.ldexp(1.0 + 0.25 * (key & 3), (key >> 2) - 1023) if limit != 0 else 0.0
    # largest t with 1 - step**t < g_l, less one pass for rounding
    horizon = np.int64(np.ceil(np.log1p(-g_l) / log_s)) - 2
    return count, n, count - inside, max(horizon, np.int64(0))


@njit
def _first_stop(z, c, edges, v, a_s, log_s, top):
    """Passes a flat continuum ``c`` can fall before any of the ``v`` bins may stop, less 2.

    Bin ``k`` stops when more than ``a_s[k]`` of its pixels lie above, i.e.
    once ``c step**t`` falls below its ``(a_s[k] + 1)``-th largest ``z``; the
    earliest such ``t`` over the bins, less two passes for the rounding of
    ``step**t`` (the event itself is then solved as any other), or 0.
    """
    first = NEVER
    for k in range(v):
        kmax = a_s[k] + 1
        ntop = 0
        above = 0
        for j in range(_u(edges[k]), _u(edges[k + 1])):
            r = z[j]
            if r > c:
                above += 1
            elif ntop < kmax or r > top[kmax - 1]:   # the kmax largest, descending
                q = ntop if ntop < kmax else kmax - 1
                if ntop < kmax:
                    ntop += 1
                while q > 0 and top[q - 1] < r:
                    top[q] = top[q - 1]
                    q -= 1
                top[q] = r
        need = kmax - above
        if need <= 0:
            return np.int64(0)
        if ntop < need or not top[need - 1] > 0.0:
            continue   # never stops while flat
        t = _up_time(top[need - 1] / c, log_s)
        if t < first:
            first = t
    if first == NEVER:
        return np.int64(0)
    return max(first - 2, np.int64(0))


@njit
def _refresh(k, T, e, z, ws, bs, sg, ed_s, mono, a_k, log_s, gbuf, hist, sl_idx, n_short,
             out_above, full, valid, stats_s):
    """`_build` bin ``k`` at pass ``T`` and store its shortlist state; return its count."""
    stats_s[1] += ed_s[k + 1] - ed_s[k]
    cnt, n_short[k], out_above[k], h = _build(k, e, z, ws, bs, sg, ed_s, mono, a_k, log_s,
                                              gbuf, hist, sl_idx[k])
    full[k] = h == 0
    valid[k] = NEVER if h < 0 else T + h
    return cnt


def solve_stages(zt, start, a_eff, stage_v, edges, centres, w, base, seg_end, touch_lo,
                 touch_hi, monotone, step, max_passes, shortlist, out_e, status, status_stage,
                 stats):
    """Run every stage of Algorithm 1 (fast) for each row; write the last stage's centres.

    The rows are independent: they are split between threads
    (`remap._util.threads.over_rows`), each row's result the same whatever the split.

    Parameters
    ----------
    zt : float64 (n, npix)
        Scaled flux divided by the noise allowance; ``-inf`` at masked pixels
        (a pixel is above the continuum ``C`` iff ``zt > C``).
    start : float64 (n,)
        Start value of the first stage's centres (``10 + max(z)``).
    a_eff : int64 (n, n_stages, v_max)
        The per-bin ``a`` of each stage.
    stage_v : int64 (n_stages,)
        Bins per stage.
    edges, centres : int64 (n_stages, v_max + 1), (n_stages, v_max)
        Bin edges and centre pixels per stage.
    w, base : float64 (n_stages, WIDTH, npix), int64 (n_stages, npix)
        Packed stage bases: ``C_j = sum_q w[s, q, j] e[base[s, j] + q]``.
    seg_end : int64 (n_stages, npix)
        End (exclusive) of the run of pixels with the base of pixel ``j``.
    touch_lo, touch_hi : int64 (n_stages, v_max)
        Range of bins holding a pixel that centre ``i`` has a weight at.
    monotone : bool (n_stages,)
        The stage basis is non-negative (a bin that stops never floats again).
    step : float
        Factor of one lowering.
    max_passes : int
        Largest number of lowerings of one centre per stage.
    shortlist : int
        Pixels per bin kept as the candidates for the next crossings.
    out_e : float64 (n, v_max)
        Output: the centre values of the last stage.
    status, status_stage : int64 (n,)
        Output: 0, or 1 if ``max_passes`` was exceeded (or the stage cannot
        converge), at stage ``status_stage``.
    stats : int64 (n_stages, 4)
        Output, added to per stage: events, pixels scanned in full passes over a bin,
        pixels solved from shortlists, full-bin solves.
    """
    n = zt.shape[0]
    row_stats = np.zeros((n,) + stats.shape, dtype=np.int64)
    over_rows(_solve_rows, n, zt, start, a_eff, stage_v, edges, centres, w, base, seg_end,
              touch_lo, touch_hi, monotone, float(step), int(max_passes), int(shortlist), out_e,
              status, status_stage, row_stats)
    with _STATS_LOCK:      # (two chunks may be fitted at once)
        stats += row_stats.sum(axis=0)


@njit
def _solve_rows(r0, r1, zt, start, a_eff, stage_v, edges, centres, w, base, seg_end, touch_lo,
                touch_hi, monotone, step, max_passes, shortlist, out_e, status, status_stage,
                row_stats):
    """Rows ``r0:r1`` of `solve_stages` (one thread's share; statistics per row)."""
    n, npix = zt.shape
    n_stages = stage_v.size
    vmax = out_e.shape[1]
    pad = vmax + WIDTH
    log_s = np.log(step)
    e = np.zeros(pad)
    ef = np.zeros(pad)
    ed = np.zeros(pad)
    e_prev = np.zeros(pad)
    fl = np.zeros(vmax, dtype=np.bool_)
    tau = np.empty(vmax, dtype=np.int64)
    steps = np.empty(vmax, dtype=np.int64)
    redo = np.zeros(vmax, dtype=np.bool_)
    changed = np.zeros(vmax, dtype=np.bool_)
    full = np.zeros(vmax, dtype=np.bool_)
    valid = np.empty(vmax, dtype=np.int64)
    n_short = np.empty(vmax, dtype=np.int64)
    out_above = np.empty(vmax, dtype=np.int64)
    sl_idx = np.empty((vmax, shortlist), dtype=np.int64)
    hist = np.zeros(N_BUCKETS, dtype=np.int64)
    gbuf = np.empty(npix)
    all_pix = np.arange(npix)
    top = np.empty(a_eff.max() + 2 if a_eff.size else 2)
    ups = np.empty(npix)
    downs = np.empty(npix)
    for row in range(r0, r1):
        z = zt[row]
        stats = row_stats[row]
        status[row] = 0
        for s in range(n_stages):
            v = stage_v[s]
            if s == 0:
                for k in range(v):
                    e[k] = start[row]
            else:
                for i in range(pad):
                    e_prev[i] = e[i]
                for k in range(v):
                    e[k] = _dot(w[s - 1], base[s - 1], centres[s, k], e_prev)
            for i in range(v, pad):
                e[i] = 0.0
            a_s = a_eff[row, s]
            ed_s = edges[s]
            ws = w[s]
            bs = base[s]
            sg = seg_end[s]
            mono = monotone[s]
            T = np.int64(0)
            n_float = 0
            for k in range(v):
                steps[k] = 0
            if s == 0:
                # every centre starts at the same value and floats, so the continuum
                # stays flat until the first bin stops: jump to just before it
                dt = _first_stop(z, e[0], ed_s, v, a_s, log_s, top)
                stats[s, 1] += ed_s[v] - ed_s[0]
                if dt > max_passes:
                    status[row] = 1
                    status_stage[row] = s
                    break
                if dt > 0:
                    factor = np.exp(dt * log_s)
                    for k in range(v):
                        e[k] *= factor
                        steps[k] = dt
            for k in range(v):
                cnt = _refresh(k, T, e, z, ws, bs, sg, ed_s, mono, a_s[k], log_s, gbuf, hist,
                               sl_idx, n_short, out_above, full, valid, stats[s])
                fl[k] = cnt <= a_s[k]
                if fl[k]:
                    n_float += 1
                redo[k] = True
            while True:
                for i in range(v):
                    ef[i] = e[i] if fl[i] else 0.0
                    ed[i] = 0.0 if fl[i] else e[i]
                # solve the bins whose flags or shortlist changed
                for k in range(v):
                    if not redo[k]:
                        continue
                    redo[k] = False
                    if mono and not fl[k]:
                        tau[k] = NEVER
                        continue
                    if T > valid[k]:
                        _refresh(k, T, e, z, ws, bs, sg, ed_s, mono, a_s[k], log_s, gbuf, hist,
                                 sl_idx, n_short, out_above, full, valid, stats[s])
                    if full[k]:
                        stats[s, 3] += 1
                        j0 = ed_s[k]
                        _, tau[k] = _solve(k, T, ef, ed, z, ws, bs, all_pix[j0:],
                                           ed_s[k + 1] - j0, 0, a_s[k], log_s, ups, downs, top)
                        valid[k] = T
                    else:
                        stats[s, 2] += n_short[k]
                        _, tau[k] = _solve(k, T, ef, ed, z, ws, bs, sl_idx[k], n_short[k],
                                           out_above[k], a_s[k], log_s, ups, downs, top)
                        if tau[k] > valid[k]:
                            tau[k] = valid[k]  # re-examine the bin when its shortlist expires
                if n_float == 0:
                    break
                t_next = NEVER
                for k in range(v):
                    if tau[k] < t_next:
                        t_next = tau[k]
                if t_next == NEVER:  # floating bins that can never stop
                    status[row] = 1
                    status_stage[row] = s
                    break
                dt = t_next - T
                if dt > 0:
                    factor = np.exp(dt * log_s)
                    over = False
                    for k in range(v):
                        if fl[k]:
                            e[k] *= factor
                            steps[k] += dt
                            if steps[k] > max_passes:
                                over = True
                    if over:
                        status[row] = 1
                        status_stage[row] = s
                        break
                T = t_next
                stats[s, 0] += 1
                # the bins due now: their state from a direct count
                for k in range(v):
                    changed[k] = False
                for k in range(v):
                    if tau[k] != T:
                        continue
                    redo[k] = True
                    if full[k] or T >= valid[k]:
                        cnt = _refresh(k, T, e, z, ws, bs, sg, ed_s, mono, a_s[k], log_s, gbuf,
                                       hist, sl_idx, n_short, out_above, full, valid, stats[s])
                    else:
                        cnt = out_above[k]
                        for q in range(n_short[k]):
                            j = _u(sl_idx[k, q])
                            cnt += z[j] > _dot(ws, bs, j, e)
                    if (cnt <= a_s[k]) != fl[k]:
                        changed[k] = True
                for k in range(v):
                    if changed[k]:
                        fl[k] = not fl[k]
                        n_float += 1 if fl[k] else -1
                        for b in range(touch_lo[s, k], touch_hi[s, k]):
                            redo[b] = True
            if status[row] != 0:
                break
        for i in range(vmax):
            out_e[row, i] = e[i]


def combine(e, basis, out):
    """``out[r] = sum_i e[r, i] * basis[i]``, summed in the order of ``i`` for every row."""
    over_rows(_combine_rows, e.shape[0], e, basis, out)


@njit
def _combine_rows(r0, r1, e, basis, out):
    """Rows ``r0:r1`` of `combine`."""
    v = e.shape[1]
    npix = basis.shape[1]
    for r in range(r0, r1):
        for p in range(npix):
            out[r, p] = e[r, 0] * basis[0, p]
        for i in range(1, v):
            c = e[r, i]
            for p in range(npix):
                out[r, p] += c * basis[i, p]


def prepare_rows(flux, bad, edges, stage_v, a, threshold, min_good, zt, start, scale, a_eff,
                 error):
    """Scale a batch and pack the kernel's inputs in one pass per row (`Algorithm1` ``fast``).

    For each row: ``scale`` = the median of the unmasked flux, ``z = flux /
    scale``, ``zt = z / threshold`` (``-inf`` at masked pixels), ``start = 10 +
    max(z)`` over the unmasked pixels and ``a_eff[s, k] = min(a, n_k - 1)``
    with ``n_k`` the unmasked pixels of bin ``k`` of stage ``s`` -- the values
    `Algorithm1._prepare` and `Algorithm1._fit_fast` compute with NumPy, bit
    for bit.

    Parameters
    ----------
    flux : float64 (n, npix)
    bad : bool (n, npix)
        True = masked.
    edges, stage_v
        As for `solve_stages`.
    a : int
    threshold : float
    min_good : int
        Fewest unmasked pixels a row needs.
    zt, start, scale, a_eff
        Outputs (as `solve_stages` takes them, and the scales).
    error : int64 (n,)
        Output: 0, or what is wrong with the row (1 a non-finite unmasked
        value, 2 fewer than ``min_good`` unmasked pixels, 3 a median that is not
        positive, 4 a bin without unmasked pixels); the caller raises the
        specific error.
    """
    over_rows(_prepare_rows, flux.shape[0], flux, bad, edges, stage_v, int(a), float(threshold),
              int(min_good), zt, start, scale, a_eff, error)


@njit
def _prepare_rows(r0, r1, flux, bad, edges, stage_v, a, threshold, min_good, zt, start, scale,
                  a_eff, error):
    """Rows ``r0:r1`` of `prepare_rows`."""
    npix = flux.shape[1]
    buf = np.empty(npix)
    n_good = np.zeros(npix + 1, dtype=np.int64)   # unmasked pixels before pixel p
    counts = np.empty(_MEDIAN_BUCKETS, dtype=np.int64)
    for r in range(r0, r1):
        error[r] = 0
        ng = 0
        for p in range(npix):
            if not bad[r, p]:
                f = flux[r, p]
                if not np.isfinite(f):
                    error[r] = 1
                    break
                buf[ng] = f
                ng += 1
            n_good[p + 1] = ng
        if error[r] != 0:
            continue
        if ng < min_good:
            error[r] = 2
            continue
        m = median_inplace(buf, ng, counts)
        if not m > 0.0:
            error[r] = 3
            continue
        scale[r] = m
        top = -np.inf
        for p in range(npix):
            if bad[r, p]:
                zt[r, p] = -np.inf
            else:
                z = flux[r, p] / m
                if z > top:
                    top = z
                zt[r, p] = z / threshold
        start[r] = 10.0 + top
        for s in range(stage_v.size):
            for k in range(stage_v[s]):
                n_use = n_good[edges[s, k + 1]] - n_good[edges[s, k]]
                if n_use == 0:
                    error[r] = 4
                a_eff[r, s, k] = min(a, n_use - 1)
