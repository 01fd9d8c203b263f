"""Pre-processing and augmentation of synthetic spectra (Gilda 2025, §3.3).

The paper brings high-resolution synthetic spectra in line with MARVELS
spectra in four steps, in this order (Gilda 2025, §3.3 (i)-(iv)):

1. :func:`downconvolve` with Gaussian kernels to R = 10,000, 11,000 and
   12,000 (the resolution varies across the MARVELS detector);
2. :func:`resample` onto the survey's 0.1 Å grid by cubic-spline
   interpolation;
3. :func:`add_noise`: Gaussian noise with σ between 0.5 % and 2 % of the flux
   (SNR 50-200), five values of σ and three draws of each;
4. continuum normalization with the routine applied to observed spectra
   (:func:`remap.normalize`, Algorithm 1).

3 resolutions × 5 noise levels × 3 draws = 45 spectra per label point;
:func:`augment` runs the whole chain for one survey beam.  The wavelength
medium of the library is converted to the survey's with :func:`to_medium`
before resampling.

Every step is a pure function of `specutils.Spectrum` objects (one spectrum
with 1-D flux, or a batch with 2-D flux sharing one spectral axis) and returns
a new spectrum; the random step takes an explicit seed.  A per-pixel array
``meta["continuum"]`` (the true continuum that synthetic libraries attach) is
carried through every step, so that the noise can be scaled to it.

Reading of the paper
--------------------
* The five noise levels are "uniformly chosen" in 0.5-2 % (§3.3 (iii)); remap
  reads this as evenly spaced (:data:`DEFAULT_NOISE_LEVELS`: 0.5, 0.875, 1.25,
  1.625, 2 %), so that every label point gets the same set.  Pass
  ``noise_levels=`` to draw them differently.
* σ is relative to the continuum when the spectrum carries one, otherwise to
  the median flux of each spectrum (SNR as usually quoted for a survey).
"""

from __future__ import annotations

import math
import numbers

import astropy.units as u
import numpy as np
from astropy.table import Table

from .exceptions import NoOverlapError, SpectrumError
from .spectra._build import build_like as _build
from .spectra._build import continuum_of as _continuum_of
from .spectra._build import std_of as _std_of
from .spectra.resampling import apply_linear as _apply_linear  # noqa: F401
from .spectra.resampling import linear_weights as _linear_weights
from .spectra.resampling import resample_arrays, spline
from .spectra.resolution import FWHM_PER_SIGMA as _FWHM_PER_SIGMA  # noqa: F401
from .spectra.resolution import MASK_WEIGHT_THRESHOLD, downconvolve, gaussian_sigma_ln
from .spectra.resolution import LnConvolver as _LnConvolver
from .spectra.resolution import _check_resolution
from .spectra.validation import prepare

__all__ = ["DEFAULT_RESOLUTIONS", "DEFAULT_NOISE_LEVELS", "DEFAULT_DRAWS",
           "MASK_WEIGHT_THRESHOLD", "gaussian_sigma_ln", "downconvolve", "to_medium",
           "resample", "crop", "add_noise", "sample_seeds", "augment",
           "DEFAULT_COVERAGE_PROBABILITY", "DEFAULT_COVERAGE_MAX_FRACTION", "COVERAGE_SEED_KEY",
           "drop_coverage", "drop_coverage_results"]

#: Output resolving powers of the down-convolution (Gilda 2025, §3.3 (i)).
DEFAULT_RESOLUTIONS = (10_000, 11_000, 12_000)

#: Noise levels σ/flux: five values evenly spaced in 0.5-2 % (Gilda 2025, §3.3 (iii)).
DEFAULT_NOISE_LEVELS = tuple(float(x) for x in np.linspace(0.005, 0.02, 5))

#: Noise draws per level (Gilda 2025, §3.3 (iii): "sample thrice").
DEFAULT_DRAWS = 3

#: Fraction of training spectra that lose part of a beam (partial-coverage augmentation).
DEFAULT_COVERAGE_PROBABILITY = 0.5

#: Largest fraction of a beam dropped by the partial-coverage augmentation.
DEFAULT_COVERAGE_MAX_FRACTION = 0.4

#: Beam ``b`` of a label point draws its dropped spans from
#: ``SeedSequence(label point seed, spawn_key=(COVERAGE_SEED_KEY + b,))``.
COVERAGE_SEED_KEY = 1000

_MEDIA = ("air", "vacuum")


# --------------------------------------------------------------------------- steps

