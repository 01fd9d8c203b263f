"""Compiled kernel of the cross-correlation preparation (`remap.spectra.velocity`).

:meth:`remap.spectra.velocity.TemplateBank.prepare` brings each observed row
onto the bank's uniform ln λ grid, divides it by a pseudo-continuum and
high-passes its line depth.  In NumPy that is a dozen passes over
``(rows, nfft)`` arrays (interpolation, a 3-point mean, block maxima, a
running maximum, two coverage-weighted smoothings and their interpolation back
to the pixels); this kernel does the same arithmetic row by row (divisions by
constants as multiplications by their reciprocals), in parallel over the rows,
on data that stays in cache.  It is the same algorithm as
:func:`remap.spectra.velocity.pseudo_continuum` and
``remap.spectra.velocity._smooth_weighted`` (which remain the reference,
used for the templates and tested against this kernel in
``tests/test_velocity.py``: equal to 1e-12), computed in float64.

Imported on first use (numba's import costs about a second).
"""

from __future__ import annotations

import numpy as np

from .._util.jit import njit, uidx
from .._util.threads import over_rows

__all__ = ["prepare_rows", "smooth_params"]


def smooth_params(width, block=None):
    """``(block size, boxcar length in blocks)`` of a coverage-weighted smoothing of ``width``."""
    size = max(int(width) // 8, 1) if block is None else int(block)
    return size, max(int(round(width / size)), 1)


@njit
def _boxcar(x, nb, k, tmp):
    """Two passes of a length-``k`` boxcar (zero outside) over ``x[:nb]``, in place."""
    lo_off = k // 2
    for _ in range(2):
        for i in range(nb):
            tmp[i] = x[i]
        acc = 0.0
        # running sum over [i - lo_off, i - lo_off + k - 1]
        for j in range(0, min(k - lo_off - 1, nb)):
            acc += tmp[j]
        for i in range(nb):
            add = i - lo_off + k - 1
            if 0 <= add < nb:
                acc += tmp[uidx(add)]
            x[i] = acc / k
            drop = i - lo_off
            if 0 <= drop < nb:
                acc -= tmp[uidx(drop)]


@njit
def _upsample(vals, nb, size, npix, out):
    """Block values interpolated linearly back to the pixels (block centres as knots)."""
    if nb == 1:
        for p in range(npix):
            out[p] = vals[0]
        return
    inv = 1.0 / size
    for b in range(nb - 1):
        # pixels whose left knot (the last centre <= p, clipped to [0, nb - 2]) is b:
        # floor((p + 0.5) / size - 0.5) == b, i.e. floor((2p + 1 - size) / (2 size)) == b
        p0 = 0 if b == 0 else (2 * b * size + size) // 2
        p1 = npix if b == nb - 2 else min((2 * (b + 1) * size + size) // 2, npix)
        c0 = size * (b + 0.5) - 0.5
        v0 = vals[b]
        dv = vals[b + 1] - vals[b]
        for p in range(p0, p1):
            w = (p - c0) * inv
            w = min(max(w, 0.0), 1.0)
            out[uidx(p)] = v0 + dv * w


@njit
def _smooth(y, wt, npix, size, k, out, num, den, tmp):
    """Coverage-weighted smoothing of ``y[:npix]`` (block means, boxcar, linear back)."""
    nb = -(-npix // size)
    for b in range(nb):
        s = 0.0
        d = 0.0
        for p in range(uidx(b * size), uidx(min((b + 1) * size, npix))):
            s += y[p] * wt[p]
            d += wt[p]
        num[b] = s
        den[b] = d
    _boxcar(num, nb, k, tmp)
    _boxcar(den, nb, k, tmp)
    n_good = 0
    for b in range(nb):
        if den[b] > 1e-9:
            num[b] = num[b] / max(den[b], 1e-300)
            n_good += 1
        else:
            num[b] = np.nan
    if n_good == 0:
        for b in range(nb):
            num[b] = 0.0
    elif n_good < nb:  # empty blocks: linear between the nearest good ones, constant beyond
        prev = -1
        for b in range(nb):
            if np.isnan(num[b]):
                continue
            if prev == -1:
                for q in range(b):
                    num[q] = num[b]
            elif b - prev > 1:
                for q in range(prev + 1, b):
                    num[q] = num[prev] + (num[b] - num[prev]) * (q - prev) / (b - prev)
            prev = b
        for q in range(prev + 1, nb):
            num[q] = num[prev]
    _upsample(num, nb, size, npix, out)


@njit
def _prepare(r0, r1, lnw, flux, bad, grid, cont_size, cont_k, cont_window, hp_size, hp_k,
             depth, covered):
    """Rows ``r0:r1`` of `prepare_rows` (one thread's share)."""
    n, npix = flux.shape
    nfft = grid.size
    bsize = max(cont_window // 4, 1)
    third = 1.0 / 3.0
    nbm = -(-nfft // bsize)
    nbs = -(-nfft // min(cont_size, hp_size)) + 1
    on = np.empty(nfft)
    f = np.empty(nfft)
    sm = np.empty(nfft)
    a = np.empty(nfft)
    hw = np.empty(nfft)
    env_pix = np.empty(nfft)
    bmax = np.empty(nbm)
    env = np.empty(nbm)
    num = np.empty(nbs)
    den = np.empty(nbs)
    tmp = np.empty(nbs)
    for r in range(r0, r1):
        x = lnw[r]
        if npix < 2:
            for i in range(nfft):
                covered[r, i] = False
                depth[r, i] = 0.0
            continue
        # 1. linear interpolation of the flux (masked pixels as 0) and of the coverage
        j = 0
        for i in range(nfft):
            g = grid[i]
            covered[r, i] = False
            on[i] = 0.0
            if g < x[0] or g > x[npix - 1]:
                continue
            while j < npix - 2 and x[j + 1] <= g:
                j += 1
            w = (g - x[j]) / (x[j + 1] - x[j])
            w = min(max(w, 0.0), 1.0)
            v0 = 0.0 if bad[r, j] else flux[r, j]
            v1 = 0.0 if bad[r, j + 1] else flux[r, j + 1]
            c0 = 0.0 if bad[r, j] else 1.0
            c1 = 0.0 if bad[r, j + 1] else 1.0
            if c0 + (c1 - c0) * w > 0.999:
                covered[r, i] = True
                on[i] = v0 + (v1 - v0) * w
        # 2. pseudo-continuum: 3-point mean, block maxima, running maximum over 4 blocks
        for i in range(nfft):
            f[i] = on[i] if covered[r, i] else -np.inf
        sm[0] = f[0]
        sm[nfft - 1] = f[nfft - 1]
        for i in range(1, nfft - 1):
            s = (f[i - 1] + f[i] + f[i + 1]) * third
            sm[i] = s if np.isfinite(s) else f[i]
        for b in range(nbm):
            m = -np.inf
            for p in range(uidx(b * bsize), uidx(min((b + 1) * bsize, nfft))):
                if sm[p] > m:
                    m = sm[p]
            bmax[b] = m
        for b in range(nbm):
            m = -np.inf
            for q in range(b - 2, b + 2):
                v = bmax[uidx(min(max(q, 0), nbm - 1))]
                if v > m:
                    m = v
            env[b] = m
        # the envelope and its coverage back at the pixels, smoothed over the window
        for b in range(nbm):
            bmax[b] = env[b] if np.isfinite(env[b]) else 0.0
            env[b] = 1.0 if np.isfinite(env[b]) else 0.0
        _upsample(bmax, nbm, bsize, nfft, a)
        _upsample(env, nbm, bsize, nfft, hw)
        for i in range(nfft):
            hw[i] = 1.0 if hw[i] > 0.5 else 0.0
        _smooth(a, hw, nfft, cont_size, cont_k, env_pix, num, den, tmp)
        # 3. line depth 1 - f / c, then the coverage-weighted high-pass
        for i in range(nfft):
            d = 0.0
            if covered[r, i] and env_pix[i] > 0:
                d = 1.0 - on[i] / env_pix[i]
                if not np.isfinite(d):
                    d = 0.0
            else:
                covered[r, i] = False
            a[i] = d
            hw[i] = 1.0 if covered[r, i] else 0.0
        _smooth(a, hw, nfft, hp_size, hp_k, sm, num, den, tmp)
        for i in range(nfft):
            depth[r, i] = a[i] - sm[i] if covered[r, i] else 0.0


def prepare_rows(lnw, flux, bad, grid, cont_window, highpass):
    """Rows on the ln λ ``grid`` as high-passed line depth (see `TemplateBank.prepare`).

    Parameters
    ----------
    lnw : ndarray, shape (n, npix) or (npix,)
        ln wavelength of each row (ascending), or one for all rows.
    flux : ndarray, shape (n, npix)
    bad : ndarray of bool, shape (n, npix)
        Masked or non-finite pixels.
    grid : ndarray, shape (nfft,)
        The bank's ln λ grid.
    cont_window : int
        Width (pixels) of the pseudo-continuum's running maximum (and of its
        smoothing).
    highpass : int
        Width (pixels) of the coverage-weighted high-pass.

    Returns
    -------
    depth : ndarray, shape (n, nfft)
        High-passed line depth, 0 where not covered.
    covered : ndarray of bool, shape (n, nfft)
        Grid points with data and a continuum.
    """
    flux = np.ascontiguousarray(flux, dtype=np.float64)
    n = flux.shape[0]
    lnw = np.broadcast_to(np.asarray(lnw, dtype=np.float64), flux.shape)
    bad = np.ascontiguousarray(bad, dtype=np.bool_)
    grid = np.ascontiguousarray(grid, dtype=np.float64)
    depth = np.empty((n, grid.size))
    covered = np.empty((n, grid.size), dtype=np.bool_)
    cont_size, cont_k = smooth_params(cont_window)
    hp_size, hp_k = smooth_params(highpass)
    over_rows(_prepare, n, lnw, flux, bad, grid, cont_size, cont_k, int(cont_window), hp_size,
              hp_k, depth, covered)
    return depth, covered
