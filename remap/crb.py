"""The Cramér–Rao bound: the smallest label scatter any unbiased method can reach.

For a spectrum model ``f(θ)`` (noiseless, continuum-normalized flux on the
survey's pixels as a function of the labels θ = (T_eff, log g, [Fe/H], ...))
observed with independent Gaussian noise of standard deviation ``σ_j`` in
pixel ``j``, the Fisher information matrix is

    F = Jᵀ W J,    J_jk = ∂f_j / ∂θ_k,    W = diag(1 / σ_j²).

For white noise at a signal-to-noise ratio SNR on the normalized flux
(σ_j = 1/SNR) this is ``F = Jᵀ J · SNR²``.  The covariance of any unbiased
estimator of θ is at least ``F⁻¹``, so

    CRB_k = sqrt((F⁻¹)_kk)

is the smallest scatter label ``k`` can have with the other labels unknown
too (the marginal bound; ``1 / sqrt(F_kk)`` would be the bound with the other
labels known).  The bound scales as 1/SNR.

The derivatives come from central finite differences,
``(f(θ + h_k e_k) − f(θ − h_k e_k)) / (2 h_k)``, one-sided next to the edge
of the model's domain.  Choose the steps ``h_k`` small against the scale on
which the spectrum changes non-linearly but large against the model's own
numerical noise, and check them by halving: :func:`step_check` returns the
relative change of the bound.

The functions work with any model: pass a callable that maps a label vector
to a flux array, e.g. a synthetic library followed by down-convolution and
resampling (see ``benchmarks/crb.py`` for the ``linelist`` library on the
MARVELS beams).

Examples
--------
A linear model ``f(θ) = A θ``, whose bound is known in closed form,
``sqrt(diag((AᵀA)⁻¹)) / SNR``:

>>> import numpy as np
>>> from remap.crb import cramer_rao_bound
>>> A = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
>>> bound = cramer_rao_bound(lambda t: A @ t, [0.0, 0.0], [0.1, 0.1], snr=10.0)
>>> np.allclose(bound, np.sqrt(np.diag(np.linalg.inv(A.T @ A))) / 10.0)
True
"""

from __future__ import annotations

import numpy as np

from ._util.validators import check_real

__all__ = ["finite_difference_jacobian", "fisher_matrix", "bound_from_fisher",
           "cramer_rao_bound", "step_check"]


def _as_steps(steps, k):
    h = np.asarray(steps, dtype=float).reshape(-1)
    if h.size != k:
        raise ValueError(f"give one step per label ({k}); received {h.size} steps")
    if not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise ValueError(f"steps must be positive and finite; received steps={list(h)}")
    return h


def _as_bounds(bounds, k):
    if bounds is None:
        return np.full(k, -np.inf), np.full(k, np.inf)
    b = np.asarray(bounds, dtype=float)
    if b.shape != (k, 2):
        raise ValueError(f"bounds must be one (low, high) pair per label, shape ({k}, 2); "
                         f"received shape {b.shape}")
    if np.any(b[:, 0] >= b[:, 1]):
        raise ValueError(f"every bound needs low < high; received bounds={b.tolist()}")
    return b[:, 0], b[:, 1]