def to_medium(spectrum, medium):
    """Express a spectrum's wavelengths in another medium (``"air"`` or ``"vacuum"``).

    Parameters
    ----------
    spectrum : `specutils.Spectrum`
        Its ``meta["wavelength_medium"]`` says the medium it is in.
    medium : {"air", "vacuum"}
        The medium wanted.

    Returns
    -------
    spectrum : `specutils.Spectrum`
        The same flux on converted wavelengths (:func:`remap.spectra.medium.convert_medium`),
        with ``meta["wavelength_medium"] = medium``; unchanged (validated copy)
        when already in ``medium``.

    Raises
    ------
    ValueError
        ``medium`` is not ``"air"`` or ``"vacuum"``.
    SpectrumError
        The spectrum does not say which medium it is in.
    """
    if medium not in _MEDIA:
        raise ValueError(f"medium must be 'air' or 'vacuum'; received: medium={medium!r}")
    spec = prepare(spectrum)
    current = (spec.meta or {}).get("wavelength_medium")
    if current not in _MEDIA:
        raise SpectrumError(f"the spectrum's meta['wavelength_medium'] is {current!r}; set it "
                            "to 'air' or 'vacuum' so that it can be converted")
    if current == medium:
        return spec
    from .spectra.medium import convert_medium
    wave = u.Quantity(convert_medium(spec.spectral_axis, current, medium)).to(u.AA)
    return _build(spec, spec.flux.value, wave, std=_std_of(spec), mask=spec.mask,
                  continuum=_continuum_of(spec), meta_updates={"wavelength_medium": medium})


def _grid_of(grid):
    if isinstance(grid, u.Quantity):
        try:
            g = grid.to_value(u.AA, equivalencies=u.spectral())
        except u.UnitConversionError:
            raise ValueError(f"the grid is in {grid.unit}, not a spectral unit") from None
    else:
        raise TypeError(f"grid must be a Quantity of wavelengths (e.g. Å); received "
                        f"{type(grid).__name__}")
    g = np.atleast_1d(np.asarray(g, dtype=float))
    if g.ndim != 1 or g.size < 2 or not np.all(np.isfinite(g)):
        raise ValueError(f"grid must be a 1-D array of >= 2 finite wavelengths; received "
                         f"shape {g.shape}")
    if g[0] > g[-1]:
        g = g[::-1]
    if np.any(np.diff(g) <= 0):
        raise ValueError("grid must be strictly monotonic")
    return g


def resample(spectrum, grid):
    """Resample a spectrum onto a wavelength grid by cubic-spline interpolation.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`
        One spectrum or a batch (2-D flux).
    grid : `~astropy.units.Quantity`
        Target wavelengths (any spectral unit; Å on output, ascending).

    Returns
    -------
    spectrum : `specutils.Spectrum`
        Flux (and ``meta["continuum"]``) from a not-a-knot cubic spline
        (`scipy.interpolate.make_interp_spline`, one solve for the whole
        batch).  The uncertainty is interpolated linearly (a spline could make
        it negative next to a jump); a new pixel is masked when either input
        pixel around it is masked.

    Raises
    ------
    NoOverlapError
        The grid reaches outside the spectrum's wavelength coverage.
    """
    spec = prepare(spectrum)
    g = _grid_of(grid)
    wave = spec.spectral_axis.to_value(u.AA)
    if g[0] < wave[0] or g[-1] > wave[-1]:
        raise NoOverlapError(f"the grid ({g[0]:.3f}-{g[-1]:.3f} Å) reaches outside the "
                             f"spectrum's coverage ({wave[0]:.3f}-{wave[-1]:.3f} Å); "
                             "resampling would extrapolate")
    flux, std, mask = resample_arrays(wave, g, np.asarray(spec.flux.value, dtype=float),
                                      sigma=_std_of(spec), mask=np.asarray(spec.mask, bool))
    cont = _continuum_of(spec)
    if cont is not None:
        cont = spline(wave, cont, g)
    return _build(spec, flux, g, std=std, mask=mask, continuum=cont)


