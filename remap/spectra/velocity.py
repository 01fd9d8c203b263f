"""Radial velocities: Doppler shifts and batch cross-correlation against template spectra.

The inference pipeline's ``rest_frame`` stage
(:class:`remap.inference.rest_frame.RestFrame`) measures each star's radial
velocity with :func:`estimate_rv` and moves its wavelengths to the rest frame
with :func:`to_rest_frame`; the flux is not resampled (every row keeps its own
wavelength grid until the ``resample`` stage).

How :func:`estimate_rv` works, for a batch of rows (each on its own grid):

1. each row is brought onto a uniform ln λ grid per template beam
   (:class:`TemplateBank`, one point per template pixel by default; linear
   interpolation), divided by a cheap pseudo-continuum (the running maximum
   of the lightly smoothed flux, smoothed; :func:`pseudo_continuum`) and
   turned into line depth ``1 - f/c``, high-passed (a coverage-weighted
   boxcar of ~5 Å subtracted, so that broad wings and continuum errors do not
   correlate) -- the templates get the same treatment;
2. the cross-correlation function (CCF) with the bank's first template (the
   mean training spectrum) is computed for all rows at once by FFT over the
   lags within ``±rv_range`` (`scipy.fft`; this is why remap does not call
   `specutils.analysis.template_correlate`, which correlates one spectrum
   with one template at a time over every lag and gives no error), summed
   over the beams a star covers.  The FFTs run in single precision on
   :func:`remap._util.threads.n_threads` workers (the velocities agree with
   double precision to 1e-5 km/s); the preparation of step 1 is a compiled
   kernel (``remap.spectra._ccf_kernel``);
3. the best template is the one whose correlation at that first lag is
   highest (one matrix product over the bank);
4. the CCF with that template is computed again and its peak refined with a
   Gaussian (a least-squares parabola in ln CCF over the points above half
   the peak): the shift s (ln λ) gives ``v = c tanh(s)`` (the exact
   relativistic Doppler formula, λ_obs/λ_rest = sqrt((1+β)/(1-β))), the
   curvature the error (Zucker 2003, MNRAS 342, 1291:
   σ_s² = -[N C''/C · C²/(1-C²)]⁻¹ with N the observed pixels in the overlap),
   and the width the resolution (:func:`remap.spectra.resolution.resolution_from_widths`).

A peak lower than :data:`MIN_PEAK`, less than :data:`MIN_PEAK_RATIO` times
the highest other CCF maximum, at the edge of the velocity range, or with too
few pixels, makes the result *uncertain* (`remap.Flag.RV_UNCERTAIN`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing

import numpy as np
from scipy import fft as sp_fft
from scipy.ndimage import maximum_filter1d, uniform_filter1d

from .._util.threads import n_threads
from .resampling import linear_weights

__all__ = ["C_KMS", "DEFAULT_RV_RANGE", "MIN_PEAK", "MIN_PEAK_RATIO", "MIN_CCF_PIXELS",
           "doppler_factor", "to_rest_frame", "to_observed_frame", "pseudo_continuum",
           "TemplateBank", "RVEstimate", "estimate_rv", "estimate_rv_groups", "rv_quality"]

#: Speed of light in km/s.
C_KMS = 299_792.458

#: Default half-width of the searched velocity range, km/s.
DEFAULT_RV_RANGE = 300.0

#: A normalized CCF peak below this is too weak to trust (`remap.Flag.RV_UNCERTAIN`).
#: Pure noise gives peaks of ~0.05-0.1, a library spectrum at SNR 50 against the
#: model's templates above 0.8.
MIN_PEAK = 0.3

#: The CCF peak must be at least this many times the highest other local maximum
#: (farther than 3 peak widths); below it the velocity is ambiguous.
MIN_PEAK_RATIO = 1.5

#: Fewer observed pixels than this inside the templates' ranges: no estimate.
MIN_CCF_PIXELS = 200

#: Width (Å) of the running maximum of the pseudo-continuum and of the high-pass boxcar.
_CONT_WINDOW_AA = 10.0
_HIGHPASS_AA = 5.0


# --------------------------------------------------------------------------- Doppler

def _rv_array(rv):
    rv = np.asarray(rv, dtype=float)
    if np.any(~np.isfinite(rv)) or np.any(np.abs(rv) >= C_KMS):
        raise ValueError(f"radial velocities must be finite and below c in magnitude (km/s); "
                         f"received {rv!r}")
    return rv


def doppler_factor(rv):
    """λ_observed / λ_rest for a radial velocity (km/s, positive receding).

    The exact relativistic radial Doppler factor ``sqrt((1 + β) / (1 - β))``
    with β = v/c (at 300 km/s it differs from ``1 + β`` by 5e-7, i.e.
    0.15 km/s).

    Parameters
    ----------
    rv : float or array_like
        km/s.

    Returns
    -------
    factor : float or ndarray
    """
    beta = _rv_array(rv) / C_KMS
    return np.sqrt((1.0 + beta) / (1.0 - beta))


def to_rest_frame(wave, rv):
    """Rest-frame wavelengths of observed ones: ``λ_rest = λ_obs / doppler_factor(rv)``.

    Parameters
    ----------
    wave : array_like, shape (npix,) or (n, npix)
        Observed wavelengths (any unit; a Quantity keeps its unit).
    rv : float or array_like, shape (n,)
        km/s, one per row for a 2-D ``wave`` (or a scalar).

    Returns
    -------
    wave_rest : same type and shape as ``wave``
    """
    factor = np.asarray(doppler_factor(rv))
    if np.ndim(wave) == 2 and factor.ndim == 1:
        factor = factor[:, None]
    return wave / factor


def to_observed_frame(wave, rv):
    """Observed wavelengths of rest-frame ones (the inverse of :func:`to_rest_frame`)."""
    factor = np.asarray(doppler_factor(rv))
    if np.ndim(wave) == 2 and factor.ndim == 1:
        factor = factor[:, None]
    return wave * factor


# --------------------------------------------------------------------------- preparation

def apply_linear(y, idx, w):
    """Linear interpolation weights applied along the last axis (``np.take``: on 2-D
    arrays many times faster than fancy indexing)."""
    a = np.take(y, idx, axis=-1)
    b = np.take(y, idx + 1, axis=-1)
    return a + (b - a) * w


def _blocks(y, size, fill):
    """``y`` (n, npix) padded with ``fill`` and reshaped to (n, nblocks, size)."""
    n, npix = y.shape
    nb = -(-npix // size)
    if nb * size != npix:
        y = np.concatenate([y, np.full((n, nb * size - npix), fill, dtype=y.dtype)], axis=1)
    return y.reshape(n, nb, size)


def _upsample(blocks, size, npix):
    """Block values (n, nblocks) linearly interpolated back to the pixels."""
    nb = blocks.shape[1]
    if nb == 1:
        return np.repeat(blocks, npix, axis=1)
    centres = size * (np.arange(nb) + 0.5) - 0.5
    idx, w = linear_weights(centres, np.arange(npix, dtype=float))
    return apply_linear(blocks, idx, w)


def _smooth_weighted(y, w, width, block=None):
    """Coverage-weighted smoothing of y over ``width`` pixels (block means, boxcar, linear).

    ``y`` is averaged in blocks of ``width // 8`` pixels with weights ``w``, the
    block means are smoothed with a two-pass boxcar of 8 blocks (≈ a Gaussian of
    σ ≈ width / 2.5) and interpolated back: O(n npix), whatever ``width``.
    """
    n, npix = y.shape
    size = max(int(width) // 8, 1) if block is None else int(block)
    wf = w.astype(y.dtype)
    num = _blocks(y * wf, size, 0.0).sum(axis=2)
    den = _blocks(wf, size, 0.0).sum(axis=2)
    k = max(int(round(width / size)), 1)
    num = uniform_filter1d(uniform_filter1d(num, k, axis=1, mode="constant"), k, axis=1,
                           mode="constant")
    den = uniform_filter1d(uniform_filter1d(den, k, axis=1, mode="constant"), k, axis=1,
                           mode="constant")
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(den > 1e-9, num / np.maximum(den, 1e-300), np.nan)
    # blocks with no data take their neighbours' value
    for r in np.flatnonzero(np.isnan(mean).any(axis=1) & ~np.isnan(mean).all(axis=1)):
        good = ~np.isnan(mean[r])
        mean[r, ~good] = np.interp(np.flatnonzero(~good), np.flatnonzero(good), mean[r, good])
    return _upsample(np.nan_to_num(mean, nan=0.0), size, npix)


def pseudo_continuum(flux, covered=None, *, window=201):
    """A cheap upper envelope of each row: block maxima of the smoothed flux, smoothed.

    The flux is smoothed over 3 pixels (against single noise peaks), the
    maximum taken in blocks of ``window // 4`` pixels and as a running maximum
    over 4 blocks, and that envelope smoothed over ``window`` pixels.

    Parameters
    ----------
    flux : ndarray, shape (n, npix)
    covered : ndarray of bool, shape (n, npix), optional
        Pixels that hold data; the others are ignored.
    window : int
        Width (pixels) of the running maximum (default 201).

    Returns
    -------
    continuum : ndarray, shape (n, npix)
        Positive where ``covered`` (NaN elsewhere); the flux divided by it is
        ~1 in the continuum (a few per cent high at low SNR, which the
        high-pass of the CCF removes).
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=float))
    n, npix = flux.shape
    covered = np.isfinite(flux) if covered is None else (covered & np.isfinite(flux))
    f = np.where(covered, flux, -np.inf)
    sm = f.copy()
    sm[:, 1:-1] = (f[:, :-2] + f[:, 1:-1] + f[:, 2:]) / 3.0   # -inf next to gaps
    sm = np.where(np.isfinite(sm), sm, f)
    size = max(int(window) // 4, 1)
    bmax = _blocks(sm, size, -np.inf).max(axis=2)
    env = maximum_filter1d(bmax, 4, axis=1, mode="nearest")
    has = np.isfinite(env)
    env_pix = _smooth_weighted(_upsample(np.where(has, env, 0.0), size, npix),
                               _upsample(has.astype(float), size, npix) > 0.5, window)
    return np.where(covered & (env_pix > 0), env_pix, np.nan)


# --------------------------------------------------------------------------- templates

def _peak_fit(ccf, k_center=None, search=None):
    """Gaussian fit of the highest CCF peak of each row.

    Parameters
    ----------
    ccf : ndarray, shape (n, nlag)
        Lags ``-K..K`` (index ``K`` is lag 0).
    k_center, search : ndarray (n,), optional
        Restrict the peak search to ``|lag - k_center| <= search``.

    Returns
    -------
    dict of arrays: ``lag`` (fractional, lag units), ``height``, ``sigma`` (lag
    units), ``ratio`` (peak / highest other maximum), ``edge`` (bool).
    """
    ccf = np.asarray(ccf, dtype=float)
    n, nlag = ccf.shape
    big_k = (nlag - 1) // 2
    lags = np.arange(nlag) - big_k
    work = ccf.copy()
    if k_center is not None:
        outside = np.abs(lags[None, :] - np.asarray(k_center)[:, None]) > np.asarray(
            search)[:, None]
        work[outside] = -np.inf
    kmax = np.argmax(work, axis=1)
    rows = np.arange(n)
    peak = ccf[rows, kmax]
    # half-width: consecutive points above half the peak on the shorter side, 2 to 25
    counts = []
    for side in (-1, 1):
        count = np.zeros(n, dtype=int)
        alive = np.ones(n, bool)
        for j in range(1, 26):
            k = kmax + side * j
            inside = (k >= 0) & (k < nlag)
            val = np.where(inside, ccf[rows, np.clip(k, 0, nlag - 1)], -np.inf)
            alive &= val > 0.5 * peak
            count += alive
        counts.append(count)
    half = np.clip(np.minimum(*counts), 2, 25)
    hmax = int(half.max())
    x = np.arange(-hmax, hmax + 1)
    idx = kmax[:, None] + x[None, :]
    inside = (idx >= 0) & (idx < nlag)
    y = np.where(inside, ccf[rows[:, None], np.clip(idx, 0, nlag - 1)], np.nan)
    w = inside & (np.abs(x)[None, :] <= half[:, None]) & (y > 0.05 * peak[:, None]) \
        & (y > 0)
    logy = np.log(np.where(w, y, 1.0))
    # weighted least squares of log y = c0 + c1 x + c2 x^2 (weights y^2: noise in y)
    wt = np.where(w, np.maximum(y, 0.0) ** 2, 0.0)
    xs = x.astype(float)
    s = [np.einsum("ij,j->i", wt, xs ** p) for p in range(5)]
    t = [np.einsum("ij,j->i", wt * logy, xs ** p) for p in range(3)]
    mat = np.stack([np.stack([s[0], s[1], s[2]], -1), np.stack([s[1], s[2], s[3]], -1),
                    np.stack([s[2], s[3], s[4]], -1)], -2)
    rhs = np.stack(t, -1)
    ok = w.sum(axis=1) >= 3
    coef = np.full((n, 3), np.nan)
    if ok.any():
        det = np.linalg.det(mat[ok])
        good = np.abs(det) > 1e-300
        sol = np.full((int(ok.sum()), 3), np.nan)
        if good.any():
            sol[good] = np.linalg.solve(mat[ok][good], rhs[ok][good][..., None])[..., 0]
        coef[ok] = sol
    c1, c2 = coef[:, 1], coef[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(c2 < 0, -c1 / (2 * c2), np.nan)
        sigma = np.where(c2 < 0, np.sqrt(-1.0 / (2 * c2)), np.nan)
        height = np.where(c2 < 0, np.exp(coef[:, 0] - c1 ** 2 / (4 * c2)), np.nan)
    bad = ~np.isfinite(delta) | (np.abs(delta) > 1.5)
    # fall back on a 3-point parabola in the CCF itself
    ym = ccf[rows, np.clip(kmax - 1, 0, nlag - 1)]
    yp = ccf[rows, np.clip(kmax + 1, 0, nlag - 1)]
    den = ym - 2 * peak + yp
    with np.errstate(divide="ignore", invalid="ignore"):
        d3 = np.where(den < 0, 0.5 * (ym - yp) / den, 0.0)
    delta = np.where(bad, np.clip(d3, -1, 1), delta)
    height = np.where(bad | ~np.isfinite(height), peak, height)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(bad | ~np.isfinite(sigma),
                         np.sqrt(np.where(den < 0, -peak / den, np.nan)), sigma)
    edge = np.abs(lags[kmax]) >= big_k
    # the highest other local maximum beyond 3 peak widths
    excl = np.maximum(3.0 * np.nan_to_num(sigma, nan=3.0), 3.0)
    local = np.zeros_like(ccf, dtype=bool)
    local[:, 1:-1] = (ccf[:, 1:-1] > ccf[:, :-2]) & (ccf[:, 1:-1] >= ccf[:, 2:])
    far = np.abs(lags[None, :] - lags[kmax][:, None]) > excl[:, None]
    if k_center is not None:
        far &= ~outside
    second = np.max(np.where(local & far, ccf, -np.inf), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(second > 0, height / second, np.inf)
    return {"lag": lags[kmax] + delta, "height": height, "sigma": sigma, "ratio": ratio,
            "edge": edge}


class TemplateBank:
    """Template spectra of one beam, prepared for cross-correlation.

    Parameters
    ----------
    wave : array_like, shape (npix,)
        Ascending template wavelengths (Å), e.g. a model beam's grid.
    flux : array_like, shape (n_templates, npix)
        Continuum-normalized template flux; the first row is the one
        :func:`estimate_rv` correlates with first (the mean training spectrum).
    resolution : float, optional
        Resolving power of the templates (needed for resolution estimates).
    rv_range : float
        Half-width (km/s) of the velocity range searched.
    oversample : int
        Points of the ln λ correlation grid per template pixel (default 1:
        ~6 km/s at 0.1 Å and 5000 Å; the Gaussian fit over the ~5 points of
        the peak interpolates to < 0.15 km/s at SNR 50, the same as with 2).
    labels : array_like, shape (n_templates, k), optional
        The templates' labels (kept for reporting).
    step : float, optional
        The ln λ step of the correlation grid (instead of the median template
        step / ``oversample``): banks whose CCFs are summed (several beams)
        must share one.
    """

    def __init__(self, wave, flux, *, resolution=None, rv_range=DEFAULT_RV_RANGE,
                 oversample=1, labels=None, step=None):
        wave = np.asarray(wave, dtype=float)
        flux = np.atleast_2d(np.asarray(flux, dtype=float))
        if wave.ndim != 1 or wave.size < 16 or np.any(np.diff(wave) <= 0):
            raise ValueError("template wavelengths must be a 1-D ascending array of >= 16 "
                             "values")
        if flux.shape[1] != wave.size or not np.all(np.isfinite(flux)):
            raise ValueError(f"template flux must have shape (n, {wave.size}) and be finite; "
                             f"received {flux.shape}")
        if not isinstance(rv_range, numbers.Real) or not 0 < rv_range < 0.1 * C_KMS:
            raise ValueError(f"rv_range must be a velocity in (0, {0.1 * C_KMS:g}) km/s; "
                             f"received rv_range={rv_range!r}")
        if not isinstance(oversample, numbers.Integral) or not 1 <= oversample <= 16:
            raise ValueError(f"oversample must be an integer in [1, 16]; received "
                             f"{oversample!r}")
        self.wave = wave
        self.flux = flux
        self.labels = None if labels is None else np.asarray(labels, dtype=float)
        self.resolution = None if resolution is None else float(resolution)
        self.rv_range = float(rv_range)
        lnw = np.log(wave)
        self.template_step = float(np.median(np.diff(lnw)))
        self.step = self.template_step / int(oversample) if step is None else float(step)
        if not 0 < self.step <= 4 * self.template_step:
            raise ValueError(f"step must be positive and at most 4 template pixels; received "
                             f"step={step!r}")
        self.max_lag = int(math.ceil(math.atanh(self.rv_range / C_KMS) / self.step)) + 4
        pad = self.max_lag + 2
        n = int(math.ceil((lnw[-1] - lnw[0]) / self.step)) + 1 + 2 * pad
        self.nfft = sp_fft.next_fast_len(n, real=True)
        self.ln0 = lnw[0] - pad * self.step
        self.grid = self.ln0 + self.step * np.arange(self.nfft)
        self.highpass = max(int(round(_HIGHPASS_AA / wave.mean() / self.step)), 3)
        self.cont_window = max(int(round(_CONT_WINDOW_AA / wave.mean() / self.step)), 5)
        inside = (self.grid >= lnw[0]) & (self.grid <= lnw[-1])
        self.inside = inside
        idx, w = linear_weights(lnw, self.grid[inside])
        on = np.zeros((flux.shape[0], self.nfft))
        on[:, inside] = apply_linear(flux, idx, w)
        cov = np.broadcast_to(inside, on.shape)
        depth = np.where(cov, 1.0 - on, 0.0)
        depth = np.where(cov, depth - _smooth_weighted(depth, cov, self.highpass), 0.0)
        self.depth = depth
        self.depth_sq = depth ** 2
        # where any template has depth, and each template's summed squared depth: a row
        # covering all of it has that sum as its CCF normalization (`_covered_sums`)
        self.support = np.flatnonzero(np.any(self.depth_sq != 0, axis=0))
        self.depth_sq_total = self.depth_sq.sum(axis=1)
        spectra_f = sp_fft.rfft(depth, axis=-1)
        # single precision, as the observed rows are correlated (`estimate_rv_groups`)
        self.spectra_f = spectra_f.astype(np.complex64)
        norms = np.sqrt(np.sum(depth ** 2, axis=1))
        self.norms = norms
        # autocorrelation widths (for resolution estimates)
        acf = self._lags(spectra_f * np.conj(spectra_f)) / (norms[:, None] ** 2)
        fit = _peak_fit(acf)
        self.acf_sigma = fit["sigma"] * self.step

    @property
    def n_templates(self):
        """Number of templates."""
        return self.flux.shape[0]

    def _lags(self, product_f, workers=None):
        """Lags -max_lag..max_lag of an inverse FFT (rows)."""
        full = sp_fft.irfft(product_f, self.nfft, axis=-1, workers=workers)
        k = self.max_lag
        return np.concatenate([full[..., -k:], full[..., :k + 1]], axis=-1)

    def prepare(self, wave, flux, mask=None):
        """Rows on this bank's ln λ grid as high-passed line depth.

        Parameters
        ----------
        wave : ndarray, shape (npix,) or (n, npix)
            Wavelengths in Å, in the templates' medium and frame.
        flux : ndarray, shape (n, npix)
        mask : ndarray of bool, shape (n, npix), optional

        Returns
        -------
        depth : ndarray, shape (n, nfft)
        covered : ndarray of bool, shape (n, nfft)
        npix : ndarray of int, shape (n,)
            Observed (unmasked) pixels inside the templates' range.
        pixel_var : ndarray, shape (n,)
            Median squared observed pixel size in ln λ (for resolution estimates).
        """
        from ._ccf_kernel import prepare_rows   # numba: imported on first use

        flux = np.atleast_2d(np.asarray(flux, dtype=float))
        n, npix = flux.shape
        wave = np.asarray(wave, dtype=float)
        # only the pixels inside the templates' range take part (the others would be
        # correlated with template padding): a spectrum gives the same rows whether it
        # comes whole or cut into beams or pieces
        in_t = (wave >= self.wave[0]) & (wave <= self.wave[-1])
        bad = ~np.isfinite(flux) | ~in_t
        if mask is not None:
            bad |= np.asarray(mask, bool)
        lnw = np.log(wave)
        depth, covered = prepare_rows(lnw, flux, bad, self.grid, self.cont_window,
                                      self.highpass)
        npx = np.count_nonzero(~bad, axis=1).astype(np.int64)

        def median_step(w, ln):
            """Median pixel size (ln λ) over the row's pixels inside the templates' range
            (one run of pixels: the grids ascend)."""
            a = np.searchsorted(w, self.wave[0])
            b = np.searchsorted(w, self.wave[-1], side="right")
            return np.median(np.diff(ln[a:b])) if b - a > 1 else 0.0    # (no pair: 0)

        step = (median_step(wave, lnw) if wave.ndim == 1 else
                np.array([median_step(w, ln) for w, ln in zip(wave, lnw)]))
        pix_var = np.broadcast_to(np.asarray(step, dtype=float) ** 2, (n,)).copy()
        return depth, covered, npx, pix_var


@dataclasses.dataclass
class RVEstimate:
    """Result of :func:`estimate_rv` (one value per row).

    Attributes
    ----------
    rv, rv_err : ndarray
        Radial velocity and its 1-σ error (km/s); NaN where not measured.
    peak : ndarray
        Normalized CCF peak height (1 for a perfect match).
    peak_ratio : ndarray
        Peak height over the highest other CCF maximum.
    template : ndarray of int
        Index of the template used (-1: none).
    ccf_sigma : ndarray
        Gaussian σ of the CCF peak (ln λ).
    acf_sigma : ndarray
        σ of the chosen template's autocorrelation peak (ln λ).
    pixel_var : ndarray
        Squared median observed pixel size (ln λ²).
    npix : ndarray of int
        Observed pixels used.
    uncertain : ndarray of bool
        Weak or ambiguous peak (see :func:`rv_quality`).
    reason : list of str
        Why a row is uncertain ('' otherwise).
    """

    rv: np.ndarray
    rv_err: np.ndarray
    peak: np.ndarray
    peak_ratio: np.ndarray
    template: np.ndarray
    ccf_sigma: np.ndarray
    acf_sigma: np.ndarray
    pixel_var: np.ndarray
    npix: np.ndarray
    uncertain: np.ndarray
    reason: list


def rv_quality(peak, ratio, edge, npix, *, min_peak=MIN_PEAK, min_ratio=MIN_PEAK_RATIO,
               min_pixels=MIN_CCF_PIXELS):
    """The ``RV_UNCERTAIN`` rule: which rows have a weak or ambiguous CCF peak, and why.

    Parameters
    ----------
    peak, ratio : ndarray
        CCF peak height and peak / highest other maximum.
    edge : ndarray of bool
        Peak at the edge of the searched range.
    npix : ndarray of int
        Observed pixels in the correlation.
    min_peak, min_ratio, min_pixels
        Thresholds (defaults :data:`MIN_PEAK`, :data:`MIN_PEAK_RATIO`,
        :data:`MIN_CCF_PIXELS`).

    Returns
    -------
    uncertain : ndarray of bool
    reasons : list of str
    """
    reasons = []
    flags = np.zeros(len(peak), bool)
    for i in range(len(peak)):
        why = []
        if npix[i] < min_pixels:
            why.append(f"only {int(npix[i])} pixels overlap the templates")
        elif not np.isfinite(peak[i]):
            why.append("no CCF peak")
        else:
            if peak[i] < min_peak:
                why.append(f"CCF peak {peak[i]:.2f} < {min_peak:g}")
            if ratio[i] < min_ratio:
                why.append(f"CCF peak only {ratio[i]:.2f}x the next highest (< {min_ratio:g})")
            if edge[i]:
                why.append("CCF peak at the edge of the velocity range")
        flags[i] = bool(why)
        reasons.append("; ".join(why))
    return flags, reasons


def estimate_rv(wave, flux, banks, *, mask=None, rv=None, search=None, chunk=256):
    """Radial velocities of rows by cross-correlation with template banks.

    Parameters
    ----------
    wave : ndarray, shape (npix,) or (n, npix)
        Wavelengths (Å) in the templates' medium; one grid per row or shared.
    flux : ndarray, shape (n, npix)
        Flux in any unit (not necessarily normalized).
    banks : sequence of `TemplateBank`
        One per beam (e.g. the model's beams), all with the same number of
        templates in the same order (template k has the same labels in every
        bank) and one ln λ step; the CCFs of the beams a row covers are summed.
    mask : ndarray of bool, shape (n, npix), optional
    rv : float or ndarray, optional
        Known velocities (km/s): no search over the full range; the peak is
        looked for within ``search`` km/s of them (to measure its width).
    search : float, optional
        Half-width (km/s) of that window (default 30 km/s).
    chunk : int
        Rows processed at a time (memory).

    Returns
    -------
    estimate : `RVEstimate`
        One entry per row.
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=float))
    n = flux.shape[0]
    wave = np.asarray(wave, dtype=float)
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    known = None if rv is None else np.broadcast_to(_rv_array(rv), (n,)).astype(float)
    parts = []
    for start in range(0, n, int(chunk)):
        rows = slice(start, min(n, start + int(chunk)))
        w_rows = wave if wave.ndim == 1 else wave[rows]
        m_rows = None if mask is None else mask[rows]
        k = rows.stop - rows.start
        parts.append(estimate_rv_groups([(w_rows, flux[rows], m_rows)], banks, np.arange(k), k,
                                        rv=None if known is None else known[rows],
                                        search=search))
    if len(parts) == 1:
        return parts[0]
    return RVEstimate(**{f.name: (sum((getattr(p, f.name) for p in parts), [])
                                  if f.name == "reason" else
                                  np.concatenate([getattr(p, f.name) for p in parts]))
                         for f in dataclasses.fields(RVEstimate)})


def _check_banks(banks):
    banks = list(banks)
    if not banks:
        raise ValueError("estimate_rv needs at least one TemplateBank")
    nt = banks[0].n_templates
    if any(b.n_templates != nt for b in banks):
        raise ValueError("every template bank must hold the same templates (same number)")
    if len({round(b.step, 15) for b in banks}) > 1:
        raise ValueError("the template banks must share one ln λ step (TemplateBank(step=))")
    return banks


def _overlaps(bank, wave, n):
    """Whether each of the ``n`` rows of ``wave`` (1-D: one grid for all) reaches into the
    bank's template range (bool (n,))."""
    return np.broadcast_to((wave[..., -1] > bank.wave[0]) & (wave[..., 0] < bank.wave[-1]),
                           (n,))


class _BankRows(typing.NamedTuple):
    """The rows of a batch that reach one bank's templates, prepared (`TemplateBank.prepare`)."""

    rows: np.ndarray       # their indices among all rows
    depth: np.ndarray      # (len(rows), nfft)
    covered: np.ndarray    # (len(rows), nfft)
    npix: np.ndarray       # observed pixels in the bank's range, for ALL rows (0: none)
    pixvar: np.ndarray     # squared median pixel size, for ALL rows (0: none)


def _covered_sums(covered, bank):
    """``covered @ bank.depth_sq.T``: each row's covered part of each template's squared
    depth (rows at a lag: roll them first, `_roll_rows`).

    Rows that cover every point where a template has depth (most rows) get the
    templates' totals directly; only the others go through the product (the
    same sums, up to rounding: about 1e-16).
    """
    full = covered[:, bank.support].all(axis=1)
    out = np.empty((covered.shape[0], bank.n_templates))
    out[full] = bank.depth_sq_total
    part = np.flatnonzero(~full)
    if part.size:
        out[part] = covered[part].astype(np.float64) @ bank.depth_sq.T
    return out


def _roll_rows(a, shift):
    """Each row of ``a`` rolled back by its own shift: ``out[r, i] = a[r, (i + shift[r]) % n]``
    (``numpy.roll(a[r], -shift[r])``), the rows of one shift copied together."""
    out = np.empty_like(a)
    n = a.shape[1]
    for k in np.unique(shift):
        rows = np.flatnonzero(shift == k)
        k = int(k) % n
        out[rows, :n - k] = a[rows, k:]
        out[rows, n - k:] = a[rows, :k]
    return out


def _joined(arrays):
    """The arrays concatenated along the rows; a single one itself (no copy)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _group_sum(values, inv, n_groups):
    out = np.zeros((n_groups,) + values.shape[1:], dtype=np.result_type(values, np.float64))
    np.add.at(out, inv, values)
    return out


def estimate_rv_groups(sets, banks, groups, n_groups, *, rv=None, search=None):
    """Radial velocities of groups of rows (the spectra of one star) from their summed CCFs.

    The rows of a group are correlated together: their CCF numerators and
    norms are summed before the peak is fitted, so that a star given as one
    spectrum or as several pieces (beams, orders) is measured alike.

    Parameters
    ----------
    sets : list of (wave, flux, mask)
        Arrays as for :func:`estimate_rv`; the sets may have different pixel
        counts.  Their rows are taken in order.
    banks : sequence of `TemplateBank`
    groups : ndarray of int, shape (total rows,)
        The group (0 .. n_groups - 1) of each row.
    n_groups : int
    rv : float or ndarray, shape (n_groups,), optional
        Known velocities per group (see :func:`estimate_rv`).
    search : float, optional

    Returns
    -------
    estimate : `RVEstimate`
        One entry per group (groups without rows: NaN and ``npix`` 0).
    """
    banks = _check_banks(banks)
    inv = np.asarray(groups, dtype=np.int64)
    step = banks[0].step
    max_lag = min(b.max_lag for b in banks)
    known = None if rv is None else np.broadcast_to(_rv_array(rv), (n_groups,)).astype(float)
    # per bank: only the rows that reach its templates (the others add nothing)
    n_rows = sum(np.atleast_2d(np.asarray(f)).shape[0] for _, f, _ in sets)
    if inv.shape != (n_rows,):
        raise ValueError(f"groups must give one group per row ({n_rows}); received shape "
                         f"{inv.shape}")
    per_bank = []
    for b in banks:
        rows, depth, cover = [], [], []
        npix_b = np.zeros(n_rows, np.int64)
        pixvar_b = np.zeros(n_rows)
        first = 0
        for w, f, m in sets:
            f = np.atleast_2d(np.asarray(f, dtype=float))
            w = np.asarray(w, dtype=float)
            k = f.shape[0]
            # the rows that reach the bank's templates, each on its own (whether a row is
            # correlated with a bank must not depend on the other rows of its set)
            sel = _overlaps(b, w, k)
            if sel.any():
                part = slice(None) if sel.all() else sel    # (all: views, no copies)
                d, c, npx, pv = b.prepare(w if w.ndim == 1 else w[part], f[part],
                                          None if m is None else np.asarray(m)[part])
                idx = first + np.flatnonzero(sel)
                rows.append(idx)
                depth.append(d)
                cover.append(c)
                npix_b[idx] = npx
                pixvar_b[idx] = pv
            first += k
        if rows:
            per_bank.append(_BankRows(_joined(rows), _joined(depth), _joined(cover), npix_b,
                                      pixvar_b))
        else:
            per_bank.append(_BankRows(np.zeros(0, np.int64), np.zeros((0, b.nfft)),
                                      np.zeros((0, b.nfft), bool), npix_b, pixvar_b))
    g_npix = _group_sum(sum(p.npix for p in per_bank).astype(float), inv, n_groups)
    g_pixvar = np.zeros(n_groups)
    np.maximum.at(g_pixvar, inv, np.max(np.stack([p.pixvar for p in per_bank]), axis=0))
    a2 = np.zeros(n_rows)
    for p in per_bank:
        a2[p.rows] += np.einsum("ij,ij->i", p.depth, p.depth)
    g_a2 = _group_sum(a2, inv, n_groups)
    workers = n_threads()
    spectra_f = [sp_fft.rfft(p.depth.astype(np.float32), axis=-1, workers=workers)
                 for p in per_bank]
    # each row's covered part of each template's squared depth (the CCF normalization)
    covered_sq = [_covered_sums(p.covered, b) for b, p in zip(banks, per_bank)]

    def ccf_with(best):
        """Per group: the summed CCF with template ``best[group]``."""
        num = np.zeros((n_rows, 2 * max_lag + 1))
        t2 = np.zeros(n_rows)
        for b, p, af, csq in zip(banks, per_bank, spectra_f, covered_sq):
            if not p.rows.size:
                continue
            tb = best[inv[p.rows]]
            # one template for every row (the first pass): broadcast it, not a copy per row
            tf = (b.spectra_f[tb[:1]] if tb.size and np.all(tb == tb[0])
                  else b.spectra_f[tb])
            lags = b._lags(af * np.conj(tf), workers=workers)
            k = b.max_lag
            num[p.rows] += lags[:, k - max_lag:k + max_lag + 1]
            t2[p.rows] += csq[np.arange(p.rows.size), tb]
        with np.errstate(divide="ignore", invalid="ignore"):
            return _group_sum(num, inv, n_groups) / np.sqrt(
                g_a2 * _group_sum(t2, inv, n_groups))[:, None]

    if known is None:
        lag0 = _peak_fit(ccf_with(np.zeros(n_groups, np.int64)))["lag"]
        window = None
    else:
        lag0 = np.arctanh(known / C_KMS) / step
        win = 30.0 if search is None else float(search)
        window = np.full(n_groups, max(math.atanh(win / C_KMS) / step, 3.0))
    # the best template at that lag: correlation of the shifted rows with each template
    shift = np.where(np.isfinite(lag0), np.rint(lag0), 0).astype(np.int64)[inv]
    score_num = np.zeros((n_rows, banks[0].n_templates))
    score_den = np.zeros((n_rows, banks[0].n_templates))
    for b, p in zip(banks, per_bank):
        if not p.rows.size:
            continue
        shift_b = shift[p.rows]
        if np.all(shift_b == 0):
            depth, covered = p.depth, p.covered
        else:
            # each row rolled back by its lag (circular, as the FFT correlation): one product
            # for every row whatever their velocities (rows at one lag each would need one
            # roll of the templates and one product per distinct lag)
            depth, covered = _roll_rows(p.depth, shift_b), _roll_rows(p.covered, shift_b)
        score_num[p.rows] += depth @ b.depth.T
        score_den[p.rows] += _covered_sums(covered, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = _group_sum(score_num, inv, n_groups) / np.sqrt(
            _group_sum(score_den, inv, n_groups))
    score = np.where(np.isfinite(score), score, -np.inf)
    best = np.argmax(score, axis=1)
    ccf = ccf_with(best)
    ccf = np.where(np.isfinite(ccf), ccf, 0.0)
    fit = _peak_fit(ccf) if window is None else _peak_fit(ccf, k_center=lag0, search=window)
    s = fit["lag"] * step
    rv_fit = C_KMS * np.tanh(s)
    c_pk = np.clip(fit["height"], 1e-6, 1 - 1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Zucker (2003): sigma_s^2 = sigma_ccf^2 (1 - C^2) / (N C^2) for a Gaussian peak
        err_lag = fit["sigma"] * np.sqrt((1 - c_pk ** 2) / (np.maximum(g_npix, 1) * c_pk ** 2))
    rv_err = C_KMS * err_lag * step / np.cosh(s) ** 2
    acf = np.stack([b.acf_sigma for b in banks])                          # (n_banks, nt)
    weights = np.stack([_group_sum(p.npix.astype(float), inv, n_groups) for p in per_bank])
    with np.errstate(invalid="ignore", divide="ignore"):
        acf_g = np.sum(weights * acf[:, best], axis=0) / weights.sum(axis=0)
    valid = g_npix >= 1
    npix = g_npix.astype(np.int64)
    edge = fit["edge"] if window is None else np.zeros(n_groups, bool)
    peak = np.where(valid, fit["height"], np.nan)
    uncertain, reasons = rv_quality(peak, fit["ratio"], edge, npix)
    return RVEstimate(rv=np.where(valid, rv_fit, np.nan), rv_err=np.where(valid, rv_err, np.nan),
                      peak=peak, peak_ratio=fit["ratio"],
                      template=np.where(valid, best, -1).astype(np.int64),
                      ccf_sigma=fit["sigma"] * step, acf_sigma=acf_g, pixel_var=g_pixvar,
                      npix=npix, uncertain=uncertain, reason=reasons)
