"""Resolving power: Gaussian down-convolution in ln λ and its estimation from line widths.

One kernel serves the augmentation of synthetic spectra
(:func:`remap.augment.augment`, :func:`downconvolve`) and the inference
pipeline (:func:`convolve_rows`, the ``resolution`` stage): a Gaussian
line-spread function of resolving power R has a FWHM of λ/R, i.e. a constant
width 1/R in ln λ, so spectra are convolved on a uniform ln λ grid.

:func:`resolution_from_widths` turns the width of a cross-correlation peak
against a template of known resolution into the resolution of the observed
spectrum (see :func:`remap.spectra.velocity.cross_correlate` for the widths).
"""

from __future__ import annotations

import math
import numbers

import astropy.units as u
import numpy as np
from scipy import fft as sp_fft

from ..exceptions import SpectrumError
from ._build import build_like, continuum_of, std_of
from .resampling import apply_linear, linear_weights
from .validation import prepare

__all__ = ["MASK_WEIGHT_THRESHOLD", "FWHM_PER_SIGMA", "gaussian_sigma_ln", "LnConvolver",
           "downconvolve", "convolve_rows", "resolution_from_widths"]

#: An output pixel of a down-convolution is masked when more than this
#: fraction of its kernel weight falls on masked input pixels.
MASK_WEIGHT_THRESHOLD = 0.1

#: FWHM / σ of a Gaussian, 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _check_resolution(value, name):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a positive finite number; received: {name}={value!r}")
    return float(value)


def gaussian_sigma_ln(resolution, from_resolution=math.inf):
    """Standard deviation, in ln λ, of the Gaussian that takes R_in to R_out.

    A Gaussian line-spread function of resolving power R has FWHM λ/R, i.e. a
    width 1/R in ln λ; Gaussians add in quadrature, so the kernel has
    ``σ = sqrt(1/R_out² − 1/R_in²) / (2 sqrt(2 ln 2))``.

    Parameters
    ----------
    resolution : float
        Output resolving power R_out.
    from_resolution : float
        Input resolving power R_in (> R_out); `math.inf` for a perfect input.

    Returns
    -------
    sigma : float

    Raises
    ------
    ValueError
        A resolving power is not positive, or R_out >= R_in.
    """
    r_out = _check_resolution(resolution, "resolution")
    r_in = from_resolution if from_resolution == math.inf else _check_resolution(
        from_resolution, "from_resolution")
    if r_out >= r_in:
        raise ValueError(f"cannot down-convolve to R={r_out:g}: the spectrum already has "
                         f"R={r_in:g}; the output resolution must be lower than the input's")
    return math.sqrt(1.0 / r_out ** 2 - 1.0 / r_in ** 2) / FWHM_PER_SIGMA


class LnConvolver:
    """Gaussian convolution in ln λ for a fixed wavelength axis (array level).

    The axis is mapped onto a uniform ln λ grid as fine as its finest pixel
    (skipped when the axis already is uniform in ln λ, as the ``linelist``
    library's is), convolved in Fourier space, and mapped back.  The ends are
    padded with the edge values.

    Parameters
    ----------
    wave : ndarray, shape (npix,)
        Ascending wavelengths (any unit).
    sigma_ln : float
        Default kernel σ in ln λ.
    max_sigma_ln : float, optional
        The widest kernel that will be applied (sets the padding).
    """

    def __init__(self, wave, sigma_ln, max_sigma_ln=None):
        lnw = np.log(np.asarray(wave, dtype=float))
        self.lnw = lnw
        span = lnw[-1] - lnw[0]
        d = np.diff(lnw)
        step = max(float(np.min(d)), span / (4 * lnw.size))
        self.uniform = bool(np.ptp(d) <= 1e-6 * np.mean(d))
        if self.uniform:
            step = float(np.mean(d))
            n = lnw.size
            self.to_grid = self.back = None
        else:
            n = int(math.floor(span / step)) + 1
            grid = lnw[0] + step * np.arange(n)
            grid[-1] = min(grid[-1], lnw[-1])
            self.to_grid = linear_weights(lnw, grid)
            self.back = linear_weights(grid, lnw)
        self.n = n
        self.step = step
        self.sigma_px = sigma_ln / step
        widest = self.sigma_px if max_sigma_ln is None else max_sigma_ln / step
        self.npad = int(math.ceil(6.0 * widest)) + 1
        self.nfft = sp_fft.next_fast_len(n + 2 * self.npad, real=True)
        self.freq = sp_fft.rfftfreq(self.nfft)

    def _to(self, y):
        return y if self.to_grid is None else apply_linear(y, *self.to_grid)

    def _from(self, y):
        return y if self.back is None else apply_linear(y, *self.back)

    def transform(self, y):
        """Padded real FFT of ``y`` (last axis) on the uniform ln λ grid."""
        y = self._to(np.asarray(y, dtype=float))
        padded = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(self.npad, self.npad)], mode="edge")
        return sp_fft.rfft(padded, self.nfft, axis=-1)

    def inverse(self, spectrum_f, sigma_px):
        """Convolve a transform with a Gaussian of ``sigma_px`` grid pixels; back to the axis.

        ``sigma_px`` is a scalar or one value per row (shape ``(n, 1)`` or ``(n,)``
        for a 2-D transform).
        """
        sigma_px = np.asarray(sigma_px, dtype=float)
        if sigma_px.ndim == 1:
            sigma_px = sigma_px[:, None]
        transfer = np.exp(-2.0 * (math.pi * sigma_px * self.freq) ** 2)
        out = sp_fft.irfft(spectrum_f * transfer, self.nfft, axis=-1)
        return self._from(out[..., self.npad:self.npad + self.n])

    def smooth(self, y, sigma_px=None):
        """Convolve ``y`` (last axis) with the default or a given kernel."""
        return self.inverse(self.transform(y), self.sigma_px if sigma_px is None else sigma_px)


