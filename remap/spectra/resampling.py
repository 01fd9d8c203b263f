"""Resampling of flux arrays onto a wavelength grid (array level, no Spectrum objects).

One function pair serves training and inference: the augmentation
(:func:`remap.augment.resample`, :func:`remap.augment.augment`) and the
``resample`` stage of :func:`remap.fit` call :func:`resample_arrays` (rows
sharing one axis) or :func:`resample_rows` (rows with their own axes), so a
spectrum reaches a network through the same interpolation whichever way it
came.  Both run one compiled kernel (``remap.spectra._spline_kernel``):

* the flux (and any other smooth per-pixel quantity) by a not-a-knot cubic
  spline, equal to `scipy.interpolate.make_interp_spline` (:func:`spline`,
  the reference the tests compare with) to rounding; rows sharing an axis
  share one factorization of the spline system;
* the uncertainty linearly (a spline could make it negative next to a jump);
* a new pixel is masked when either input pixel around it is masked.

The outputs are C-ordered (rows contiguous), as the compiled stages after
them read them.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import make_interp_spline

__all__ = ["linear_weights", "apply_linear", "spline", "resample_arrays", "resample_rows"]


def linear_weights(x_old: np.ndarray, x_new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights for linear interpolation from ``x_old`` to ``x_new``.

    Parameters
    ----------
    x_old : ndarray, shape (n,)
        Strictly increasing abscissae (n >= 2).
    x_new : ndarray, shape (m,)
        Where to interpolate (clipped to the ends of ``x_old``).

    Returns
    -------
    idx : ndarray of int, shape (m,)
        Left neighbour in ``x_old`` of each new point.
    w : ndarray, shape (m,)
        Weight of the right neighbour, in [0, 1].
    """
    idx = np.clip(np.searchsorted(x_old, x_new, side="right") - 1, 0, x_old.size - 2)
    w = (x_new - x_old[idx]) / (x_old[idx + 1] - x_old[idx])
    return idx, np.clip(w, 0.0, 1.0)


def apply_linear(y: np.ndarray, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``y`` (last axis) with :func:`linear_weights` output."""
    return y[..., idx] * (1.0 - w) + y[..., idx + 1] * w


def spline(wave: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Not-a-knot cubic spline of ``values`` (last axis on ``wave``) evaluated at ``grid``."""
    return make_interp_spline(wave, np.asarray(values, dtype=float), k=3, axis=-1)(grid)


def resample_arrays(wave: np.ndarray, grid: np.ndarray, flux: np.ndarray,
                    sigma: np.ndarray | None = None, mask: np.ndarray | None = None):
    """Resample rows of flux sharing one wavelength axis onto ``grid``.

    Parameters
    ----------
    wave : ndarray, shape (npix,)
        Strictly increasing wavelengths of the input pixels (npix >= 4).
    grid : ndarray, shape (m,)
        Target wavelengths, inside ``[wave[0], wave[-1]]`` (not checked here:
        the callers check coverage and say what is wrong).
    flux : ndarray, shape (npix,) or (n, npix)
        Finite flux (masked pixels already filled).
    sigma : ndarray like ``flux``, optional
        Standard deviations (NaN rows stay NaN).
    mask : ndarray of bool like ``flux``, optional
        True = bad.

    Returns
    -------
    flux, sigma, mask : ndarray
        On ``grid``, the shape of the input's (rows, m) or (m,), C-ordered;
        ``sigma``/``mask`` are None when not given.

    Raises
    ------
    ValueError
        ``wave`` not 1-D, of another length than the rows, not strictly
        increasing, or shorter than 4 pixels.
    """
    flux = np.asarray(flux, dtype=float)
    wave = np.asarray(wave, dtype=float)
    if wave.ndim != 1 or wave.size != flux.shape[-1]:
        raise ValueError(f"wave must be 1-D with one value per pixel ({flux.shape[-1]}); "
                         f"received shape {wave.shape}")
    if not np.all(np.diff(wave) > 0):
        raise ValueError("wave must be strictly increasing")
    one = flux.ndim == 1
    rows = [None if a is None else np.atleast_2d(a) for a in (flux, sigma, mask)]
    out = resample_rows(wave, grid, *rows)
    if one:
        out = tuple(None if a is None else a[0] for a in out)
    return out


def resample_rows(wave: np.ndarray, grid: np.ndarray, flux: np.ndarray,
                  sigma: np.ndarray | None = None, mask: np.ndarray | None = None, *,
                  rows: np.ndarray | None = None, out: tuple | None = None, offset: int = 0,
                  scale: np.ndarray | None = None):
    """Like :func:`resample_arrays`, also for rows that each have their own wavelength grid.

    The not-a-knot cubic spline (solved by a compiled kernel,
    ``remap.spectra._spline_kernel``, equal to SciPy's to rounding: per row,
    or factored once for rows sharing ``wave``), the linear uncertainty and
    the mask rule.

    Parameters
    ----------
    wave : ndarray, shape (n, npix) or (npix,)
        Strictly increasing wavelengths of each row, or one grid for every
        row (npix >= 4).
    grid : ndarray, shape (m,)
        Target wavelengths, inside every row's range.
    flux, sigma, mask : ndarray, shape (n, npix)
        As for :func:`resample_arrays` (``sigma``/``mask`` optional).
    rows : ndarray of int, optional
        Resample only these rows, in this order (default: all).
    out : tuple of (flux, sigma, mask) arrays, optional
        Write the results into rows ``offset ...`` of these (shape (>= offset
        + len(rows), m); ``sigma``/``mask`` may be None when not given)
        instead of new arrays, so that rows of several inputs can be gathered
        into one batch without another copy.
    offset : int
    scale : ndarray, shape (n,), optional
        Per-row factors of ``grid``: row ``r`` is evaluated at ``grid *
        scale[r]`` (its wavelengths are ``wave[r] / scale[r]`` in the frame of
        ``grid``, e.g. Doppler factors).

    Returns
    -------
    flux, sigma, mask : ndarray, shape (len(rows), m), or the arrays of ``out``
    """
    from ._spline_kernel import linear_rows, resample_shared, spline_rows   # numba: on first use

    grid = np.asarray(grid, dtype=float)
    if np.shape(wave)[-1] < 4:
        raise ValueError(f"a not-a-knot cubic spline needs at least 4 pixels per row; received "
                         f"{np.shape(wave)[-1]}")
    o_flux, o_sigma, o_mask = (None, None, None) if out is None else out
    if np.ndim(wave) == 1 and np.ndim(flux) == 2 and np.shape(flux)[0] > 1:
        return resample_shared(wave, flux, grid, sigma, mask, rows=rows, out=o_flux,
                               out_sigma=o_sigma, out_mask=o_mask, offset=offset, scale=scale)
    out = spline_rows(wave, flux, grid, rows=rows, out=o_flux, offset=offset, scale=scale)
    out_sigma, out_mask = linear_rows(wave, grid, sigma, mask, rows=rows, out_sigma=o_sigma,
                                      out_mask=o_mask, offset=offset, scale=scale)
    return out, out_sigma, out_mask