def finite_difference_jacobian(spectrum_fn, label, steps, *, bounds=None):
    """Derivatives of a model spectrum with respect to its labels by finite differences.

    Parameters
    ----------
    spectrum_fn : callable
        ``spectrum_fn(label) -> flux``: a 1-D float array (the noiseless,
        normalized flux on the pixels that are observed) for a label vector
        (1-D array of ``k`` floats).
    label : array-like, shape (k,)
        Where to take the derivatives.
    steps : array-like, shape (k,)
        Finite-difference step of each label (in the label's units).
    bounds : array-like, shape (k, 2), optional
        Domain of the model: where ``label ± step`` would leave it, a
        one-sided difference over ``step`` is used instead of the central one.

    Returns
    -------
    jacobian : ndarray, shape (npix, k)
        ``∂flux_j / ∂label_k``.

    Raises
    ------
    ValueError
        Wrong number of steps, a non-positive step, a label outside
        ``bounds``, a step wider than the domain, or a model that returns
        arrays of different shapes.
    """
    x = np.asarray(label, dtype=float).reshape(-1)
    k = x.size
    h = _as_steps(steps, k)
    lo, hi = _as_bounds(bounds, k)
    if np.any(x < lo) or np.any(x > hi):
        raise ValueError(f"label {x.tolist()} lies outside the bounds")
    columns = []
    center = None
    npix = None
    for i in range(k):
        up, down = x.copy(), x.copy()
        up[i] += h[i]
        down[i] -= h[i]
        if up[i] > hi[i] and down[i] < lo[i]:
            raise ValueError(f"step {h[i]:g} of label {i} is wider than its domain "
                             f"[{lo[i]:g}, {hi[i]:g}]")
        if up[i] > hi[i] or down[i] < lo[i]:
            if center is None:
                center = np.asarray(spectrum_fn(x.copy()), dtype=float).reshape(-1)
            if up[i] > hi[i]:
                f_up, f_down, width = center, spectrum_fn(down), h[i]
            else:
                f_up, f_down, width = spectrum_fn(up), center, h[i]
        else:
            f_up, f_down, width = spectrum_fn(up), spectrum_fn(down), 2.0 * h[i]
        f_up = np.asarray(f_up, dtype=float).reshape(-1)
        f_down = np.asarray(f_down, dtype=float).reshape(-1)
        if f_up.shape != f_down.shape or (npix is not None and f_up.size != npix):
            raise ValueError("spectrum_fn returned flux arrays of different sizes")
        npix = f_up.size
        columns.append((f_up - f_down) / width)
    return np.column_stack(columns)


def fisher_matrix(jacobian, snr=1.0, *, sigma=None):
    """Fisher information matrix ``Jᵀ W J`` of a spectrum with Gaussian pixel noise.

    Parameters
    ----------
    jacobian : array-like, shape (npix, k)
        :func:`finite_difference_jacobian`.
    snr : float
        Signal-to-noise ratio per pixel on the normalized flux: white noise
        of σ = 1/SNR.
    sigma : array-like, shape (npix,), optional
        Relative noise profile: pixel ``j`` has σ_j = sigma_j / SNR (e.g. the
        square root of the normalized flux for photon noise).  Default 1.

    Returns
    -------
    fisher : ndarray, shape (k, k)
    """
    j = np.asarray(jacobian, dtype=float)
    if j.ndim != 2:
        raise ValueError(f"jacobian must be 2-D (npix, k); received shape {j.shape}")
    check_real("snr", snr, 0, strict_min=True)
    if sigma is not None:
        s = np.asarray(sigma, dtype=float).reshape(-1)
        if s.size != j.shape[0] or np.any(s <= 0) or not np.all(np.isfinite(s)):
            raise ValueError(f"sigma must hold {j.shape[0]} positive finite values")
        j = j / s[:, None]
    return (j.T @ j) * float(snr) ** 2


def bound_from_fisher(fisher):
    """Marginal Cramér–Rao bounds ``sqrt(diag(F⁻¹))`` of a Fisher matrix.

    Parameters
    ----------
    fisher : array-like, shape (..., k, k)

    Returns
    -------
    bound : ndarray, shape (..., k)
        Infinite for every label of a singular (or numerically singular)
        matrix: some combination of labels leaves the spectrum unchanged.
    """
    f = np.asarray(fisher, dtype=float)
    if f.ndim < 2 or f.shape[-1] != f.shape[-2]:
        raise ValueError(f"fisher must have shape (..., k, k); received {f.shape}")
    flat = f.reshape((-1,) + f.shape[-2:])
    out = np.full(flat.shape[:2], np.inf)
    for n, m in enumerate(flat):
        # scale to unit diagonal: the condition number then measures degeneracy,
        # not the labels' units
        d = np.sqrt(np.diag(m))
        if np.any(~np.isfinite(d)) or np.any(d <= 0):
            continue
        c = m / np.outer(d, d)
        if np.linalg.cond(c) > 1e12:
            continue
        out[n] = np.sqrt(np.diag(np.linalg.inv(c))) / d
    return out.reshape(f.shape[:-1])


