"""Resampling of flux arrays onto a wavelength grid (array level, no Spectrum objects).

One function pair serves training and inference: the augmentation
(:func:`remap.augment.resample`, :func:`remap.augment.augment`) and the
``resample`` stage of :func:`remap.fit` call :func:`resample_arrays`, so a
spectrum reaches a network through the same interpolation whichever way it
came.

* the flux (and any other smooth per-pixel quantity) by a not-a-knot cubic
  spline (`scipy.interpolate.make_interp_spline`, one solve for a whole
  batch sharing an axis);
* the uncertainty linearly (a spline could make it negative next to a jump);
* a new pixel is masked when either input pixel around it is masked.
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
        Strictly increasing wavelengths of the input pixels.
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
        On ``grid``; ``sigma``/``mask`` are None when not given.
    """
    out = spline(wave, flux, grid)
    idx = w = None
    if sigma is not None or mask is not None:
        idx, w = linear_weights(wave, grid)
    out_sigma = None if sigma is None else apply_linear(np.asarray(sigma, dtype=float), idx, w)
    out_mask = None
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        out_mask = (m[..., idx] & (w < 1)) | (m[..., idx + 1] & (w > 0))
    return out, out_sigma, out_mask


def resample_rows(wave: np.ndarray, grid: np.ndarray, flux: np.ndarray,
                  sigma: np.ndarray | None = None, mask: np.ndarray | None = None, *,
                  rows: np.ndarray | None = None, out: tuple | None = None, offset: int = 0):
    """Like :func:`resample_arrays` for rows that each have their own wavelength grid.

    The same not-a-knot cubic spline (solved per row by a compiled kernel,
    ``remap.spectra._spline_kernel``, equal to SciPy's to rounding), the
    same linear uncertainty and mask rules.

    Parameters
    ----------
    wave : ndarray, shape (n, npix)
        Strictly increasing wavelengths of each row (npix >= 4).
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

    Returns
    -------
    flux, sigma, mask : ndarray, shape (len(rows), m), or the arrays of ``out``
    """
    from ._spline_kernel import linear_rows, spline_rows   # numba: imported on first use

    grid = np.asarray(grid, dtype=float)
    o_flux, o_sigma, o_mask = (None, None, None) if out is None else out
    out = spline_rows(wave, flux, grid, rows=rows, out=o_flux, offset=offset)
    out_sigma, out_mask = linear_rows(wave, grid, sigma, mask, rows=rows, out_sigma=o_sigma,
                                      out_mask=o_mask, offset=offset)
    return out, out_sigma, out_mask