def crop(spectrum, wave_min, wave_max):
    """The pixels of a spectrum between two wavelengths, plus one pixel on each side.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`
    wave_min, wave_max : `~astropy.units.Quantity`
        Wavelength limits.

    Returns
    -------
    spectrum : `specutils.Spectrum`

    Raises
    ------
    NoOverlapError
        Fewer than two pixels lie in the range.
    """
    spec = prepare(spectrum)
    lo = u.Quantity(wave_min).to_value(u.AA, equivalencies=u.spectral())
    hi = u.Quantity(wave_max).to_value(u.AA, equivalencies=u.spectral())
    wave = spec.spectral_axis.to_value(u.AA)
    i0 = max(int(np.searchsorted(wave, lo, side="right")) - 1, 0)
    i1 = min(int(np.searchsorted(wave, hi, side="left")) + 1, wave.size)
    if i1 - i0 < 2:
        raise NoOverlapError(f"the spectrum ({wave[0]:.3f}-{wave[-1]:.3f} Å) has fewer than "
                             f"two pixels in {lo:.3f}-{hi:.3f} Å")
    sl = (Ellipsis, slice(i0, i1))
    std = _std_of(spec)
    cont = _continuum_of(spec)
    return _build(spec, np.asarray(spec.flux.value)[sl], wave[i0:i1],
                  std=None if std is None else std[sl],
                  mask=np.asarray(spec.mask)[sl], continuum=None if cont is None else cont[sl])


def _as_seed_sequence(seed):
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise TypeError(f"seed must be a non-negative integer or a numpy SeedSequence; "
                    f"received: seed={seed!r}")


def sample_seeds(seed, n):
    """``n`` integer seeds, one per sample, derived from ``seed`` by spawn key.

    Sample ``i`` gets the first 64-bit word of
    ``SeedSequence(entropy, spawn_key=parent_key + (i,))``, so a sample's seed
    depends only on ``seed`` and ``i`` (not on how many are drawn, nor on the
    order), and ``numpy.random.default_rng(seeds[i])`` reproduces its noise.

    Parameters
    ----------
    seed : int or `numpy.random.SeedSequence`
    n : int

    Returns
    -------
    seeds : `~numpy.ndarray` of uint64, shape (n,)
    """
    ss = _as_seed_sequence(seed)
    return np.array([np.random.SeedSequence(ss.entropy, spawn_key=ss.spawn_key + (i,))
                     .generate_state(1, np.uint64)[0] for i in range(int(n))], dtype=np.uint64)


def add_noise(spectrum, sigma_frac=None, *, snr=None, seed, level="auto"):
    """Add Gaussian noise of a given fractional level (Gilda 2025, §3.3 (iii)).

    Parameters
    ----------
    spectrum : `specutils.Spectrum`
        One spectrum or a batch (2-D flux).
    sigma_frac : float or array-like, optional
        σ as a fraction of the flux level (0.01 = 1 %, SNR 100); for a batch,
        a scalar or one value per spectrum.
    snr : float or array-like, optional
        Signal-to-noise ratio instead of ``sigma_frac`` (σ = 1/snr).
    seed : int, `numpy.random.SeedSequence`, `numpy.random.Generator` or sequence
        Randomness.  For a batch, a sequence of one integer seed per spectrum
        makes each spectrum's noise independent of the others (see
        :func:`sample_seeds`); otherwise one generator draws the whole batch.
    level : {"auto", "continuum", "median", "flux"}
        The flux level σ is relative to: ``meta["continuum"]`` pixel by pixel,
        the median flux of each spectrum, or the flux itself pixel by pixel.
        ``"auto"`` is ``"continuum"`` when the spectrum carries one, otherwise
        ``"median"``.

    Returns
    -------
    spectrum : `specutils.Spectrum`
        Noisy flux with a `StdDevUncertainty` (the added σ combined in
        quadrature with any existing uncertainty) and ``meta["noise_sigma"]``.

    Raises
    ------
    ValueError
        Neither or both of ``sigma_frac`` and ``snr``; a non-positive level;
        a bad ``level`` name; a seed list of the wrong length.
    SpectrumError
        ``level="continuum"`` without ``meta["continuum"]``.
    """
    if (sigma_frac is None) == (snr is None):
        raise ValueError("give exactly one of sigma_frac= and snr=")
    spec = prepare(spectrum)
    flux = np.asarray(spec.flux.value, dtype=float)
    flux2 = np.atleast_2d(flux)
    nspec = flux2.shape[0]
    if snr is not None:
        snr_arr = np.asarray(snr, dtype=float)
        if np.any(~np.isfinite(snr_arr)) or np.any(snr_arr <= 0):
            raise ValueError(f"snr must be positive and finite; received: snr={snr!r}")
        frac = 1.0 / snr_arr
    else:
        frac = np.asarray(sigma_frac, dtype=float)
        if np.any(~np.isfinite(frac)) or np.any(frac < 0):
            raise ValueError(f"sigma_frac must be >= 0 and finite; received: "
                             f"sigma_frac={sigma_frac!r}")
    frac = np.atleast_1d(frac)
    if frac.ndim != 1 or frac.size not in (1, nspec):
        raise ValueError(f"give one noise level or one per spectrum ({nspec}); received "
                         f"{frac.size}")
    frac = np.broadcast_to(frac, (nspec,))

    cont = _continuum_of(spec)
    if level == "auto":
        level = "continuum" if cont is not None else "median"
    if level == "continuum":
        if cont is None:
            raise SpectrumError("level='continuum' needs meta['continuum']; use "
                                "level='median' or 'flux'")
        ref = np.atleast_2d(cont)
    elif level == "median":
        good = np.where(np.atleast_2d(spec.mask), np.nan, flux2)
        ref = np.repeat(np.nanmedian(good, axis=1)[:, None], flux2.shape[1], axis=1)
    elif level == "flux":
        ref = np.abs(flux2)
    else:
        raise ValueError(f"level must be 'auto', 'continuum', 'median' or 'flux'; "
                         f"received: level={level!r}")
    sigma = frac[:, None] * ref

    if isinstance(seed, (list, tuple, np.ndarray)):
        seeds = list(seed)
        if len(seeds) != nspec:
            raise ValueError(f"{len(seeds)} seeds given for {nspec} spectra")
        noise = np.stack([np.random.default_rng(int(s)).standard_normal(flux2.shape[1])
                          for s in seeds])
    else:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(
            _as_seed_sequence(seed))
        noise = rng.standard_normal(flux2.shape)
    noisy = flux2 + sigma * noise
    std = _std_of(spec)
    std2 = sigma if std is None else np.hypot(np.atleast_2d(std), sigma)
    shape = (lambda a: a) if flux.ndim == 2 else (lambda a: a[0])
    noise_meta = frac.copy() if flux.ndim == 2 else float(frac[0])
    return _build(spec, shape(noisy), spec.spectral_axis.to_value(u.AA), std=shape(std2),
                  mask=spec.mask, continuum=None if cont is None else cont,
                  meta_updates={"noise_sigma": noise_meta})