def cramer_rao_bound(spectrum_fn, labels, steps, snr, *, bounds=None, sigma=None,
                     return_fisher=False):
    """Cramér–Rao bounds of the labels of a spectrum model at given label points and SNRs.

    Parameters
    ----------
    spectrum_fn : callable
        ``spectrum_fn(label) -> flux``: noiseless, continuum-normalized flux
        (1-D array) of a label vector of ``k`` floats.  Concatenate the
        pixels of several beams or exposures to get their joint bound.
    labels : array-like, shape (k,) or (n, k)
        One label point or ``n`` of them.
    steps : array-like, shape (k,)
        Finite-difference steps (see :func:`step_check`).
    snr : float or array-like of float
        Signal-to-noise ratio(s) per pixel of the normalized flux (white
        noise σ = 1/SNR, or ``sigma / SNR``).
    bounds : array-like, shape (k, 2), optional
        Domain of the model (one-sided differences at its edges).
    sigma : array-like, shape (npix,), optional
        Relative noise profile (:func:`fisher_matrix`).
    return_fisher : bool
        Also return the Fisher matrices at SNR 1.

    Returns
    -------
    bound : ndarray, shape ``np.shape(snr) + np.shape(labels)``
        ``sqrt((F⁻¹)_kk)`` per SNR, label point and label; ``inf`` where the
        Fisher matrix is singular.
    fisher : ndarray, shape ``np.shape(labels)[:-1] + (k, k)``
        Only with ``return_fisher``: ``Jᵀ W J`` at SNR 1 (multiply by SNR²).

    Raises
    ------
    ValueError
        Bad labels, steps, SNRs or bounds (see :func:`finite_difference_jacobian`).
    """
    lab = np.asarray(labels, dtype=float)
    if lab.ndim not in (1, 2) or lab.shape[-1] < 1:
        raise ValueError(f"labels must have shape (k,) or (n, k); received {lab.shape}")
    snr_arr = np.asarray(snr, dtype=float)
    if np.any(~np.isfinite(snr_arr)) or np.any(snr_arr <= 0):
        raise ValueError(f"snr must be positive and finite; received snr={snr!r}")
    rows = lab.reshape(-1, lab.shape[-1])
    fisher = np.stack([fisher_matrix(finite_difference_jacobian(spectrum_fn, row, steps,
                                                                bounds=bounds), 1.0,
                                     sigma=sigma) for row in rows])
    unit = bound_from_fisher(fisher)                       # (n, k) at SNR 1
    bound = unit[None] / snr_arr.reshape(-1, 1, 1)          # F ∝ SNR²: bound ∝ 1/SNR
    bound = bound.reshape(snr_arr.shape + lab.shape)
    if return_fisher:
        return bound, fisher.reshape(lab.shape[:-1] + fisher.shape[-2:])
    return bound


def step_check(spectrum_fn, labels, steps, *, factor=0.5, bounds=None, sigma=None):
    """Relative change of the bound when the finite-difference steps shrink.

    Parameters
    ----------
    spectrum_fn, labels, steps, bounds, sigma
        As for :func:`cramer_rao_bound`.
    factor : float
        The steps are multiplied by this (default: halved).

    Returns
    -------
    change : ndarray, shape ``np.shape(labels)``
        ``CRB(factor · steps) / CRB(steps) − 1`` per label point and label
        (independent of the SNR).  A few per cent or less means the steps
        resolve the derivatives.
    """
    if not 0 < factor < 1:
        raise ValueError(f"factor must lie in (0, 1); received factor={factor!r}")
    h = np.asarray(steps, dtype=float)
    big = cramer_rao_bound(spectrum_fn, labels, h, 1.0, bounds=bounds, sigma=sigma)
    small = cramer_rao_bound(spectrum_fn, labels, h * factor, 1.0, bounds=bounds, sigma=sigma)
    return small / big - 1.0
