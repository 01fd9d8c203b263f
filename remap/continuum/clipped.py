"""An asymmetrically sigma-clipped Legendre polynomial continuum, vectorized over a batch.

Absorption lines only ever take flux *away* from the continuum, so pixels far
below a trial fit are lines, while pixels above it are noise (or spikes).  The
fit therefore rejects pixels more than ``lower`` sigma below the current fit
and more than ``upper`` sigma above it, re-fits by weighted linear least
squares, and repeats until the set of kept pixels stops changing.  The noise
sigma of each spectrum is estimated from the kept pixels *above* the fit (the
root mean square of the positive residuals), which absorption lines cannot
inflate.  Keeping only ``[-lower, +upper]`` sigma of Gaussian noise shifts the
mean of the kept pixels by a known amount (the mean of a truncated normal
distribution); that shift is removed at the end.

This is the family of "upper sigma clipping" continuum methods discussed by
Bialek et al. (2019, cited in Gilda 2025 §3.3).  Every spectrum of a batch is
fitted at once: the normal equations of all spectra are assembled with one
matrix product and solved with one batched `numpy.linalg.solve`.
"""

from __future__ import annotations


import numpy as np
from numpy.polynomial import legendre
from scipy.stats import norm

from .._util.stats import nanmedian_rows
from .._util.validators import check_int, check_real
from .base import ContinuumError, ContinuumFitter

__all__ = ["Clipped"]

# iterations stop once no spectrum's fit moves by more than this many noise sigmas
_CONVERGED = 0.01