def augment(spectrum, survey, beam, *, resolutions=DEFAULT_RESOLUTIONS,
            noise_levels=DEFAULT_NOISE_LEVELS, draws=DEFAULT_DRAWS, seed,
            fitter="algorithm1", fitter_options=None, level="auto"):
    """The whole augmentation chain of Gilda 2025 (§3.3) for one survey beam.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`
        One high-resolution synthetic spectrum (1-D flux) whose ``meta`` gives
        ``resolution`` and ``wavelength_medium``.
    survey : str or survey object
        A registered survey name (``"marvels"``) or a survey with ``beams``,
        ``grid(beam)`` and ``wavelength_medium``.
    beam : str
        Beam name (``"A"`` or ``"B"`` for MARVELS).
    resolutions : sequence of float
        Output resolving powers (default 10,000, 11,000, 12,000).
    noise_levels : sequence of float
        Fractional noise levels σ (default five values in 0.5-2 %).
    draws : int
        Noise draws per level (default 3).
    seed : int or `numpy.random.SeedSequence`
        Root of the per-sample seeds (:func:`sample_seeds`).
    fitter : str, `remap.continuum.ContinuumFitter` or None
        Continuum fitter (name or instance) for :func:`remap.normalize`;
        `None` skips the normalization (step 4).
    fitter_options : dict, optional
        Options of the fitter.
    level : str
        Noise reference level (see :func:`add_noise`).

    Returns
    -------
    spectra : `specutils.Spectrum`
        A batch of ``len(resolutions) * len(noise_levels) * draws`` spectra on
        the beam's grid, ordered by resolution, then noise level, then draw.
    samples : `~astropy.table.Table`
        One row per spectrum: ``resolution``, ``sigma``, ``draw`` and ``seed``
        (the integer seed of its noise).

    Raises
    ------
    ValueError
        Empty ``resolutions``/``noise_levels``, ``draws < 1``, a batch input.
    NoOverlapError
        The spectrum does not cover the beam's grid.
    """
    spec = prepare(spectrum)
    if spec.flux.ndim != 1:
        raise ValueError("augment() takes one spectrum (1-D flux); loop over a batch")
    resolutions = [_check_resolution(r, "resolution") for r in resolutions]
    noise_levels = [float(s) for s in noise_levels]
    if not resolutions or not noise_levels:
        raise ValueError("resolutions and noise_levels must not be empty")
    if any(not (math.isfinite(s) and s >= 0) for s in noise_levels):
        raise ValueError(f"noise levels must be finite and >= 0; received: {noise_levels}")
    if not isinstance(draws, numbers.Integral) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1; received: draws={draws!r}")
    if isinstance(survey, str):
        from .plugins import get_survey
        survey = get_survey(survey)
    if beam not in survey.beams:
        raise ValueError(f"survey {survey.name!r} has no beam {beam!r}; its beams are "
                         f"{sorted(survey.beams)}")
    grid = _grid_of(u.Quantity(survey.grid(beam)))

    spec = to_medium(spec, survey.wavelength_medium)
    r_in = (spec.meta or {}).get("resolution")
    if r_in is None:
        raise SpectrumError("the spectrum has no meta['resolution'] (its resolving power)")
    margin = grid[-1] * 8.0 * gaussian_sigma_ln(min(resolutions), r_in) + 5.0 * float(
        np.median(np.diff(grid)))
    spec = crop(spec, (grid[0] - margin) * u.AA, (grid[-1] + margin) * u.AA)

    # steps 1-2 at array level, all resolutions at once: one FFT of the flux (and
    # continuum), one inverse FFT per resolution, one spline solve for everything
    wave = spec.spectral_axis.to_value(u.AA)
    if grid[0] < wave[0] or grid[-1] > wave[-1]:
        raise NoOverlapError(f"the spectrum ({wave[0]:.3f}-{wave[-1]:.3f} Å, in "
                             f"{survey.wavelength_medium}) does not cover beam {beam!r} "
                             f"({grid[0]:.3f}-{grid[-1]:.3f} Å)")
    sigmas = [gaussian_sigma_ln(r, r_in) for r in resolutions]
    conv = _LnConvolver(wave, sigmas[0], max_sigma_ln=max(sigmas))
    cont = _continuum_of(spec)
    rows_in = [np.asarray(spec.flux.value, dtype=float)] + ([] if cont is None else [cont])
    transformed = conv.transform(np.stack(rows_in))
    smoothed = np.concatenate([conv.inverse(transformed, sg / conv.step) for sg in sigmas])
    on_grid = spline(wave, smoothed, grid)
    per_r = len(rows_in)
    base_flux = on_grid[0::per_r]
    base_cont = None if cont is None else on_grid[1::per_r]
    in_mask = np.asarray(spec.mask, dtype=bool)
    if in_mask.any():
        weights = np.stack([conv.smooth(in_mask.astype(float), sg / conv.step)
                            for sg in sigmas]) > MASK_WEIGHT_THRESHOLD
        idx, w = _linear_weights(wave, grid)
        base_mask = (weights[:, idx] & (w < 1)) | (weights[:, idx + 1] & (w > 0))
    else:
        base_mask = np.zeros(base_flux.shape, dtype=bool)

    n_per_r = len(noise_levels) * draws
    rows = np.repeat(np.arange(len(resolutions)), n_per_r)
    sigma = np.tile(np.repeat(noise_levels, draws), len(resolutions))
    draw = np.tile(np.arange(draws), len(resolutions) * len(noise_levels))
    seeds = sample_seeds(seed, rows.size)
    batch = _build(spec, base_flux[rows], grid, mask=base_mask[rows],
                   continuum=None if base_cont is None else base_cont[rows])
    batch = add_noise(batch, sigma, seed=seeds, level=level)
    if fitter is not None:
        from .continuum import normalize
        batch = normalize(batch, fitter=fitter, **(fitter_options or {}))
    samples = Table({"resolution": np.asarray(resolutions, dtype=float)[rows],
                     "sigma": sigma, "draw": draw, "seed": seeds})
    meta = dict(batch.meta or {})
    meta.pop("noise_sigma", None)
    meta["resolution"] = samples["resolution"].data.copy()
    meta["beam"] = beam
    meta["survey"] = survey.name
    batch.meta.clear()
    batch.meta.update(meta)
    return batch, samples


