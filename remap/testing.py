"""Test spectra with a known continuum, for tests and benchmarks.

:func:`make_test_spectra` builds a batch of realistic-looking stellar spectra
whose true continuum is known exactly, so that continuum fitters (and anything
downstream of continuum normalization) can be scored against the truth.  The
default wavelength grid is that of MARVELS beam A as used by remap's
benchmarks: 4850–5280 Å at 0.1 Å per pixel (4,300 pixels).

Each spectrum is ``F = C · exp(-τ) + noise`` where

* ``C`` is a smooth continuum: a Planck curve of a random temperature
  (3,800–7,000 K) times one plus a random low-order (degree ≤ 3) Legendre
  wiggle with a peak amplitude of a few per cent, times a random overall
  scale;
* ``τ`` is the optical depth of absorption lines: many weak-to-moderate
  Gaussian lines at random wavelengths (central depths mostly below 0.3, a tail
  up to 0.9), the Mg b triplet (5167.3, 5172.7, 5183.6 Å) as strong Voigt lines
  with damping wings and, optionally, a broad H-beta-like Voigt line at
  4861.3 Å;
* the noise is Gaussian with standard deviation ``C / snr`` (the SNR is defined
  against the continuum, as the noise levels quoted in Gilda 2025, §3.3 (iii)).

Everything is drawn from one `numpy.random.Generator` seeded by ``seed``: the
same arguments give the same spectra.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.nddata import StdDevUncertainty
from scipy.special import voigt_profile
from specutils import Spectrum

from ._util.validators import check_int, check_real
from .examples import load_example
from .spectra.io import write_beams

__all__ = ["DEFAULT_FLUX_UNIT", "marvels_beam_a_grid", "make_test_spectra",
           "write_mixed_catalogue"]

#: Flux unit of the spectra made by :func:`make_test_spectra` unless told otherwise.
DEFAULT_FLUX_UNIT = u.Unit("1e-17 erg / (s cm2 Angstrom)")

# Mg b triplet (air wavelengths, Å) and H-beta, placed in every spectrum.
_MG_B = (5167.32, 5172.68, 5183.60)
_H_BETA = 4861.32


def marvels_beam_a_grid(npix=4300, start=4850.0, step=0.1):
    """Wavelength grid (Å, ascending) like MARVELS beam A: 4850 Å + 0.1 Å × pixel.

    Parameters
    ----------
    npix : int
        Number of pixels (4,300 spans 4850.0–5279.9 Å).
    start, step : float
        First wavelength and pixel spacing, in Å.

    Returns
    -------
    wavelength : `~numpy.ndarray`
        ``start + step * arange(npix)``.

    Raises
    ------
    ValueError
        ``npix`` is not an integer >= 16 or ``step`` is not positive.
    """
    npix = check_int("npix", npix, 16)
    check_real("step", step, 0, strict_min=True)
    return float(start) + float(step) * np.arange(npix)


def _planck_shape(wave_aa, temperature):
    """Planck B_λ(T) on ``wave_aa`` up to a constant factor (peak-free, well scaled)."""
    hc_over_k = 1.438777e8  # h c / k in Å K
    x = hc_over_k / (wave_aa * temperature)
    return wave_aa ** -5 / np.expm1(x)


def _check_snr(snr, n):
    snr_arr = np.broadcast_to(np.asarray(snr, dtype=float), (n,)) if np.ndim(snr) == 0 \
        else np.asarray(snr, dtype=float)
    if snr_arr.shape != (n,):
        raise ValueError(f"snr must be a number or one value per spectrum ({n}). "
                         f"Received: snr with shape {np.shape(snr)}")
    if not np.all(np.isfinite(snr_arr) & (snr_arr > 0)):
        raise ValueError(f"snr must be positive and finite (np.inf is not allowed; use a "
                         f"large value for nearly noiseless spectra). Received: snr={snr!r}")
    return snr_arr


def make_test_spectra(n, npix=4300, snr=100, seed=0, *, n_lines=350, hbeta=True,
                      flux_unit=DEFAULT_FLUX_UNIT, wavelength=None):
    """Make a batch of synthetic stellar spectra with a known continuum.

    Parameters
    ----------
    n : int
        Number of spectra (>= 1).
    npix : int
        Pixels per spectrum on the MARVELS-beam-A-like grid (4850 Å + 0.1 Å × k);
        ignored when ``wavelength`` is given.
    snr : float or array-like of shape (n,)
        Signal-to-noise ratio per pixel against the continuum: the noise has
        standard deviation ``C / snr``.
    seed : int or `numpy.random.Generator`
        Seed of every random draw (continuum shape, lines, noise).
    n_lines : int
        Number of random weak-to-moderate absorption lines per spectrum (the
        Mg b triplet and H-beta come on top).  350 over 430 Å is roughly the
        density of lines deeper than a few per cent in a solar-type spectrum.
    hbeta : bool
        Include a broad H-beta-like line at 4861.3 Å (if inside the grid).
    flux_unit : `astropy.units.Unit` or str
        Unit given to the flux (any unit; the values are unaffected).
    wavelength : array-like, optional
        Ascending wavelengths in Å to use instead of the default grid.

    Returns
    -------
    spectra : `specutils.Spectrum`
        A batch: flux of shape ``(n, npix)`` in ``flux_unit``, spectral axis in
        Å, `~astropy.nddata.StdDevUncertainty` equal to the noise standard
        deviation, no mask.  ``meta`` holds ``snr``, ``seed`` and the drawn
        ``temperature`` of each continuum.
    continuum : `~numpy.ndarray`
        The true continuum, shape ``(n, npix)``, in the same unit as the flux.

    Raises
    ------
    ValueError
        A bad ``n``, ``npix``, ``snr``, ``n_lines`` or ``wavelength``.

    Examples
    --------
    >>> from remap.testing import make_test_spectra
    >>> spectra, continuum = make_test_spectra(2, snr=200, seed=1)
    >>> spectra.flux.shape, continuum.shape
    ((2, 4300), (2, 4300))
    """

    n = check_int("n", n, 1)
    n_lines = check_int("n_lines", n_lines, 0)
    if wavelength is None:
        wave = marvels_beam_a_grid(npix)
    else:
        wave = np.asarray(wavelength, dtype=float)
        if wave.ndim != 1 or wave.size < 16 or not np.all(np.diff(wave) > 0):
            raise ValueError("wavelength must be a 1-D strictly increasing array of at least "
                             f"16 values in Å. Received: shape {wave.shape}")
    snr_arr = _check_snr(snr, n)
    flux_unit = u.Unit(flux_unit)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    npix = wave.size
    lo, hi = wave[0], wave[-1]
    x = 2.0 * (wave - lo) / (hi - lo) - 1.0  # [-1, 1] for the Legendre wiggle
    continuum = np.empty((n, npix))
    flux = np.empty((n, npix))
    temperatures = np.empty(n)
    for i in range(n):
        temp = rng.uniform(3800.0, 7000.0)
        temperatures[i] = temp
        shape = _planck_shape(wave, temp)
        shape /= shape.mean()
        coeffs = np.zeros(4)
        coeffs[1:] = rng.normal(0.0, [0.02, 0.012, 0.008])
        cont = shape * (1.0 + np.polynomial.legendre.legval(x, coeffs))
        cont *= rng.uniform(0.5, 2.0)
        continuum[i] = cont

        # random lines: positions uniform, depths mostly weak with a tail
        centres = rng.uniform(lo, hi, n_lines)
        depths = 0.9 * rng.uniform(0.0, 1.0, n_lines) ** 3
        sigmas = rng.uniform(0.12, 0.3, n_lines)  # Å; R ~ 11,000 at 5000 Å gives ~0.19
        tau = np.zeros(npix)
        if n_lines:
            tau0 = -np.log1p(-depths)
            half = int(np.ceil(6.0 * sigmas.max() / np.median(np.diff(wave)))) + 1
            idx = np.searchsorted(wave, centres)
            cols = idx[:, None] + np.arange(-half, half + 1)[None, :]
            inside = (cols >= 0) & (cols < npix)  # no pixel counts twice at the edges
            cols = np.clip(cols, 0, npix - 1)
            profile = tau0[:, None] * np.exp(-0.5 * ((wave[cols] - centres[:, None])
                                                     / sigmas[:, None]) ** 2)
            np.add.at(tau, cols[inside], profile[inside])

        # strong lines with damping wings
        strong = [(c, rng.uniform(0.5, 0.85), rng.uniform(0.15, 0.3), rng.uniform(0.05, 0.2))
                  for c in _MG_B]
        if hbeta:
            strong.append((_H_BETA, rng.uniform(0.4, 0.7), rng.uniform(0.8, 1.5),
                           rng.uniform(0.8, 2.0)))
        for centre, depth, sig, gamma in strong:
            if not lo - 20 * gamma <= centre <= hi + 20 * gamma:
                continue
            prof = voigt_profile(wave - centre, sig, gamma)
            tau += -np.log1p(-depth) * prof / voigt_profile(0.0, sig, gamma)

        noise = rng.normal(0.0, 1.0, npix) * cont / snr_arr[i]
        flux[i] = cont * np.exp(-tau) + noise

    sigma = continuum / snr_arr[:, None]
    spectra = Spectrum(flux=flux * flux_unit, spectral_axis=wave * u.AA,
                       uncertainty=StdDevUncertainty(sigma * flux_unit),
                       meta={"snr": snr_arr.copy(),
                             "seed": seed if isinstance(seed, numbers.Integral) else None,
                             "temperature": temperatures})
    return spectra, continuum


def write_mixed_catalogue(directory, *, two_beam, beam_a, corrupt, empty, text, velocity,
                          no_overlap, seed=0):
    """Write a folder of good and bad spectrum files, for testing catalogue fitting.

    Good files are noisy copies (0.5 % Gaussian noise, seeded) of the bundled
    example star (:func:`remap.examples.load_example`); bad ones fail in
    different, specific ways.

    Parameters
    ----------
    directory : path
        Created if needed.
    two_beam : sequence of str
        Names of ``remap-beam`` files with both beams (``.fits`` or ``.ecsv``).
    beam_a : str
        Name of a ``tabular-fits`` file with beam A only.
    corrupt, empty, text : str
        Names of a truncated FITS file, an empty file and a text file.
    velocity : str
        Name of a ``remap-beam`` ECSV file whose spectral axis is a velocity.
    no_overlap : str
        Name of a ``tabular-fits`` spectrum at 6000-6500 Å (no MARVELS beam).
    seed : int
        Seed of the noise.

    Returns
    -------
    directory : `pathlib.Path`
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    beams = load_example()

    def noisy(spec):
        flux = spec.flux * (1 + 0.005 * rng.standard_normal(spec.flux.shape))
        return Spectrum(flux=flux, spectral_axis=spec.spectral_axis,
                        uncertainty=spec.uncertainty, mask=spec.mask)

    for name in two_beam:
        write_beams(directory / name, {b: noisy(s) for b, s in beams.items()},
                    survey="marvels", medium="air")
    noisy(beams["A"]).write(directory / beam_a, format="tabular-fits")
    (directory / corrupt).write_bytes((directory / two_beam[0]).read_bytes()[:4000])
    (directory / empty).write_bytes(b"")
    (directory / text).write_text("observing log, 2026-11-27\nno spectrum here\n")
    write_beams(directory / velocity,
                {"A": Spectrum(flux=np.ones(600) * u.Jy,
                               spectral_axis=np.linspace(-300, 300, 600) * u.km / u.s)})
    Spectrum(flux=np.ones(1000) * u.Jy, spectral_axis=np.linspace(6000, 6500, 1000) * u.AA
             ).write(directory / no_overlap, format="tabular-fits")
    return directory
