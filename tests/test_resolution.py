"""Resolving power: the shared ln-λ kernel, its estimation and the resolution stage."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import astropy.units as u  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from astropy.nddata import StdDevUncertainty  # noqa: E402
from specutils import Spectrum  # noqa: E402

import remap  # noqa: E402
from remap.augment import downconvolve as augment_downconvolve  # noqa: E402
from remap.inference.resolution import high_resolution, low_resolution  # noqa: E402
from remap.libraries.linelist import LineListLibrary  # noqa: E402
from remap.spectra.resampling import spline  # noqa: E402
from remap.spectra.resolution import (convolve_rows, downconvolve,  # noqa: E402
                                      gaussian_sigma_ln, resolution_from_widths)
from remap.spectra.velocity import TemplateBank, estimate_rv  # noqa: E402

FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))
GRID = 4850.0 + 0.1 * np.arange(4301)
LINES = np.random.default_rng(7).uniform(4840, 5290, 900)
DEPTHS = np.random.default_rng(8).uniform(0.02, 0.6, 900) ** 1.5


def lines(wave, resolution, scale=1.0):
    flux = np.ones_like(wave)
    for c, d in zip(LINES, DEPTHS * scale):
        sigma = np.hypot(c / resolution / FWHM, 0.02)
        near = np.abs(wave - c) < 8 * sigma
        flux[near] *= 1.0 - d * np.exp(-0.5 * ((wave[near] - c) / sigma) ** 2)
    return flux


def test_the_augmentation_uses_this_kernel():
    assert augment_downconvolve is downconvolve
    from remap import augment
    assert augment._LnConvolver.__module__ == "remap.spectra.resolution"
    assert gaussian_sigma_ln(11_000, 60_000) == pytest.approx(
        np.sqrt(1 / 11_000 ** 2 - 1 / 60_000 ** 2) / FWHM)


def test_convolve_rows_per_row_kernels_and_uncertainty():
    wave = np.arange(5000.0, 5040.0, 0.01)
    flux = np.vstack([lines(wave, 60_000), lines(wave, 60_000)])
    sigma = np.full_like(flux, 0.01)
    out, mask, std = convolve_rows(wave, flux, 11_000, np.array([60_000.0, 30_000.0]),
                                   std=sigma)
    for r, r_in in enumerate((60_000.0, 30_000.0)):
        spec = Spectrum(flux=flux[r] * u.one, spectral_axis=wave * u.AA,
                        uncertainty=StdDevUncertainty(sigma[r]), meta={"resolution": r_in})
        ref = downconvolve(spec, 11_000)
        np.testing.assert_allclose(out[r], ref.flux.value, atol=1e-12)
        np.testing.assert_allclose(std[r], ref.uncertainty.array, rtol=1e-10)
    assert np.all(std < 0.01) and not mask.any()
    with pytest.raises(ValueError, match="wave must have shape"):
        convolve_rows(wave[:-1], flux, 11_000, 60_000)


@pytest.mark.parametrize("r_true", [7_000, 9_000, 14_000])
def test_resolution_estimate_within_15_percent(r_true):
    templates = np.vstack([lines(GRID, 11_000, s) for s in (0.7, 1.0, 1.4)])
    bank = TemplateBank(GRID, np.vstack([templates.mean(0), templates]), resolution=11_000)
    wave = np.arange(4840.0, 5290.0, 0.05)
    flux = lines(wave, r_true) + np.random.default_rng(0).normal(0, 0.005, wave.size)
    est = estimate_rv(wave, flux[None], [bank])
    r = resolution_from_widths(est.ccf_sigma, est.acf_sigma, 11_000,
                               extra_var=(est.pixel_var - bank.template_step ** 2) / 6)
    assert abs(r[0] / r_true - 1) < 0.15


def test_resolution_from_widths_limits():
    sig = 1 / (11_000 * FWHM)
    assert resolution_from_widths(1.2 * sig, 1.2 * sig, 11_000) == pytest.approx(11_000)
    assert np.isinf(resolution_from_widths(0.5 * sig, 1.5 * sig, 11_000))
    assert np.isnan(resolution_from_widths(np.nan, sig, 11_000))


def test_resolution_rules():
    r = np.array([5_000.0, 9_000.0, 11_000.0, 13_000.0, np.inf, np.nan])
    est = np.array([False, True, False, True, True, False])
    assert low_resolution(r, 10_000, est).tolist() == [True, False, False, False, False,
                                                       False]
    assert high_resolution(r, 12_000, est).tolist() == [False, False, False, False, True,
                                                        False]
    assert high_resolution(r, 12_000, np.zeros(6, bool)).tolist()[3]


# ------------------------------------------------------------------ through remap.fit

@pytest.fixture(scope="module")
def library():
    return LineListLibrary(resolution=100_000, linelist="laboratory", vmicro=1.0,
                           wave_range=(4810, 5790) * u.AA)


def observed(library, resolution, *, meta=True, snr=200.0):
    spec = library.spectrum(teff=5700, logg=4.4, feh=-0.2)
    if resolution < 100_000:
        spec = downconvolve(spec, resolution)
    wave = spec.spectral_axis.to_value(u.AA)
    step = 0.1 if resolution <= 15_000 else 0.02
    grid = np.arange(4840.0, 5760.0, step)
    flux = spline(wave, spec.flux.value, grid)
    cont = spline(wave, np.asarray(spec.meta["continuum"]), grid)
    sigma = cont / snr
    flux = flux + sigma * np.random.default_rng(0).standard_normal(grid.size)
    unit = spec.flux.unit
    return Spectrum(flux=flux * unit, spectral_axis=grid * u.AA,
                    uncertainty=StdDevUncertainty(sigma * unit),
                    meta={"wavelength_medium": "air",
                          **({"resolution": float(resolution)} if meta else {})})


def test_resolution_sources_and_low_resolution_flag(library):
    high = observed(library, 60_000)
    low = observed(library, 5_000)
    res = remap.fit([high, low, observed(library, 11_000, meta=False)])
    np.testing.assert_array_equal(res.values["resolution_source"].value[:2], [2, 2])
    assert res.values["resolution"].value[0] == 60_000
    assert res.values["resolution_source"].value[2] == 4          # estimated
    assert 9_000 < res.values["resolution"].value[2] < 13_500
    assert "LOW_RESOLUTION" in res.flag_names(1) and "LOW_RESOLUTION" not in res.flag_names(0)
    assert "below the survey's range" in res.messages[1]
    assert "resolution estimated from line widths" in res.messages[2]
    given = remap.fit(high, resolution=20_000)
    assert given.values["resolution"] == 20_000 and given.values["resolution_source"] == 1
    survey = remap.fit(low, resolution="survey")
    assert survey.values["resolution_source"] == 3
    assert "LOW_RESOLUTION" not in survey.flag_names()
    with pytest.raises(ValueError, match="resolution must be positive"):
        remap.fit(high, resolution=-1)


def test_high_resolution_input_is_matched(library):
    ref = remap.fit(observed(library, 11_000))
    matched = remap.fit(observed(library, 60_000))
    raw = remap.fit(observed(library, 60_000), resolution=11_000)   # declared: not matched
    d_matched = abs(matched.teff.median - ref.teff.median)
    d_raw = abs(raw.teff.median - ref.teff.median)
    assert d_matched < 60 * u.K
    assert d_matched < d_raw