# --------------------------------------------------------------------------- partial coverage

def _check_fraction(value, name, *, high=1.0):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(value) or not 0.0 <= value <= high):
        raise ValueError(f"{name} must be a number in [0, {high:g}]; received: "
                         f"{name}={value!r}")
    return float(value)


def drop_coverage(flux, mask, fill, *, seed, probability=DEFAULT_COVERAGE_PROBABILITY,
                  max_fraction=DEFAULT_COVERAGE_MAX_FRACTION):
    """Partial-coverage augmentation: drop random spans of normalized rows and in-paint them.

    Observed spectra often cover a beam only in part (a spectrograph whose
    range starts inside the beam, a gap between chips).  At inference the
    pixels of the model grid a spectrum does not cover are filled with the
    model's mean training spectrum (row 0 of `remap.model.Templates`); this
    augmentation shows the network the same thing during training.  Each row,
    with probability ``probability``, loses a fraction ``f ~ U(0,
    max_fraction)`` of its pixels, at its blue end, at its red end or as one
    gap inside (each equally likely; a gap's position uniform); those pixels
    take the values of ``fill`` and are masked.

    Parameters
    ----------
    flux : ndarray, shape (n, npix)
        Continuum-normalized rows.
    mask : ndarray of bool, shape (n, npix) or None
    fill : ndarray, shape (npix,)
        What dropped pixels become (the mean training spectrum).
    seed : int, `numpy.random.SeedSequence` or `numpy.random.Generator`
    probability : float in [0, 1]
    max_fraction : float in [0, 1)

    Returns
    -------
    flux, mask : ndarray
        New arrays (the inputs are not changed).
    dropped : ndarray, shape (n,)
        Fraction of each row's pixels dropped (0 for rows left whole).

    Raises
    ------
    ValueError
        Bad shapes or parameters.
    """
    flux = np.array(np.atleast_2d(flux), copy=True)
    n, npix = flux.shape
    mask = np.zeros((n, npix), bool) if mask is None else np.array(
        np.atleast_2d(mask), dtype=bool, copy=True)
    fill = np.asarray(fill, dtype=flux.dtype if flux.dtype.kind == "f" else float)
    if mask.shape != (n, npix) or fill.shape != (npix,):
        raise ValueError(f"mask must have shape {(n, npix)} and fill ({npix},); received "
                         f"{mask.shape} and {fill.shape}")
    probability = _check_fraction(probability, "probability")
    max_fraction = _check_fraction(max_fraction, "max_fraction", high=0.99)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(
        _as_seed_sequence(seed))
    # every row draws the same four numbers, so a row's spans do not depend on the others
    u_apply, u_frac, u_kind, u_pos = rng.random((4, n))
    dropped = np.zeros(n)
    for r in range(n):
        if u_apply[r] >= probability:
            continue
        width = int(round(u_frac[r] * max_fraction * npix))
        if width < 1:
            continue
        kind = int(u_kind[r] * 3)
        if kind == 0:
            start = 0
        elif kind == 1:
            start = npix - width
        else:
            start = 1 + int(u_pos[r] * max(npix - width - 1, 0))
        span = slice(start, min(start + width, npix))
        flux[r, span] = fill[span]
        mask[r, span] = True
        dropped[r] = (span.stop - span.start) / npix
    return flux, mask, dropped