def _propagate_std(conv, std, sigma_ln):
    """σ after the convolution: variances convolved with the squared kernel."""
    # var_out = sum_i k_i^2 var_i ~ (1 / (2 sqrt(pi) sigma)) (g_{sigma/sqrt2} * (d_i var))
    sigma_ln = np.asarray(sigma_ln, dtype=float)
    sig_rows = sigma_ln[:, None] if sigma_ln.ndim == 1 else sigma_ln
    d_in = np.gradient(conv.lnw)
    var = conv.smooth(std ** 2 * d_in, np.asarray(sigma_ln / conv.step) / math.sqrt(2.0))
    var = var / (2.0 * math.sqrt(math.pi) * sig_rows)
    return np.sqrt(np.minimum(np.maximum(var, 0.0), std ** 2))


def downconvolve(spectrum, resolution, *, from_resolution=None):
    """Lower the resolving power of a spectrum with a Gaussian kernel in ln λ.

    A constant resolving power R means a constant line width in ln λ, so the
    flux is interpolated (linearly) onto a uniform ln λ grid as fine as the
    finest input pixel, convolved in Fourier space with a Gaussian of
    σ = sqrt(1/R_out² − 1/R_in²)/(2 sqrt(2 ln 2)) (:func:`gaussian_sigma_ln`),
    and interpolated back onto the input wavelengths.  The ends are padded with
    the edge values, so the outermost ~3 kernel widths are less exact; crop
    them away (e.g. :func:`remap.augment.augment` works on a margin around the
    target grid).

    Parameters
    ----------
    spectrum : `specutils.Spectrum`
        One spectrum or a batch (2-D flux).
    resolution : float
        Output resolving power R_out (e.g. 11,000).
    from_resolution : float, optional
        Input resolving power R_in.  Defaults to ``spectrum.meta["resolution"]``.

    Returns
    -------
    spectrum : `specutils.Spectrum`
        On the input's wavelengths, with ``meta["resolution"] = R_out``.  An
        uncertainty is propagated (variances convolved with the squared
        kernel); an output pixel is masked when more than
        :data:`MASK_WEIGHT_THRESHOLD` of its kernel weight lies on masked input
        pixels; ``meta["continuum"]`` is convolved too.

    Raises
    ------
    SpectrumError
        The input resolution is unknown (no ``from_resolution`` and no
        ``meta["resolution"]``), or the spectrum is invalid.
    ValueError
        R_out is not positive or not below R_in.
    """
    spec = prepare(spectrum)
    if from_resolution is None:
        from_resolution = (spec.meta or {}).get("resolution")
        if from_resolution is None:
            raise SpectrumError("the input resolving power is unknown: the spectrum has no "
                                "meta['resolution']; pass from_resolution=")
    sigma_ln = gaussian_sigma_ln(resolution, from_resolution)

    wave = spec.spectral_axis.to_value(u.AA)
    conv = LnConvolver(wave, sigma_ln)
    flux = conv.smooth(np.asarray(spec.flux.value, dtype=float))
    cont = continuum_of(spec)
    cont = None if cont is None else conv.smooth(cont)
    std = std_of(spec)
    if std is not None:
        std = _propagate_std(conv, std, sigma_ln)
    mask = np.asarray(spec.mask, dtype=bool)
    if mask.any():
        mask = conv.smooth(mask.astype(float)) > MASK_WEIGHT_THRESHOLD
    return build_like(spec, flux, wave, std=std, mask=mask, continuum=cont,
                      meta_updates={"resolution": float(resolution)})


def _fill_masked(flux, mask):
    """Masked or non-finite pixels of each row replaced by linear interpolation."""
    bad = mask | ~np.isfinite(flux)
    if not bad.any():
        return flux
    out = flux.copy()
    x = np.arange(flux.shape[1])
    for r in np.flatnonzero(bad.any(axis=1)):
        good = ~bad[r]
        if good.sum() < 2:
            out[r] = np.where(good, flux[r], np.nanmedian(np.where(good, flux[r], np.nan))
                              if good.any() else 0.0)
            continue
        out[r, bad[r]] = np.interp(x[bad[r]], x[good], flux[r, good])
    return out