class Clipped(ContinuumFitter):
    """Iterative asymmetric sigma-clipped Legendre fit (fast, batch-vectorized).

    Parameters
    ----------
    degree : int
        Degree of the Legendre polynomial in the (scaled) wavelength, 0 to 30.
    lower : float
        Pixels more than ``lower`` sigma below the fit are rejected as
        absorption (> 0).
    upper : float
        Pixels more than ``upper`` sigma above the fit are rejected as spikes
        (> 0).
    maxiters : int
        Largest number of clip-and-refit iterations (the loop stops earlier
        when no spectrum's kept set changes).
    correct_bias : bool
        Subtract the mean shift that the asymmetric clipping of Gaussian noise
        causes (``sigma * (pdf(lower) - pdf(upper)) / (cdf(upper) - cdf(-lower))``).

    Notes
    -----
    The polynomial is a function of wavelength when ``fit`` receives one (of
    pixel index otherwise), scaled to [-1, 1] over the spectrum.  A spectrum
    left with fewer kept pixels than ``degree + 1`` raises
    `~remap.continuum.ContinuumError`.
    """

    name = "clipped"
    description = "asymmetric sigma-clipped Legendre polynomial, vectorized (fast)"

    def __init__(self, degree=5, lower=1.5, upper=3.0, maxiters=30, correct_bias=True):
        self.degree = check_int("degree", degree, 0, 30)
        self.lower = check_real("lower", lower, 0, strict_min=True)
        self.upper = check_real("upper", upper, 0, strict_min=True)
        self.maxiters = check_int("maxiters", maxiters, minimum=1)
        if not isinstance(correct_bias, (bool, np.bool_)):
            raise ValueError(f"correct_bias must be True or False; received "
                             f"correct_bias={correct_bias!r}")
        self.correct_bias = bool(correct_bias)

    def get_config(self):
        """The options of this fitter.

        Returns
        -------
        config : dict
        """
        return {"degree": self.degree, "lower": self.lower, "upper": self.upper,
                "maxiters": self.maxiters, "correct_bias": self.correct_bias}

    @property
    def _shift(self):
        """Mean of a unit normal truncated to [-lower, upper]."""
        mass = norm.cdf(self.upper) - norm.cdf(-self.lower)
        return (norm.pdf(self.lower) - norm.pdf(self.upper)) / mass

    @property
    def _rms_above(self):
        """RMS of the positive part of a unit normal truncated at ``upper``.

        The noise sigma is the RMS of the kept positive residuals divided by
        this (slightly below 1 because the tail beyond ``upper`` is clipped).
        """
        b = self.upper
        second_moment = (norm.cdf(b) - 0.5) - b * norm.pdf(b)  # integral of x^2 phi, 0..b
        return float(np.sqrt(second_moment / (norm.cdf(b) - 0.5)))

    @staticmethod
    def _upper_half(z, good, nchunks=16):
        """Start: in each of ``nchunks`` stretches, the pixels above the stretch's median."""
        start = np.zeros(z.shape, dtype=bool)
        for cols in np.array_split(np.arange(z.shape[1]), min(nchunks, z.shape[1] // 4)):
            part = np.where(good[:, cols], z[:, cols], np.nan)
            # a stretch that is masked entirely in some spectrum: no start pixels there
            med = nanmedian_rows(part)
            with np.errstate(invalid="ignore"):
                start[:, cols] = part >= med[:, None]
        return start

    def fit(self, flux, mask=None, wavelength=None):
        """Fit the continuum of one spectrum or of a batch.

        Parameters and result as `ContinuumFitter.fit`.  The Legendre
        polynomial's variable is ``wavelength`` (Å) when given, else the pixel
        index; the whole batch is fitted at once.

        Raises
        ------
        ValueError
            Bad input (see `ContinuumFitter.fit`).
        remap.continuum.ContinuumError
            Too few pixels left to fit the polynomial.
        """
        z, good, wave, squeeze = self._as_batch(flux, mask, wavelength,
                                                min_good=self.degree + 2)
        n, npix = z.shape
        x = np.arange(npix, dtype=float) if wave is None else wave
        t = 2.0 * (x - x[0]) / (x[-1] - x[0]) - 1.0
        design = legendre.legvander(t, self.degree)  # (npix, k)
        k = design.shape[1]
        outer = (design[:, :, None] * design[:, None, :]).reshape(npix, k * k)
        # scale each spectrum to order unity so the normal equations are well conditioned
        scale = np.array([np.median(np.abs(row[g])) for row, g in zip(z, good)])
        scale[~(scale > 0)] = 1.0
        z = z / scale[:, None]
        keep = good & self._upper_half(z, good)
        rms_factor = self._rms_above
        sigma = np.ones(n)
        model = np.zeros_like(z)
        active = np.arange(n)  # spectra whose fit still moves
        for iteration in range(self.maxiters):
            kp = keep[active]
            nkeep = kp.sum(axis=1)
            if np.any(nkeep < k + 1):
                i = int(active[np.flatnonzero(nkeep < k + 1)[0]])
                raise ContinuumError(f"spectrum {i}: only {keep[i].sum()} pixels left after "
                                     f"clipping, fewer than degree + 2 = {k + 1}; lower the "
                                     "degree or loosen the clipping")
            w = kp.astype(float)
            za = z[active]
            gram = (w @ outer).reshape(-1, k, k)
            rhs = (w * za) @ design
            coef = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
            new_model = coef @ design.T
            resid = za - new_model
            pos = kp & (resid > 0)
            npos = np.maximum(pos.sum(axis=1), 1)
            sig = np.sqrt((np.where(pos, resid, 0.0) ** 2).sum(axis=1) / npos) / rms_factor
            sig = np.maximum(sig, np.finfo(float).tiny)
            new_keep = good[active] & (resid > -self.lower * sig[:, None]) \
                & (resid < self.upper * sig[:, None])
            moved = np.abs(new_model - model[active]).max(axis=1)
            done = (new_keep == kp).all(axis=1)
            if iteration > 0:
                done |= moved <= _CONVERGED * sig
            model[active] = new_model
            sigma[active] = sig
            keep[active] = new_keep
            active = active[~done]
            if active.size == 0:
                break
        if self.correct_bias:
            model = model - self._shift * sigma[:, None]
        cont = model * scale[:, None]
        return cont[0] if squeeze else cont