def drop_coverage_results(results, beams, fill, *, probability=DEFAULT_COVERAGE_PROBABILITY,
                          max_fraction=DEFAULT_COVERAGE_MAX_FRACTION):
    """:func:`drop_coverage` for the label points of a data-set shard.

    Parameters
    ----------
    results : list of tuple
        ``(flux by beam, mask by beam, samples, label point seed)`` per label
        point, normalized (as `remap.datasets.build_synthetic` makes them).
    beams : sequence of str
        In the build's order: beam ``b`` of a label point draws from
        ``SeedSequence(seed, spawn_key=(COVERAGE_SEED_KEY + b,))``, so the
        result does not depend on sharding, workers or resuming.
    fill : dict of str to ndarray
        Per beam, the in-painting spectrum (:func:`remap.model.mean_spectra`).
    probability, max_fraction
        As for :func:`drop_coverage`.

    Returns
    -------
    results : list of tuple
        The same tuples with new flux and mask arrays.
    """
    out = []
    for flux, mask, samples, lp_seed in results:
        flux, mask = dict(flux), dict(mask)
        for b, beam in enumerate(beams):
            ss = np.random.SeedSequence(int(lp_seed), spawn_key=(COVERAGE_SEED_KEY + b,))
            f, m, _ = drop_coverage(flux[beam], mask[beam], fill[beam], seed=ss,
                                    probability=probability, max_fraction=max_fraction)
            flux[beam], mask[beam] = f.astype(flux[beam].dtype), m
        out.append((flux, mask, samples, lp_seed))
    return out