def convolve_rows(wave, flux, resolution, from_resolution, *, mask=None, std=None):
    """Down-convolve rows of flux, each on its own wavelength grid, to one resolving power.

    The batch version of :func:`downconvolve` (the same kernel, :class:`LnConvolver`):
    rows sharing a wavelength grid are convolved together, each with its own
    kernel.  Masked and non-finite pixels are filled by linear interpolation
    before the convolution and masked again afterwards, together with every
    pixel that takes more than :data:`MASK_WEIGHT_THRESHOLD` of its kernel
    weight from them.

    Parameters
    ----------
    wave : ndarray, shape (npix,) or (n, npix)
        Ascending wavelengths, shared or one grid per row.
    flux : ndarray, shape (n, npix)
    resolution : float
        Output resolving power R_out.
    from_resolution : float or ndarray, shape (n,)
        Input resolving power of each row; rows with R_in <= R_out are returned
        unchanged.
    mask : ndarray of bool, shape (n, npix), optional
    std : ndarray, shape (n, npix), optional
        Standard deviations, propagated like :func:`downconvolve`'s.

    Returns
    -------
    flux, mask, std : ndarray
        ``std`` is None when none was given.

    Raises
    ------
    ValueError
        Shapes that do not match, a non-positive resolution.
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=float))
    n, npix = flux.shape
    wave = np.asarray(wave, dtype=float)
    if wave.shape not in ((npix,), (n, npix)):
        raise ValueError(f"wave must have shape ({npix},) or ({n}, {npix}); received "
                         f"{wave.shape}")
    r_out = _check_resolution(resolution, "resolution")
    r_in = np.broadcast_to(np.asarray(from_resolution, dtype=float), (n,))
    if np.any(~(r_in > 0)):
        raise ValueError(f"from_resolution must be positive; received {from_resolution!r}")
    mask = np.zeros((n, npix), bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != (n, npix):
        raise ValueError(f"mask must have shape {(n, npix)}; received {mask.shape}")
    if std is not None:
        std = np.asarray(std, dtype=float)
        if std.shape != (n, npix):
            raise ValueError(f"std must have shape {(n, npix)}; received {std.shape}")
    out_flux, out_mask = flux.copy(), mask.copy()
    out_std = None if std is None else std.copy()
    todo = np.flatnonzero(r_in > r_out)
    if todo.size == 0:
        return out_flux, out_mask, out_std
    sig = np.zeros(n)
    sig[todo] = np.sqrt(1.0 / r_out ** 2 - 1.0 / r_in[todo] ** 2) / FWHM_PER_SIGMA
    if wave.ndim == 1:
        groups = [(wave, todo)]
    else:
        keys = {}
        for r in todo:
            keys.setdefault(wave[r].tobytes(), []).append(r)
        groups = [(wave[rows[0]], np.array(rows)) for rows in keys.values()]
    for grid, rows in groups:
        conv = LnConvolver(grid, float(sig[rows].min()), max_sigma_ln=float(sig[rows].max()))
        sig_px = sig[rows] / conv.step
        filled = _fill_masked(flux[rows], mask[rows])
        out_flux[rows] = conv.inverse(conv.transform(filled), sig_px)
        if mask[rows].any():
            weight = conv.inverse(conv.transform(mask[rows].astype(float)), sig_px)
            out_mask[rows] = mask[rows] | (weight > MASK_WEIGHT_THRESHOLD)
        if std is not None:
            s = _fill_masked(std[rows], mask[rows] | ~(std[rows] > 0))
            out_std[rows] = _propagate_std(conv, s, sig[rows])
    return out_flux, out_mask, out_std


def resolution_from_widths(ccf_sigma, acf_sigma, template_resolution, *, extra_var=0.0):
    """The resolving power of a spectrum from its cross-correlation width against a template.

    For Gaussian lines of intrinsic width w, an observed spectrum with
    line-spread σ_obs and a template with σ_t, the cross-correlation peak has
    σ_ccf² = 2w² + σ_obs² + σ_t² and the template's autocorrelation
    σ_acf² = 2w² + 2σ_t², so ``σ_obs² = σ_t² + σ_ccf² − σ_acf²`` whatever w
    (as long as the template's lines are as wide as the star's).

    Parameters
    ----------
    ccf_sigma, acf_sigma : float or ndarray
        Gaussian σ (ln λ) of the cross-correlation and autocorrelation peaks.
    template_resolution : float
        Resolving power of the template.
    extra_var : float or ndarray
        Variance (ln λ²) to remove from the observed width, e.g. the smoothing
        of coarser observed pixels than the template's.

    Returns
    -------
    resolution : ndarray
        R = 1 / (FWHM_PER_SIGMA σ_obs); `inf` when the observed spectrum is
        sharper than can be measured (σ_obs² <= 0), NaN for non-finite widths.
    """
    r_t = _check_resolution(template_resolution, "template_resolution")
    sig_t = 1.0 / (FWHM_PER_SIGMA * r_t)
    var = sig_t ** 2 + np.asarray(ccf_sigma, float) ** 2 - np.asarray(acf_sigma, float) ** 2
    var = var - extra_var
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(var > 0, 1.0 / (FWHM_PER_SIGMA * np.sqrt(np.abs(var))), np.inf)
    return np.where(np.isfinite(var), r, np.nan)
